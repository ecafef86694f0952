"""timers: how late time_reach tasks fire (triggered_at - due time) under the normal beat.

The timers are stored as `waiting` in bulk, built by the app's own schema and intake constructor and
registered in Redis (common.bulk_tasks: what the intake API would leave behind, without waiting a
minute for 10,000 POSTs), with due times spread evenly over a 10 s window that starts a few seconds
later. Then the normal system does the rest: beat's `maintenance.tick` every 0.5 s claims due timers
from SQL, the worker runs each send_message action through the listener, and the 天网 fake receives
the callbacks. Lateness is read back from SQL (`triggered_at - due_at`, both written by the app, UTC).
The wait for the last timer is bounded; timers not fired by then count as later than the bound, and a
percentile that falls among them is reported as "> bound" (null in JSON, `censored_after_s` set).

Reference: the same with 100 timers over the same 10 s window (light load), in the same run and system.
"""
from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone

import numpy as np
import redis
from sqlalchemy import func, select

from bench import common
from bench.common import wait_until

WINDOW = 10.0
LEAD = 4.0  # seconds between storing the timers and the first one being due


def _bodies(prefix: str, n: int, t0: float) -> list[dict]:
    out = []
    for i in range(n):
        due = t0 + WINDOW * i / max(1, n - 1)
        out.append({"task_id": f"{prefix}{i:06d}", "type": "bench_timer", "customer": {"id": f"{prefix}c{i}"},
                    "acc_id": "shop_001",
                    "trigger": {"type": "time_reach",
                                "time": datetime.fromtimestamp(due, timezone.utc).isoformat()},
                    "action": {"type": "send_message", "message": "早上好"}})
    return out


def censored_percentiles(late: list[float], total: int, bound: float) -> dict:
    """Percentiles over `total` timers of which only `late` fired (the rest: later than `bound`, i.e. +inf)."""
    arr = sorted(late)
    censored = len(arr) < total
    full = np.asarray(arr + [np.inf] * (total - len(arr)), dtype=float)
    out = {"n": total, "fired": len(arr), "censored_after_s": bound if censored else None}
    for p in (50, 90, 99):
        v = float(np.percentile(full, p, method="higher" if censored else "linear")) if total else np.inf
        out[f"p{p}"] = None if v == np.inf else round(v, 4)
    out["max"] = None if censored or not arr else round(arr[-1], 4)
    out["mean_fired"] = round(float(np.mean(arr)), 4) if arr else None
    return out


def _batch(prefix: str, n: int, label: str, bound: float, on_due=None, cpu=None) -> dict:
    from app.infra.db import session_scope
    from app.models import Task

    t0 = time.time() + LEAD + n / 2000  # room for storing them
    created = common.bulk_tasks(_bodies(prefix, n, t0), label)
    slack = t0 - time.time()
    time.sleep(max(0.0, slack))
    if on_due is not None:
        on_due()
    cpu0 = cpu() if cpu else None

    def fired():
        with session_scope() as s:
            return s.scalar(select(func.count()).select_from(Task).where(
                Task.task_id.like(f"{prefix}%"), Task.triggered_at.is_not(None))) >= n

    ok, t_end = wait_until(fired, timeout=WINDOW + bound, interval=0.25)
    cpu_used = common.cpu_delta(cpu0, cpu()) if cpu else None
    with session_scope() as s:
        rows = s.execute(select(Task.due_at, Task.triggered_at).where(Task.task_id.like(f"{prefix}%"))).all()
    late = [(trig - due).total_seconds() for due, trig in rows if trig is not None]
    stats = censored_percentiles(late, n, bound)
    return {"timers": n, "window_s": WINDOW, "fired": len(late), "all_fired": bool(ok),
            "fired_per_second_after_first_due": round(len(late) / max(1e-9, t_end - t0), 1),
            "created": created, "slack_before_first_due_s": round(slack, 2), "cpu_seconds": cpu_used,
            "lateness_s": stats, "samples_s": [round(x, 4) for x in late]}


def run_db(bench, kind: str, progress) -> dict:
    n = 500 if bench.quick else 10_000
    bound = 20.0 if bench.quick else 90.0
    db_url = common.fresh_db(kind, "timers")
    url = common.redis_url(common.REDIS_DB_SYSTEM)
    run_id = uuid.uuid4().hex[:4]
    out = {"db": kind, "settings": {"worker_concurrency": bench.concurrency, "beat": "maintenance.tick every 0.5 s",
                                    "processes": "1 worker, 1 beat, 1 listener; 天网 fake receives callbacks",
                                    "wait_bound_s": bound, "created": "bulk (see bench/b_timers.py)"}}
    with bench.scope():
        fake = bench.fake_qingjian()
        tianwang = bench.fake_tianwang()
        system = bench.system(db_url, url, QINGJIAN_WS_URL=fake.url, TIANWANG_CALLBACK_URL=tianwang.url,
                              TIANWANG_CALLBACK_SECRET=common.CALLBACK_SECRET)
        worker = bench.worker(system)
        beat = system.beat()
        listener = system.listener()
        if not fake.wait_for_client(30):
            raise RuntimeError("the listener did not connect to the 轻简 fake\n" + system.dump_logs())
        common.in_process_app(system.env)
        groups = {"worker": worker.p.pid, "listener": listener.p.pid, "beat": beat.p.pid}
        rclient = redis.Redis.from_url(url)
        out["reference_100"] = _batch(f"TR{run_id}", 100, f"{kind}: 100 timers", 30.0)
        progress()
        time.sleep(2)
        out["load"] = _batch(f"TL{run_id}", n, f"{kind}: {n:,} timers", bound,
                             on_due=lambda: bench.profile(f"timers-{kind}", {"worker": worker}, WINDOW + 5),
                             cpu=lambda: common.cpu_seconds(groups, rclient))
        out["sends_seen_by_fake"] = len(fake.sent)
        out["callbacks_seen_by_tianwang_fake"] = len(tianwang.events)
        progress()
    p99 = out["load"]["lateness_s"]["p99"]
    out["targets"] = {"p99_s": {"target": "<= 1.0", "value": p99 if p99 is not None else f"> {bound:g}",
                                "pass": p99 is not None and p99 <= 1.0}}
    return out
