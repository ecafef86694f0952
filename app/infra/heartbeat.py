"""Heartbeats in Redis: a key that lives a few seconds, refreshed by the process while it is healthy."""
from __future__ import annotations

import time

import redis

from app.infra.keys import Keys

TTL_SECONDS = 15


def beat(client: redis.Redis, keys: Keys, name: str, ttl: int = TTL_SECONDS) -> None:
    client.set(keys.heartbeat(name), f"{time.time():.3f}", ex=ttl)


def age(client: redis.Redis, keys: Keys, name: str) -> float | None:
    """Seconds since `name` last beat, or None if it has not within its TTL."""
    raw = client.get(keys.heartbeat(name))
    return None if raw is None else max(0.0, time.time() - float(raw))
