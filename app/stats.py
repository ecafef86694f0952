"""Counters and latency histograms kept in Redis, so every process on every host adds to one total.

prometheus_client's own multiprocess mode only spans the processes of one host; these live beside the
index in Redis and `/metrics` reads them at scrape time (app.metrics).
"""
from __future__ import annotations

import json
import logging
import time

import redis
from celery.signals import before_task_publish

from app import runtime

log = logging.getLogger(__name__)

# Upper bounds (seconds) of the firing-latency histogram: message in -> action done.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Header stamped on every Celery message when it is published, so /metrics can tell how long the
# oldest message of a queue has waited (Celery's own headers carry no publish time).
SENT_AT = "tw_sent_at"


@before_task_publish.connect
def _stamp_publish_time(headers=None, **_):
    # Every process that publishes (web, worker, beat, listener) builds the app, which imports this module.
    if headers is not None:
        headers.setdefault(SENT_AT, time.time())


def _key(name: str) -> str:
    return runtime.current().keys.stats(name)


def incr(name: str, field: str, amount: int = 1) -> None:
    """Add to counter `name{field}`; never lets a metrics hiccup fail the work being counted."""
    try:
        runtime.current().redis.hincrby(_key(name), field, amount)
    except redis.RedisError:
        log.debug("metric %s{%s} not counted: Redis unavailable", name, field)


def observe_latencies(seconds: list[float]) -> None:
    """Add firing latencies to the histogram, in one round trip however many."""
    if not seconds:
        return
    buckets: dict[str, int] = {}
    for value in seconds:
        bucket = next((str(b) for b in LATENCY_BUCKETS if value <= b), "+Inf")
        buckets[bucket] = buckets.get(bucket, 0) + 1
    try:
        pipe = runtime.current().redis.pipeline(transaction=False)
        for bucket, count in buckets.items():
            pipe.hincrby(_key("firing_latency"), bucket, count)
        pipe.hincrbyfloat(_key("firing_latency"), "sum", sum(seconds))
        pipe.execute()
    except redis.RedisError:
        pass


def read(name: str) -> dict[str, float]:
    raw = runtime.current().redis.hgetall(_key(name))
    return {k.decode() if isinstance(k, bytes) else k: float(v) for k, v in raw.items()}


def queue_lag(queues, now: float | None = None) -> dict[str, float]:
    """Seconds the oldest message of each queue has waited (0 for an empty queue). kombu's Redis
    transport pushes on the left and takes from the right, so the oldest is at index -1."""
    pipe = runtime.current().redis.pipeline(transaction=False)
    for queue in queues:
        pipe.lindex(queue, -1)
    now = time.time() if now is None else now
    lags = {}
    for queue, raw in zip(queues, pipe.execute()):
        sent = None
        if raw is not None:
            try:
                sent = json.loads(raw).get("headers", {}).get(SENT_AT)
            except (ValueError, AttributeError):
                sent = None  # not a message we stamped: no age to tell
        lags[queue] = max(0.0, now - float(sent)) if sent is not None else 0.0
    return lags
