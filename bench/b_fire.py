"""fire: fired messages per second, from the first customer frame into the 轻简 fake to the last send
frame out of it, beside Celery's own no-op task/s on the same broker and worker processes.

The Procfile's processes run (every line but release, web and flower: the worker line(s) with the
Procfile's concurrency, beat, the listener), with the 天网 fake receiving the callbacks. N tasks wait,
one per customer (specified_customer_reply, keyword 好的, send_message), created through the app's API;
20 more are fired first as a warm-up. Then each of the N customers says 好的 once, pushed by one producer
as fast as it can; the clock runs from just before the first frame to the time the fake recorded the
last of the N send frames (each fired by one message). Also reported: CPU per fired message of each
process (/proc, bench/cpu.py; PostgreSQL: the backends of the benchmark database) from the first frame
until everything the burst caused is done (every callback accepted, Celery's queues empty), and the
callbacks 天网 had accepted by the last send (each task makes two: running, completed) and in all.

Reference: `bench.noop` published as fast as one producer can to the `match` queue, consumed by the
Procfile's worker line(s) that take that queue, same concurrency, with `-I bench.noop_tasks`
(bench/reference.py). Target: fired/s >= 0.4 x no-op/s (a fired message needs at least two Celery
hops: matching, and the advance after 轻简's answer).
"""
from __future__ import annotations

import statistics
import uuid

from bench import reference, scenario

TARGET = 0.4


def run_db(bench, kind: str, progress) -> dict:
    n = 300 if bench.quick else 1500
    run_id = uuid.uuid4().hex[:6]
    out = {"db": kind, "settings": {"tasks_waiting": n, "producer": "one thread, FakeQingjian.say in a loop",
                                    "processes": "the Procfile's lines but release, web, flower"}}
    with bench.scope():
        live = scenario.live_system(bench, kind, "fire")
        out["settings"]["procfile"] = {name: proc.name for name, proc in live.procs.items()}
        customers = [f"f{run_id}_{i}" for i in range(n)]
        out["created"] = scenario.create(live, customers, "F", f"{kind}: {n:,} tasks via the API")
        out["warm_up_lost"] = scenario.warm_up(live, run_id)
        bench.profile(f"fire-{kind}", live.procs, 5 if bench.quick else 15)
        out["fire"] = scenario.burst(live, customers, drain=60 + n / 10)
        out["fire"]["callbacks_in_all"] = live.callbacks() - 2 * scenario.WARM_UP  # less the warm-up's
        progress()
    runs = reference.noop_throughput(bench, live.db_url, n, 1 if bench.quick else 3)
    out["reference_noop"] = {"per_second": round(statistics.median(r["per_second"] for r in runs), 1),
                             "runs": runs}
    progress()
    ratio = out["fire"]["per_second"] / out["reference_noop"]["per_second"]
    out["ratio_to_noop"] = round(ratio, 3)
    out["targets"] = {"ratio_to_noop": {"target": f">= {TARGET}", "value": out["ratio_to_noop"],
                                        "pass": ratio >= TARGET and not out["fire"]["missing"]}}
    return out
