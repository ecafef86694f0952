"""The reference Celery task: `celery -A workers worker -I bench.noop_tasks`.

`bench.noop` does the one Redis HINCRBY that matching does per batch when it finds nothing
(`stats:match events`), inside the same Flask-context task class, so the difference between the two
throughputs is the cost of the bridge's own work. `bench.noop_lat` also records how long the message
waited between publish and execution (the floor of one Celery hop's latency).
"""
import time

from celery import shared_task

from app import runtime, stats


@shared_task(name="bench.noop", ignore_result=True)
def noop(*_args) -> None:
    stats.incr("match", "events")


@shared_task(name="bench.noop_lat", ignore_result=True)
def noop_lat(sent_at: float) -> None:
    lag = time.time() - float(sent_at)
    rt = runtime.current()
    rt.redis.rpush(f"{rt.settings.redis_prefix}bench:lat", f"{lag:.6f}")
    stats.incr("match", "events")
