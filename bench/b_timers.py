"""timers: how late the first send of a time_reach task leaves, when 500 are due in the same second.

The timers are stored as `waiting` in bulk (bench/seeding.bulk_tasks: the app's schema, rows and index
entries), each for a customer of its own, with due times spread evenly over one second that starts a few
seconds later. Then the normal system does the rest: the Procfile's processes (beat ticks every 0.5 s and
the sweep claims due timers from SQL; the worker line(s) run the actions; the listener sends them), and
the 天网 fake receives the callbacks. Lateness is the time the 轻简 fake recorded the send frame to the
timer's customer minus the timer's due time; the claim's lateness (`triggered_at - due_at`, from SQL) is
reported beside it. The wait is bounded: a timer not sent by then counts as later than the bound, and a
percentile that falls among those prints as "> bound" (null in JSON, `censored_after_s` set).

Reference: 20 timers due in the same second, in the same system just before (the tick's own
granularity: up to 0.5 s late with nothing queued).
"""
from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone

import numpy as np
from sqlalchemy import select

from bench import scenario, seeding

LEAD = 4.0  # seconds between storing the timers and the first being due
TARGET_S = 1.0


def _bodies(prefix: str, n: int, t0: float) -> list[dict]:
    out = []
    for i in range(n):
        due = t0 + i / n  # all within [t0, t0 + 1)
        out.append({"task_id": f"{prefix}{i:06d}", "type": "bench_timer", "customer": {"id": f"{prefix}c{i}"},
                    "acc_id": "shop_001",
                    "trigger": {"type": "time_reach", "time": datetime.fromtimestamp(due, timezone.utc).isoformat()},
                    "action": {"type": "send_message", "message": "早上好"}})
    return out


def censored_percentiles(late: list[float], total: int, bound: float) -> dict:
    """Percentiles over `total` timers of which only `late` were sent (the rest: later than `bound`)."""
    arr = sorted(late)
    censored = len(arr) < total
    full = np.asarray(arr + [np.inf] * (total - len(arr)), dtype=float)
    out = {"n": total, "sent": len(arr), "censored_after_s": bound if censored else None}
    for p in (50, 90, 99):
        v = float(np.percentile(full, p, method="higher" if censored else "linear")) if total else np.inf
        out[f"p{p}"] = None if v == np.inf else round(v, 4)
    out["max"] = None if censored or not arr else round(arr[-1], 4)
    return out


def _batch(live, prefix: str, n: int, bound: float, before_due=None) -> dict:
    from app.infra.db import session_scope
    from app.models import Task

    t0 = time.time() + LEAD + n / 2000  # room for storing them
    bodies = _bodies(prefix, n, t0)
    due = {b["customer"]["id"]: t0 + i / n for i, b in enumerate(bodies)}
    created = seeding.bulk_tasks(bodies, f"{live.kind}: {n:,} timers")
    since = live.sends()
    slack = t0 - time.time()
    time.sleep(max(0.0, slack - 0.5))
    if before_due is not None:
        before_due()
    meter = live.meter().start()
    sent = scenario.wait_sends(live, due, since, timeout=max(0.0, t0 - time.time()) + 1 + bound)
    cpu_s = meter.used()
    late = [sent[c] - due[c] for c in due if c in sent]
    scenario.wait_quiet(live, bound)
    with session_scope() as s:
        rows = s.execute(select(Task.due_at, Task.triggered_at).where(Task.task_id.like(f"{prefix}%"))).all()
    claimed = [(trig - d).total_seconds() for d, trig in rows if trig is not None]
    return {"timers": n, "sent": len(late), "created": created, "slack_before_first_due_s": round(slack, 2),
            "first_send_late_s": censored_percentiles(late, n, bound),
            "claim_late_s": censored_percentiles(claimed, n, bound), "cpu_seconds": cpu_s,
            "samples_s": [round(x, 4) for x in sorted(late)]}


def run_db(bench, kind: str, progress) -> dict:
    n, bound = 500, (20.0 if bench.quick else 60.0)
    run_id = uuid.uuid4().hex[:4]
    out = {"db": kind, "settings": {"timers": n, "due_within_s": 1, "beat": "maintenance.tick every 0.5 s",
                                    "processes": "the Procfile's lines but release, web, flower; 天网 fake",
                                    "wait_bound_s": bound, "created": "bulk (bench/seeding.py)"}}
    with bench.scope():
        live = scenario.live_system(bench, kind, "timers")
        out["warm_up_lost"] = scenario.warm_up(live, run_id)
        out["reference_20"] = _batch(live, f"TR{run_id}", 20, 30.0)
        progress()
        out["load"] = _batch(live, f"TL{run_id}", n, bound,
                             before_due=lambda: bench.profile(f"timers-{kind}", live.procs, 5))
        progress()
    p99 = out["load"]["first_send_late_s"]["p99"]
    out["targets"] = {"p99_s": {"target": f"<= {TARGET_S:g}", "value": p99 if p99 is not None else f"> {bound:g}",
                                "pass": p99 is not None and p99 <= TARGET_S}}
    return out
