"""One Redis client per URL per process (redis-py pools are fork-safe: they reconnect in a child)."""
from __future__ import annotations

import functools

import redis


@functools.lru_cache(maxsize=8)
def get_redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=15, socket_connect_timeout=5, health_check_interval=30)
