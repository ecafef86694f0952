"""Redis locks: one with a TTL that only its holder can renew or release (listener leadership, beat's tick),
and a once-per-period claim for sweeps several beats schedule."""
from __future__ import annotations

import os
import socket
import uuid

import redis

_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


class RedisLock:
    def __init__(self, client: redis.Redis, key: str, ttl_ms: int):
        self.r, self.key, self.ttl_ms = client, key, ttl_ms
        # The token names the holder (host:pid) so an operator can see who has it.
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    def acquire(self) -> bool:
        return bool(self.r.set(self.key, self.token, nx=True, px=self.ttl_ms))

    def renew(self) -> bool:
        return bool(self._renew(keys=[self.key], args=[self.token, self.ttl_ms]))

    def release(self) -> None:
        try:
            self._release(keys=[self.key], args=[self.token])
        except redis.RedisError:
            pass  # it lapses by itself


def first_in_period(client: redis.Redis, key: str, period_ms: int) -> bool:
    """True for the first caller in each `period_ms` window: one run per period of a sweep that several
    beats (or a duplicated message) schedule. Not released: the window lapses by itself."""
    return bool(client.set(key, "1", nx=True, px=period_ms))
