"""count contention: status moves per second on PostgreSQL with no counts, with the delta rows the
bridge writes (app.state.counts), and with one counter row per status updated in each move.

    .venv/bin/python -m bench.count_contention [--tasks 3000] [--threads 8]

Each thread claims tasks one transaction at a time (`move_many` waiting -> running, as matching does)
and finishes each in another (`move` running -> completed): two status moves and two commits per task,
as firing makes them. The third variant stands for counters maintained in place: `UPDATE task_counts
SET n = n ± 1` for the status left and the status entered, inside the move's transaction, so every
move into `running` waits for the one before it to commit. Results: bench/results/count_contention.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

from sqlalchemy import text

ROOT = Path(__file__).resolve().parents[1]


def hot_rows(session, from_status, to_status, tasks, **_):
    """The alternative: counter rows updated in place (rows created beforehand)."""
    for name, step in ((f"status:{from_status}", -tasks), (f"status:{to_status}", tasks)):
        if tasks and name != "status:None":
            session.execute(text("UPDATE task_counts SET n = n + :d WHERE name = :name"), {"d": step, "name": name})


def run(variant: str, ids: list[str], threads: int) -> float:
    from app.domain import states
    from app.infra.db import session_scope
    from app.state import counts
    from app.state import tasks as task_states

    original = counts.record
    counts.record = {"none": lambda *a, **k: None, "deltas": original, "hot rows": hot_rows}[variant]
    try:
        def worker(mine):
            for task_id in mine:
                with session_scope() as session:
                    task_states.move_many(session, [task_id], states.WAITING, states.RUNNING)
                with session_scope() as session:
                    task_states.move(session, task_id, states.COMPLETED, only_from={states.RUNNING})

        pool = [threading.Thread(target=worker, args=(ids[i::threads],)) for i in range(threads)]
        started = time.monotonic()
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
        return 2 * len(ids) / (time.monotonic() - started)
    finally:
        counts.record = original


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from app import create_app
    from app.config import Settings
    from app.infra.db import session_scope
    from bench.scrape_cost import fill_sql, migrate
    from devkit import stores

    db_url = stores.create_private_database()
    redis_proc, redis_url = stores.start_embedded_redis()
    results: dict = {"tasks": args.tasks, "threads": args.threads, "moves_per_second": {}}
    try:
        migrate(db_url, "head")
        create_app(Settings.from_env({"DATABASE_URL": db_url, "REDIS_URL": redis_url, "TIANWANG_API_KEYS": "k"}))
        with session_scope() as session:
            for status in ("waiting", "running", "completed"):
                session.execute(text("INSERT INTO task_counts (name, n) VALUES (:name, 0)"), {"name": f"status:{status}"})
        for round_no in range(args.rounds):  # the variants take turns, so the machine's load falls on each
            for variant in ("none", "deltas", "hot rows"):
                prefix = f"R{round_no}{variant[0]}"
                with session_scope() as session:
                    session.execute(text(fill_sql("postgresql", args.tasks, prefix=prefix, status="'waiting'")[0]))
                ids = [f"{prefix}{g}" for g in range(1, args.tasks + 1)]
                rate = run(variant, ids, args.threads)
                results["moves_per_second"].setdefault(variant, []).append(round(rate))
                print(f"round {round_no}: {variant}: {rate:.0f} moves/s", file=sys.stderr)
    finally:
        redis_proc.terminate()
        stores.drop_database(db_url)
    out = ROOT / "bench" / "results" / "count_contention.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
