"""scrape cost: GET /metrics and GET /api/task/stats at 1M and 10M tasks, before and after the task counts.

    .venv/bin/python -m bench.scrape_cost --rows 1000000 --db postgresql --before /tmp/tw-before
    (git archive <rev of the version to compare> | tar -x -C /tmp/tw-before)

Fills a private database at migration 0003 (the schema the counts came after) in bulk with SQL: `rows`
tasks (90% completed, 4% failed, 2% cancelled, 2% timeout, 1.9% waiting, 0.1% running; four trigger
types; updated over the last 180 days), one history line and one callback outbox row each (delivered,
a few pending). Then, each in a process of its own with a Flask test client: the version at
`--before` answers (its `/metrics` and `/api/task/stats` aggregate the tables), the migration to
head runs (its backfill and the retention index are timed), and this version answers. Each figure is
the first request and the median of `--repeat` after it. Also times five retention batches (500 tasks each).
Results: bench/results/scrape_cost-<db>-<rows>.json.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STATUS_CASE = ("CASE WHEN g % 1000 < 900 THEN 'completed' WHEN g % 1000 < 940 THEN 'failed' "
               "WHEN g % 1000 < 960 THEN 'cancelled' WHEN g % 1000 < 980 THEN 'timeout' "
               "WHEN g % 1000 < 999 THEN 'waiting' ELSE 'running' END")
TRIGGER_CASE = ("CASE g % 4 WHEN 0 THEN 'customer_reply' WHEN 1 THEN 'customer_keyword' "
                "WHEN 2 THEN 'specified_customer_reply' ELSE 'time_reach' END")


def fill_sql(dialect: str, rows: int, *, prefix: str = "B", status: str = STATUS_CASE) -> list[str]:
    """Tasks `<prefix>1..rows` (their status by `status`, an SQL expression of g), a history line and a
    callback outbox row each."""
    step = 180 * 86400 / rows  # seconds between two tasks' last changes: spread over 180 days
    if dialect == "postgresql":
        series = f"generate_series(1, {rows}) AS s(g)"
        ago = f"now() AT TIME ZONE 'UTC' - (g * {step}) * interval '1 second'"
        empty = "'{}'::json"
    else:
        series = f"(WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < {rows}) SELECT g FROM s)"
        ago = f"datetime('now', '-' || CAST(g * {step} AS INTEGER) || ' seconds')"
        empty = "'{}'"
    return [
        f"""INSERT INTO tasks (task_id, type, customer_id, trigger_type, action_type, priority, timeout_hours,
               status, retry_count, max_retry, created_at, updated_at, completed_at, trigger, action, raw,
               body_hash, expires_at, attempt_base)
            SELECT '{prefix}' || g, 'bench', 'c' || (g % 100000), {TRIGGER_CASE}, 'send_message', 'normal', 24,
               {status}, 0, 3, {ago}, {ago}, {ago}, {empty}, {empty}, {empty}, 'h', {ago}, 0
            FROM {series}""",
        f"""INSERT INTO task_events (task_id, at, kind, from_status, to_status)
            SELECT '{prefix}' || g, {ago}, 'status', 'running', {status} FROM {series}""",
        f"""INSERT INTO callback_outbox (event_id, task_id, status, body, state, created_at, next_attempt_at,
               attempts, delivered_at)
            SELECT 'E{prefix}' || g, '{prefix}' || g, {status}, '{{}}',
               CASE WHEN g % 100000 = 7 THEN 'pending' ELSE 'delivered' END, {ago}, {ago}, 1, {ago}
            FROM {series}""",
    ]


# Deltas beat has not folded yet (it folds every 5 s; 10,000 is a minute and a half of firing at full
# speed, or beat down a while). Each moves no task, so the counts stay as they are; only reading costs.
UNFOLDED = 10_000
UNFOLDED_SQL = {
    "postgresql": f"INSERT INTO task_count_deltas (from_status, to_status, trigger_type, tasks, callbacks) "
                  f"SELECT 'waiting', 'running', NULL, 0, 0 FROM generate_series(1, {UNFOLDED})",
    "sqlite": f"INSERT INTO task_count_deltas (from_status, to_status, trigger_type, tasks, callbacks) "
              f"WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < {UNFOLDED}) "
              f"SELECT 'waiting', 'running', NULL, 0, 0 FROM s",
}


def run_sql(url: str, statements: list[str], autocommit_after: str | None = None) -> float:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    started = time.monotonic()
    with engine.begin() as conn:
        if url.startswith("postgresql"):
            conn.execute(text("SET LOCAL synchronous_commit = off"))
        for statement in statements:
            conn.execute(text(statement))
    if autocommit_after:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(autocommit_after))
    engine.dispose()
    return time.monotonic() - started


def migrate(url: str, revision: str) -> float:
    from alembic import command
    from alembic.config import Config

    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.attributes["url"] = url
    started = time.monotonic()
    command.upgrade(config, revision)
    return time.monotonic() - started


def measure(root: str, db_url: str, redis_url: str, repeat: int) -> dict:
    """In a child process whose `app` is the one under `root`: the two requests, timed."""
    env = {**os.environ, "PYTHONPATH": root, "PYTHONDONTWRITEBYTECODE": "1", "LOG_LEVEL": "WARNING"}
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", root, db_url, redis_url,
                           str(repeat)], env=env, cwd=root, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"measuring {root} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def child(root: str, db_url: str, redis_url: str, repeat: int) -> None:
    sys.path.insert(0, root)
    from app import create_app
    from app.config import Settings

    env = {"DATABASE_URL": db_url, "REDIS_URL": redis_url, "TIANWANG_API_KEYS": "bench-key",
           "RATE_LIMIT_PER_KEY": "off", "RATE_LIMIT_PER_IP": "off"}
    app = create_app(Settings.from_env(env))
    client = app.test_client()
    figures = {}
    for name, path in (("metrics", "/metrics"), ("stats", "/api/task/stats")):
        times = []
        for _ in range(repeat + 1):
            started = time.perf_counter()
            answer = client.get(path, headers={"X-API-Key": "bench-key"})
            times.append((time.perf_counter() - started) * 1000)
            assert answer.status_code == 200, answer.get_data(as_text=True)[:300]
        figures[name] = {"first_ms": round(times[0], 1), "median_ms": round(statistics.median(times[1:]), 1),
                         "max_ms": round(max(times[1:]), 1)}
        if name == "stats":
            figures["stats_total"] = answer.get_json()["data"]["total"]
    figures["metrics_sections_median_ms"] = _sections(app, repeat)
    print(json.dumps(figures))


def _sections(app, repeat: int) -> dict:
    """Where a scrape's time goes: each part of the collector (app.metrics.SECTIONS), timed alone."""
    from app.metrics import SECTIONS, BridgeCollector

    collector, times = BridgeCollector(), {}
    with app.app_context():
        for _ in range(repeat):
            for section in SECTIONS:
                started = time.perf_counter()
                list(getattr(collector, section)())
                times.setdefault(section.strip("_"), []).append((time.perf_counter() - started) * 1000)
    return {name: round(statistics.median(spent), 1) for name, spent in times.items()}


def retention_batch(db_url: str, redis_url: str, batches: int = 5) -> dict:
    """Purge batches of 500 old completed tasks with their rows, each timed (this version): the first
    pays for cold pages (and on SQLite for checkpointing the migration's WAL)."""
    from datetime import timedelta

    from app import create_app
    from app.config import Settings
    from app.infra.timeutil import utcnow
    from app.services import retention

    create_app(Settings.from_env({"DATABASE_URL": db_url, "REDIS_URL": redis_url, "TIANWANG_API_KEYS": "k"}))
    times, purged = [], 0
    for _ in range(batches):
        started = time.perf_counter()
        purged += retention.purge_tasks("completed", utcnow() - timedelta(days=90))
        times.append((time.perf_counter() - started) * 1000)
    return {"tasks": purged, "first_ms": round(times[0], 1), "median_ms": round(statistics.median(times), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--db", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--before", help="a checkout of the version to compare with (skipped if not given)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        root, db_url, redis_url, repeat = args.child
        return child(root, db_url, redis_url, int(repeat))

    sys.path.insert(0, str(ROOT))
    from devkit import stores

    results_dir = ROOT / "bench" / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    if args.db == "postgresql":
        db_url = stores.create_private_database()
    else:
        path = results_dir / f"scrape-{args.rows}.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        db_url = f"sqlite:///{path}"
    redis_proc, redis_url = stores.start_embedded_redis()
    report = {"db": args.db, "rows": args.rows, "repeat": args.repeat, "load_average": os.getloadavg()}
    try:
        migrate(db_url, "0003")
        vacuum = "VACUUM ANALYZE" if args.db == "postgresql" else "ANALYZE"
        report["fill_seconds"] = round(run_sql(db_url, fill_sql(args.db, args.rows), vacuum), 1)
        print(f"filled {args.rows:,} tasks in {report['fill_seconds']} s", file=sys.stderr)
        if args.before:
            report["before"] = measure(args.before, db_url, redis_url, args.repeat)
            print("before", report["before"], file=sys.stderr)
        report["migration_seconds"] = round(migrate(db_url, "head"), 1)
        if args.db == "postgresql":
            run_sql(db_url, [], "VACUUM ANALYZE tasks")
        report["after"] = measure(str(ROOT), db_url, redis_url, args.repeat)
        print("after", report["after"], file=sys.stderr)
        run_sql(db_url, [UNFOLDED_SQL[args.db]])
        report["after_with_unfolded_deltas"] = {"deltas": UNFOLDED,
                                                **measure(str(ROOT), db_url, redis_url, args.repeat)}
        print("after, unfolded", report["after_with_unfolded_deltas"], file=sys.stderr)
        report["retention_batch"] = retention_batch(db_url, redis_url)
    finally:
        redis_proc.terminate()
        redis_proc.wait(10)
        if args.db == "postgresql":
            stores.drop_database(db_url)
    out = results_dir / f"scrape_cost-{args.db}-{args.rows}.json"
    out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
