"""record cost: what recording inbound messages in SQL adds to the firing path (issue 11, item 1).

    .venv/bin/python -m bench.record_cost [--db sqlite|postgresql|both] [--messages 3000] [--repeat 5]

The listener records each batch of accepted messages in one INSERT (`app.services.inbound.record`) and
matching marks them matched in its claim's transaction (`inbound.mark_matched`: a look at what each
message fired before, and one UPDATE). Both are run here in-process, in batches of 1 (a steady rate: one
frame per batch), 20 and 200 (a burst), on a private database (SQLite file, or PostgreSQL database
`bench_record`). Measured: CPU ms per message of this process and of PostgreSQL's backends; for the
mark, what it adds to a transaction (the same transactions with and without it; in matching it rides in
the claim's), for the record its whole transaction (of which PostgreSQL's backends). Beside them, the CPU per fired message of the system in the last full run
(`bench/results/latest.json`: `fire`, a burst, and `e2e` 10,000 customers, one frame per batch),
and the record's share of it: the issue asks for no more than 10 %. Each figure is the median of
`--repeat` rounds (single rounds on a 2-core VM vary by up to 2x).
Results: bench/results/record_cost.json.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid

from bench import common, cpu
from devkit import stores

BATCHES = (1, 20, 200)
PG_URL = common.PG_BENCH_URL.rsplit("/", 1)[0] + "/bench_record"


def _database(kind: str) -> str:
    if kind == "sqlite":
        url = f"sqlite:///{common.RESULTS / 'bench-record.db'}"
    else:
        import psycopg

        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'bench_record'").fetchone():
                conn.execute('CREATE DATABASE "bench_record"')
        url = PG_URL
    stores.reset_database(url)
    return url


def _arrivals(n: int):
    from app.domain.events import InboundEvent
    from app.services.inbound import Arrival

    now = time.time()
    out = []
    for i in range(n):
        event = InboundEvent.from_wire("message", {
            "msg_id": f"m-{uuid.uuid4().hex}", "acc_id": "shop_001", "from_id": f"c{i % 5000}", "from_name": "小明",
            "msg_type": "text", "content": "好的，谢谢 13812345678", "ts": int(now)}, received_at=now)
        out.append(Arrival(event, content="好的，谢谢 13812345678", lane=("shop_001", f"c{i % 5000}"),
                           mark=event.msg_id))
    return out


def measure(kind: str, messages: int, repeat: int) -> dict:
    """The median over `repeat` rounds of each figure of `measure_once`."""
    rounds = [measure_once(kind, messages) for _ in range(repeat)]
    return {size: {figure: round(statistics.median(r[size][figure] for r in rounds), 4) for figure in rounds[0][size]}
            for size in rounds[0]}


def measure_once(kind: str, messages: int) -> dict:
    from app import create_app
    from app.config import Settings
    from sqlalchemy import text

    from app.infra.db import session_scope
    from app.infra.timeutil import utcnow
    from app.services import inbound
    from devkit import processes

    url = _database(kind)
    env = processes.base_env(url, common.redis_url(common.REDIS_DB_SYSTEM))
    env["LOG_LEVEL"] = "WARNING"
    create_app(Settings.from_env(env))
    pg = "bench_record" if kind == "postgresql" else None
    results = {}
    for size in BATCHES:
        arrivals = _arrivals(messages)
        batches = [arrivals[i:i + size] for i in range(0, messages, size)]
        before = cpu.snapshot({}, pg_database=pg)
        rows = [inbound.record(batch, "bench") for batch in batches]
        middle = cpu.snapshot({}, pg_database=pg)
        for ids in rows:  # each message fired one task; the transaction stands for matching's claim
            with session_scope() as session:
                session.execute(text("SELECT 1"))
                inbound.mark_matched(session, {row: [f"T{row}"] for row in ids if row}, utcnow())
        after = cpu.snapshot({}, pg_database=pg)
        for _ in rows:  # the same transactions without the mark: what matching pays anyway
            with session_scope() as session:
                session.execute(text("SELECT 1"))
        bare = cpu.snapshot({}, pg_database=pg)
        record, mark, without = cpu.delta(before, middle), cpu.delta(middle, after), cpu.delta(after, bare)

        def ms(seconds: dict) -> float:
            return 1000 * (seconds["bench"] + seconds.get("postgres", 0.0)) / messages

        results[str(size)] = {"record_ms": round(ms(record), 4), "mark_ms": round(max(0.0, ms(mark) - ms(without)), 4),
                              "of_which_postgres_ms": round(1000 * record.get("postgres", 0.0) / messages, 4)}
    return results


def system_cpu_per_fired(kind: str) -> dict:
    """CPU ms per fired message of the system's processes (not the load generator) in the last full run,
    for each measurement of it that has one (`fire`, `e2e`'s runs)."""
    try:
        latest = json.loads((common.RESULTS / "latest.json").read_text())
    except (OSError, ValueError):
        return {}
    out: dict[str, float] = {}

    def walk(node, name: str) -> None:
        if isinstance(node, dict):
            per = node.get("cpu_ms_per_fired")
            if isinstance(per, dict) and per:
                out[f"{name} {node.get('label', '')}".strip()] = round(
                    sum(v for k, v in per.items() if k not in ("bench", "machine", "others")), 3)
            for key, child in node.items():
                if key not in ("cpu_ms_per_fired", "runs_detail"):
                    walk(child, name)
        elif isinstance(node, list):
            for child in node:
                walk(child, name)

    for name, by_db in (latest.get("benchmarks") or {}).items():
        if isinstance(by_db, dict) and kind in by_db:
            walk(by_db[kind], name)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=5, help="rounds; each figure is their median")
    args = parser.parse_args(argv)
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    if "postgresql" in kinds and not common.postgres_answers():
        kinds.remove("postgresql")
    report = {}
    for kind in kinds:
        report[kind] = {"batches": measure(kind, args.messages, args.repeat),
                        "system_cpu_ms_per_fired": system_cpu_per_fired(kind)}
        print(f"{kind}: CPU ms per message (this process + PostgreSQL's backends)")
        for size, got in report[kind]["batches"].items():
            print(f"  batches of {size:>3}: record {got['record_ms']:.3f} (PostgreSQL {got['of_which_postgres_ms']:.3f}),"
                  f" mark matched {got['mark_ms']:.3f}")
        for name, total in report[kind]["system_cpu_ms_per_fired"].items():
            print(f"  system CPU per fired message, {name}: {total:.2f} ms")
    common.dump(common.RESULTS / "record_cost.json", report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
