"""Soak: `python -m bench.soak [--seconds 300 --rate 30]`.

Intake at a steady rate for five minutes with matching traffic alongside: every second `rate` tasks
are posted through gunicorn (PostgreSQL), and for each one its customer says the keyword, so every
task fires and completes. The RSS of every process (process trees: a Celery worker with its pool) is
sampled at the start, every 30 s, and at the end; the run checks that every task completed and that
memory stayed flat. Writes bench/results/soak.json.
"""
from __future__ import annotations

import argparse
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import requests
from sqlalchemy import create_engine, text

from bench.private import private_system, web_healthy
from devkit import processes, stores

RESULTS = Path(__file__).resolve().parent / "results"


def tree_rss_mb(pid: int) -> float:
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return round(total / 2**20, 1)


def run(seconds: int, rate: int) -> dict:
    report: dict = {"seconds": seconds, "rate_per_second": rate, "samples": []}
    with private_system("soak", report, ACTION_LEASE_SECONDS="30", QINGJIAN_SEND_TIMEOUT="10") as private:
        system, qingjian, tianwang, db_url = private.system, private.qingjian, private.tianwang, private.db_url
        port = stores.free_port()
        procs = {"web": system.web(port), "worker": system.worker(concurrency=2), "beat": system.beat(),
                 "listener": system.listener()}
        assert qingjian.wait_for_client(30), system.dump_logs()
        base = f"http://127.0.0.1:{port}"
        stores.wait_until(lambda: web_healthy(base), 30, 0.2, "web")
        pids = {name: proc.p.pid for name, proc in procs.items()}
        pids["redis"], pids["this process"] = private.redis_pid, psutil.Process().pid

        def sample(at: float) -> None:
            report["samples"].append({"t": round(at, 1), **{name: tree_rss_mb(pid) for name, pid in pids.items()}})

        session = requests.Session()
        session.headers["X-API-Key"] = processes.API_KEY
        posted, failed = [], []
        lock = threading.Lock()

        def one(i: int) -> None:
            task_id, customer = f"SOAK_{i:06d}", f"soak{i}"
            body = {"task_id": task_id, "type": "soak", "customer": {"id": customer},
                    "trigger": {"type": "customer_reply", "keyword": "好的"},
                    "action": {"type": "send_message", "message": "收到"}}
            try:
                ok = session.post(f"{base}/api/task/receive", json=body, timeout=30).status_code == 200
            except requests.RequestException:
                ok = False
            if ok:
                qingjian.say(customer, "好的，谢谢", msg_id=f"m-soak-{i}")
            with lock:
                (posted if ok else failed).append(task_id)

        start = time.monotonic()
        sample(0.0)
        with ThreadPoolExecutor(8) as pool:
            i = 0
            next_sample = 30.0
            while (elapsed := time.monotonic() - start) < seconds:
                due = int(elapsed * rate)
                while i < due:
                    pool.submit(one, i)
                    i += 1
                if elapsed >= next_sample:
                    sample(elapsed)
                    next_sample += 30.0
                time.sleep(0.01)
        report["load_seconds"] = round(time.monotonic() - start, 1)
        engine = create_engine(db_url)
        drain_until = time.monotonic() + 300

        def open_count() -> int:
            with engine.connect() as conn:
                return conn.execute(text("SELECT COUNT(*) FROM tasks WHERE status NOT IN "
                                         "('completed','failed','timeout','cancelled')")).scalar()

        while open_count() and time.monotonic() < drain_until:
            time.sleep(1)
        report["drain_seconds"] = round(time.monotonic() - start - report["load_seconds"], 1)
        sample(time.monotonic() - start)
        with engine.connect() as conn:
            report["statuses"] = dict(conn.execute(text("SELECT status, COUNT(*) FROM tasks GROUP BY status")).all())
        engine.dispose()
        report.update(posted=len(posted), intake_failures=len(failed),
                      sends=len(qingjian.sent), callbacks=len(tianwang.events))
        first, last = report["samples"][0], report["samples"][-1]
        report["rss_mb_start_end"] = {name: [first[name], last[name]] for name in pids}
        # "Flat": the services end within 25 % (or 25 MB) of where they were after warm-up (30 s in).
        warm = report["samples"][1] if len(report["samples"]) > 2 else first
        report["rss_growth_after_warmup_mb"] = {name: round(last[name] - warm[name], 1) for name in pids}
        report["ok"] = (report["statuses"].get("completed") == len(posted) and not failed
                        and all(last[n] - warm[n] <= max(25.0, 0.25 * warm[n])
                                for n in ("web", "worker", "beat", "listener")))
        return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=300)
    parser.add_argument("--rate", type=int, default=30, help="tasks (and their messages) per second")
    args = parser.parse_args()
    report = run(args.seconds, args.rate)
    print(json.dumps({k: v for k, v in report.items() if k != "samples"}, indent=2, ensure_ascii=False))
    raise SystemExit(0 if report.get("ok") else 1)


if __name__ == "__main__":
    main()
