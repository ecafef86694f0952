"""The references measured beside the bridge in the same run: Celery's own no-op task.

`bench.noop` (bench/noop_tasks.py: the one HINCRBY matching also does) runs on the Procfile's
worker line(s) that consume the queue it is published to, started with `-I bench.noop_tasks`: the same
command, pool and concurrency as the system under test, against their own Redis DB (REDIS_DB_REF).
"""
from __future__ import annotations

import time

import redis

from bench import common, cpu
from bench.common import PREFIX, counter, paced, percentiles, wait_until


def measure(client, inject, n: int, meter: cpu.Meter | None, timeout: float) -> dict:
    """Run `inject()` (which sends n messages), wait for n more `stats:match events`."""
    base_events = counter(client, "match", "events")
    base_recv = counter(client, "listener", "received")
    if meter:
        meter.start()
    t0 = time.time()
    inject()
    t_injected = time.time()
    recv_done = [None]

    def done():
        pipe = client.pipeline(transaction=False)
        pipe.hget(f"{PREFIX}stats:match", "events")
        pipe.hget(f"{PREFIX}stats:listener", "received")
        events, received = (int(x or 0) for x in pipe.execute())
        if recv_done[0] is None and received - base_recv >= n:
            recv_done[0] = time.time()
        return events - base_events >= n

    ok, t_done = wait_until(done, timeout, 0.005)
    cpu_s = meter.used() if meter else {}
    if not ok:
        got = counter(client, "match", "events") - base_events
        raise RuntimeError(f"only {got} of {n} messages were handled within {timeout:.0f}s")
    elapsed = t_done - t0
    out = {"n": n, "seconds": round(elapsed, 3), "per_second": round(n / elapsed, 1),
           "inject_per_second": round(n / max(1e-9, t_injected - t0), 1), "cpu_seconds": cpu_s,
           "cpu_ms_per_msg": cpu.per_item(cpu_s, n)}
    if recv_done[0] is not None:
        out["listener_per_second"] = round(n / max(1e-9, recv_done[0] - t0), 1)
    return out


def _noop_workers(bench, db_url: str, queue: str):
    url = common.redis_url(common.REDIS_DB_REF)
    client = redis.Redis.from_url(url)
    system = bench.system(db_url, url)
    procs = bench.stack(system, only_workers=True, for_queue=queue, worker_extra="-I bench.noop_tasks")
    app = common.producer(url)
    common.worker_warm(client, lambda i: app.send_task("bench.noop", queue=queue), n=20)
    return client, procs, app


def noop_throughput(bench, db_url: str, n: int, reps: int, queue: str = "match", progress=None) -> list[dict]:
    """`reps` runs of n no-op tasks published as fast as one producer can; each run's tasks/s."""
    runs = []
    with bench.scope():
        client, procs, app = _noop_workers(bench, db_url, queue)
        for _ in range(reps):
            def inject():
                for _ in range(n):
                    app.send_task("bench.noop", queue=queue)
            runs.append(measure(client, inject, n, cpu.Meter(procs, client), timeout=60 + n / 20))
            if progress:
                progress()
    return runs


def noop_hop_latency(bench, db_url: str, rate: float, n: int, queue: str = "match") -> dict:
    """One bare Celery hop (`bench.noop_lat`: publish -> executed) at `rate`/s."""
    with bench.scope():
        client, _, app = _noop_workers(bench, db_url, queue)
        client.delete(f"{PREFIX}bench:lat")
        base = counter(client, "match", "events")
        for _ in paced(n, rate):
            app.send_task("bench.noop_lat", args=[time.time()], queue=queue)
        wait_until(lambda: counter(client, "match", "events") >= base + n, 60, 0.05)
        lags = [1000 * float(x) for x in client.lrange(f"{PREFIX}bench:lat", 0, -1)]
    return {"messages": n, "rate": rate, "latency_ms": rounded(percentiles(lags))}


def rounded(stats: dict, digits: int = 2) -> dict:
    return {k: (round(v, digits) if isinstance(v, float) else v) for k, v in stats.items()}
