"""callbacks: callbacks delivered per second to a fast receiver.

N callback_outbox rows (and the task rows they belong to) are written directly in SQL, pending and
due; then one `callbacks.flush` per worker process is enqueued (what the commits' wake-ups amount to
under load: each flush claims batches of due rows), and the clock runs until SQL shows every row
`delivered`. The receiver is a minimal threaded HTTP/1.1 server on 127.0.0.1
answering 200 at once (keep-alive). Callbacks are signed (TIANWANG_CALLBACK_SECRET set), as in
production. Only the Procfile's worker lines run (no beat, so nothing is re-driven behind our back).

Reference: `bench.noop` published as fast as one producer can to the `callbacks` queue, consumed by the
Procfile's worker line(s) that take it, with -I bench.noop_tasks (bench/reference.py).
"""
from __future__ import annotations

import json
import time
import uuid
from datetime import timedelta

import redis
from sqlalchemy import func, insert, select

from bench import common, cpu, reference, seeding, stack
from bench.common import wait_until
from devkit.processes import base_env


def _rows(n: int, run_id: str):
    from app.infra.timeutil import iso, utcnow

    now = utcnow() - timedelta(seconds=5)
    tasks, outbox = [], []
    for i in range(n):
        task_id = f"CB{run_id}{i:06d}"
        body = {"task_id": task_id, "type": "bench_cb", "trigger": {"type": "customer_reply", "keyword": "x"},
                "action": {"type": "send_message", "message": "x"}}
        tasks.append(dict(task_id=task_id, type="bench_cb", trigger_type="customer_reply", action_type="send_message",
                          priority="normal", timeout_hours=24.0, status="completed", retry_count=0, max_retry=3,
                          created_at=now, updated_at=now, completed_at=now, trigger=body["trigger"],
                          action=body["action"], raw=body, body_hash="0" * 64, expires_at=now + timedelta(hours=24)))
        event_id = str(uuid.uuid4())
        payload = json.dumps({"event_id": event_id, "task_id": task_id, "status": "completed", "error": None,
                              "result": {"sent": [f"{task_id}:0:0"]}, "timestamp": iso(now)},
                             ensure_ascii=False, separators=(",", ":"))
        outbox.append(dict(event_id=event_id, task_id=task_id, status="completed", body=payload, state="pending",
                           created_at=now, next_attempt_at=now, attempts=0))
    return tasks, outbox


def run_db(bench, kind: str, progress) -> dict:
    from app.infra.db import session_scope
    from app.models import CallbackOutbox, Task

    n = 300 if bench.quick else 5_000
    db_url = common.fresh_db(kind, "callbacks")
    url = common.redis_url(common.REDIS_DB_SYSTEM)
    client = redis.Redis.from_url(url)
    run_id = uuid.uuid4().hex[:4]
    processes = stack.processes_for("callbacks", base_env(db_url, url, **bench.env()))
    out = {"db": kind, "settings": {"callbacks": n, "worker_processes_on_the_queue": processes,
                                    "receiver": "ThreadingHTTPServer, HTTP/1.1 keep-alive, answers 200",
                                    "signed": True}}
    with bench.scope():
        receiver = bench.receiver()
        system = bench.system(db_url, url, TIANWANG_CALLBACK_URL=receiver.url,
                              TIANWANG_CALLBACK_SECRET=common.CALLBACK_SECRET)
        procs = bench.stack(system, only_workers=True)
        seeding.in_process_app(system.env)  # the runtime (SQL engine) of this process
        warm_tasks, warm_outbox = _rows(20, run_id + "w")
        tasks, outbox = _rows(n, run_id)
        with session_scope() as s:
            s.execute(insert(Task), warm_tasks)
            s.execute(insert(CallbackOutbox), warm_outbox)
        app = common.producer(url)
        app.send_task("callbacks.flush", queue="callbacks")

        def delivered() -> int:
            with session_scope() as s:
                return s.scalar(select(func.count()).select_from(CallbackOutbox)
                                .where(CallbackOutbox.state == "delivered"))

        ok, _ = wait_until(lambda: delivered() >= 20, 90, 0.1)
        if not ok:
            raise RuntimeError("warm-up callbacks were not delivered\n" + system.dump_logs())
        bench.profile(f"callbacks-{kind}", procs, n / 150)
        with session_scope() as s:
            s.execute(insert(Task), tasks)
            s.execute(insert(CallbackOutbox), outbox)
        meter = cpu.Meter(procs, client, db_url).start()
        t0 = time.time()
        for _ in range(processes):
            app.send_task("callbacks.flush", queue="callbacks")
        t_pub = time.time()
        # Poll the receiver's in-memory count first (no load on the database), then SQL.
        wait_until(lambda: receiver.count >= 20 + n, 60 + n / 20, 0.01)
        ok, t_done = wait_until(lambda: delivered() >= 20 + n, 30, 0.01)
        used = meter.used()
        got = delivered() - 20
        elapsed = t_done - t0
        out["deliver"] = {"n": n, "delivered": got, "all_delivered": bool(ok), "seconds": round(elapsed, 3),
                          "per_second": round(got / elapsed, 1), "publish_per_second": round(n / (t_pub - t0), 1),
                          "receiver_count": receiver.count, "cpu_seconds": used,
                          "cpu_ms_per_callback": cpu.per_item(used, got)}
        progress()
    # the reference: the same worker line(s), the same queue
    out["reference_noop"] = reference.noop_throughput(bench, db_url, n, 1, "callbacks")[0]
    progress()
    rate = out["deliver"]["per_second"]
    out["ratio_to_noop"] = round(rate / out["reference_noop"]["per_second"], 3)
    out["targets"] = {"per_second": {"target": ">= 500", "value": rate, "pass": rate >= 500}}
    return out
