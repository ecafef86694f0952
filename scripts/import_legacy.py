"""`python3 manage.py import-legacy PATH/tasks.db [--dry-run] [--timezone ZONE]`: the cut-over.

Reads the legacy bridge's SQLite `tasks` table into this service's database (app.services.legacy_import
says how). Configuration is the same environment (and `.env`) as the other processes: DATABASE_URL,
REDIS_URL, TIANWANG_CALLBACK_URL. Exit status: 0 when every row was imported or skipped, 1 when some
were refused, 2 when the file or the database cannot be used.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from dotenv import load_dotenv

ROOT = Path(__file__).resolve().parents[1]
EMBEDDED_REDIS_PORT = 6389  # where `manage.py up` starts its own Redis when the machine has none


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="manage.py import-legacy", description=(
        "Import the legacy bridge's tasks: waiting ones fire here, finished ones are kept as history. "
        "Stop the legacy bridge first, so that no task fires in both."))
    parser.add_argument("path", help="the legacy database, e.g. db/task_db/tasks.db")
    parser.add_argument("--dry-run", action="store_true", help="map and check every row, write nothing")
    parser.add_argument("--timezone", help="zone of the legacy times without an offset (default APP_TIMEZONE)")
    args = parser.parse_args(argv)
    if args.timezone:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(args.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            parser.error(f"--timezone {args.timezone!r} is not a time zone (e.g. Asia/Shanghai, UTC)")
    return args


def _default_redis() -> None:
    """Without REDIS_URL, the Redis `manage.py up` uses: the machine's, else its embedded one."""
    if os.environ.get("REDIS_URL"):
        return
    from scripts.up import _redis_answers

    for port in (6379, int(os.environ.get("EMBEDDED_REDIS_PORT", EMBEDDED_REDIS_PORT))):
        if _redis_answers(f"redis://127.0.0.1:{port}/0"):
            os.environ["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
            return


def connect(settings) -> None:
    """Set this process up as the web and worker processes are: the database, Redis, and the Celery
    app that catch-up firing and callback wake-ups send through (for a command outside both)."""
    from flask import Flask

    from app import runtime
    from app.extensions import celery_init_app
    from app.services import callbacks
    from app.state import tasks as task_states

    runtime.configure(settings)
    holder = Flask("app")
    holder.config["CELERY"] = {"broker_url": settings.celery_broker_url,
                               "result_backend": settings.celery_result_backend}
    celery_init_app(holder)
    task_states.set_callback_hook(callbacks.wake)


class Progress:
    """One line on stderr at most once a second: rows read of the total, and the rate."""

    def __init__(self, stream=sys.stderr, every: float = 1.0):
        self.stream, self.every = stream, every
        self.started = self.last = time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self.last < self.every and done < total:
            return
        self.last = now
        rate = done / max(now - self.started, 1e-9)
        print(f"  {done:,} / {total:,} rows ({rate:,.0f} rows/s)", file=self.stream, flush=True)


def main(argv: list[str], caller_dir: Path | None = None) -> int:
    args = parse(argv)
    path = (caller_dir or Path.cwd()) / args.path
    load_dotenv(ROOT / ".env")
    _default_redis()
    from sqlalchemy import inspect

    from app.config import Settings
    from app.infra.db import engine
    from app.services import legacy_import

    settings = Settings.from_env()
    connect(settings)
    if not inspect(engine()).has_table("tasks"):
        print(f"{settings.database_url}: no tasks table; migrate it first (alembic upgrade head, the "
              f"Procfile's release step)", file=sys.stderr)
        return 2
    try:
        report = legacy_import.run(path, dry_run=args.dry_run, zone=args.timezone, progress=Progress())
    except legacy_import.LegacyFileError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(legacy_import.format_report(report))
    return 1 if report.refused else 0
