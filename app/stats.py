"""Counters and latency histograms kept in Redis, so every process on every host adds to one total.

prometheus_client's own multiprocess mode only spans the processes of one host; these live beside the
index in Redis and `/metrics` reads them at scrape time (app.metrics).
"""
from __future__ import annotations

import logging

import redis

from app import runtime

log = logging.getLogger(__name__)

# Upper bounds (seconds) of the firing-latency histogram: message in -> action done.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def _key(name: str) -> str:
    return runtime.current().keys.stats(name)


def incr(name: str, field: str, amount: int = 1) -> None:
    """Add to counter `name{field}`; never lets a metrics hiccup fail the work being counted."""
    try:
        runtime.current().redis.hincrby(_key(name), field, amount)
    except redis.RedisError:
        log.debug("metric %s{%s} not counted: Redis unavailable", name, field)


def observe_latency(seconds: float) -> None:
    bucket = next((str(b) for b in LATENCY_BUCKETS if seconds <= b), "+Inf")
    try:
        pipe = runtime.current().redis.pipeline(transaction=False)
        pipe.hincrby(_key("firing_latency"), bucket, 1)
        pipe.hincrbyfloat(_key("firing_latency"), "sum", seconds)
        pipe.execute()
    except redis.RedisError:
        pass


def read(name: str) -> dict[str, float]:
    raw = runtime.current().redis.hgetall(_key(name))
    return {k.decode() if isinstance(k, bytes) else k: float(v) for k, v in raw.items()}
