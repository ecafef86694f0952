"""import-legacy round trip: a generated legacy database of N rows (default 10,000) imported, checked
row by row against what was stored, and imported again (which must import nothing).

    .venv/bin/python -m bench.legacy_import [--rows 10000] [--db sqlite|postgresql|both]

Runs in-process (`legacy_import.run`, what `manage.py import-legacy` runs) against a fresh SQLite file
under bench/results/ or a private PostgreSQL database, and a private redis-server. The mix: 45 % still
waiting (every trigger and action the legacy table can hold), 5 % waiting past their deadline, 47 %
finished (completed, failed, cancelled, timeout) and 3 % that must be refused. Prints the times and
writes bench/results/legacy_import.json. A figure, not a test: nothing here asserts a time.
"""
from __future__ import annotations

import argparse
import json
import random
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import select

from tests import legacy_db, support

RESULTS = Path(__file__).resolve().parent / "results"
ZONE = ZoneInfo("Asia/Shanghai")


def legacy_rows(n: int, seed: int = 7) -> tuple[list[dict], Counter]:
    """n legacy rows and what each should become (a status here, or 'refused')."""
    rng = random.Random(seed)
    now = datetime.now(ZONE).replace(tzinfo=None)
    rows, expected = [], Counter()
    for i in range(n):
        task_id, customer = f"LEGACY_{i:06d}", f"cust_{i % 3000}"
        roll = rng.random()
        made = now - timedelta(minutes=rng.randint(1, 600))
        row = legacy_db.row(task_id, customer_id=customer, customer_name=f"客户{i % 3000}",
                            created_at=made.isoformat(), priority=rng.choice(["urgent", "high", "normal"]),
                            timeout_hours=rng.choice([12, 24, 48]), status=rng.choice(["pending", "waiting"]))
        if roll < 0.45:
            row.update(rng.choice([
                {"trigger_type": "customer_reply", "trigger_keyword": "好的"},
                {"trigger_type": "specified_customer_reply", "specified_customer_id": customer,
                 "specified_customer_name": f"客户{i % 3000}", "trigger_keyword": "可以"},
                {"trigger_type": "customer_keyword", "trigger_keyword": None, "customer_id": None,
                 "trigger_keywords": json.dumps([f"词{i}", "发票"], ensure_ascii=False)},
                {"trigger_type": "customer_payment", "trigger_keyword": None},
                {"trigger_type": "customer_order", "trigger_keyword": None, "trigger_keywords": '["拍了"]'},
                {"action_type": "send_file", "action_file_url": f"https://example.com/f/{i}.zip"},
                {"action_type": "send_link", "action_message": f"教程 https://example.com/t/{i}"},
            ]))
            expected["waiting"] += 1
        elif roll < 0.50:
            row.update(created_at=(now - timedelta(hours=80)).isoformat())
            expected["timeout"] += 1
        elif roll < 0.97:
            status = rng.choice(["completed", "failed", "cancelled", "timeout"])
            row.update(status=status, created_at=(now - timedelta(days=3)).isoformat(), retry_count=rng.randint(0, 3),
                       triggered_at=(now - timedelta(days=2)).isoformat() if status in ("completed", "failed") else None,
                       completed_at=(now - timedelta(days=2)).isoformat(),
                       error_message="轻简 send timed out" if status == "failed" else None,
                       result=json.dumps({"msg_id": f"m-{i}"}) if status == "completed" else None)
            expected[status] += 1
        else:
            row.update(rng.choice([{"status": "running"}, {"trigger_type": "time_reach", "trigger_keyword": None},
                                   {"trigger_type": "customer_keyword", "trigger_keywords": "好的,可以"}]))
            expected["refused"] += 1
        rows.append(row)
    return rows, expected


def mismatches(rows: list[dict]) -> list[str]:
    """Every imported task against its legacy row: the columns that carry over unchanged."""
    from app.infra.db import session_scope
    from app.models import Task

    with session_scope() as session:
        stored = {t.task_id: t for t in session.scalars(select(Task))}
    problems = []
    for row in rows:
        task = stored.get(row["task_id"])
        if task is None:
            continue
        made = datetime.fromisoformat(row["created_at"]).replace(tzinfo=ZONE).astimezone(ZoneInfo("UTC"))
        checks = {
            "type": (task.type, row["type"]), "customer_id": (task.customer_id, row.get("customer_id")),
            "priority": (task.priority, row["priority"]), "timeout_hours": (task.timeout_hours, row["timeout_hours"]),
            "created_by": (task.created_by, row["created_by"]), "created_at": (task.created_at, made.replace(tzinfo=None)),
            "trigger_type": (task.trigger_type, row.get("trigger_type", "customer_reply")),
            "expires_at": (task.expires_at - task.created_at, timedelta(hours=row["timeout_hours"])),
        }
        if row["status"] in ("completed", "failed", "cancelled", "timeout"):
            checks.update(status=(task.status, row["status"]), retry_count=(task.retry_count, row["retry_count"]),
                          error_message=(task.error_message, row.get("error_message")),
                          result=(task.result, json.loads(row["result"]) if row.get("result") else None))
        problems += [f"{row['task_id']}.{name}: {got!r} != {want!r}" for name, (got, want) in checks.items()
                     if got != want]
    return problems


def run_one(kind: str, n: int, tmp: Path) -> dict:
    from app import runtime
    from app.config import Settings
    from app.services import legacy_import
    from scripts.import_legacy import connect

    rows, expected = legacy_rows(n)
    path = tmp / f"legacy-{kind}.db"
    path.unlink(missing_ok=True)
    legacy_db.create(path, rows)
    redis_proc, redis_base = support.start_embedded_redis()
    if kind == "sqlite":
        db_url = f"sqlite:///{tmp / 'legacy-import.db'}"
        support.reset_database(db_url)
    else:
        db_url = support.create_private_database()
        support.migrate(db_url)
    try:
        connect(Settings.from_env(support.base_env(db_url, f"{redis_base}/0")))
        timed = {}
        for name, dry in (("dry_run", True), ("import", False), ("again", False)):
            started = time.perf_counter()
            report = legacy_import.run(path, dry_run=dry)
            timed[name] = (time.perf_counter() - started, report)
        imported = timed["import"][1]
        got = Counter(imported.imported) + Counter(refused=len(imported.refused))
        problems = mismatches(rows)
        return {
            "db": kind, "rows": n, "expected": dict(expected), "imported": dict(got),
            "as_expected": got == expected, "registered_in_redis": runtime.current().registry.count(),
            "seconds": {name: round(seconds, 2) for name, (seconds, _) in timed.items()},
            "rows_per_second": round(n / timed["import"][0]),
            "second_run_imported": sum(timed["again"][1].imported.values()),
            "second_run_skipped": len(timed["again"][1].skipped),
            "mismatches": len(problems), "first_mismatches": problems[:5],
        }
    finally:
        redis_proc.terminate()
        redis_proc.wait(10)
        if kind == "postgresql":
            support.drop_database(db_url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    args = parser.parse_args()
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    if "postgresql" in kinds and not support.postgres_available():
        print("PostgreSQL does not answer: SQLite only")
        kinds = [k for k in kinds if k != "postgresql"]
    RESULTS.mkdir(exist_ok=True)
    results = []
    for kind in kinds:
        result = run_one(kind, args.rows, RESULTS)
        results.append(result)
        s = result["seconds"]
        print(f"{kind:<10} {args.rows:,} rows: dry run {s['dry_run']} s, import {s['import']} s "
              f"({result['rows_per_second']:,} rows/s), second run {s['again']} s "
              f"(imported {result['second_run_imported']}, skipped {result['second_run_skipped']:,}); "
              f"outcomes as expected: {result['as_expected']} {result['imported']}; "
              f"registered {result['registered_in_redis']:,}; mismatched columns: {result['mismatches']}")
    (RESULTS / "legacy_import.json").write_text(json.dumps(results, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
