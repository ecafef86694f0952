"""Failed console sign-ins, counted in Redis (so every web process and host shares the count).

A user name with CONSOLE_LOGIN_MAX_FAILURES failed sign-ins within 15 minutes, or a client address with
four times as many, is refused until those 15 minutes (counted from its first failure) are over. This is
the one hook the login view calls (`retry_after` before a password is checked, then `failed` or
`succeeded`); a rate limiter in front of the login view (e.g. Flask-Limiter on the endpoint
`console.login`) can be added beside it.
"""
from __future__ import annotations

import hashlib
import logging

import redis

from app import runtime

log = logging.getLogger(__name__)
WINDOW_SECONDS = 15 * 60
ADDRESS_FACTOR = 4  # an office behind one address shares it: more room than for one name


class LoginThrottle:
    def __init__(self, max_failures: int):
        self.max_failures = max_failures

    def _counters(self, name: str, address: str | None) -> list[tuple[str, int]]:
        keys = runtime.current().keys
        # Hashed: what a stranger types as a name never becomes a Redis key as it is.
        found = [(keys.login_failures("name", hashlib.sha256(name.encode()).hexdigest()[:24]), self.max_failures)]
        if address:
            found.append((keys.login_failures("addr", address), self.max_failures * ADDRESS_FACTOR))
        return found

    def retry_after(self, name: str, address: str | None) -> int:
        """Seconds until this name and address may try again; 0 when they may now."""
        counters = self._counters(name, address)
        try:
            pipe = runtime.current().redis.pipeline(transaction=False)
            for key, _ in counters:
                pipe.get(key)
                pipe.ttl(key)
            answers = pipe.execute()
        except redis.RedisError:
            # Operators need the console most when something is down: let them in, and say so.
            log.warning("console sign-in not throttled: Redis unavailable", extra={"event": "login_throttle"})
            return 0
        waits = [max(int(ttl), 1) for (_, limit), count, ttl in zip(counters, answers[::2], answers[1::2])
                 if count is not None and int(count) >= limit]
        return max(waits, default=0)

    def failed(self, name: str, address: str | None) -> None:
        try:
            pipe = runtime.current().redis.pipeline(transaction=True)
            for key, _ in self._counters(name, address):
                pipe.set(key, 0, ex=WINDOW_SECONDS, nx=True)  # the window starts at the first failure
                pipe.incr(key)
            pipe.execute()
        except redis.RedisError:
            log.warning("console sign-in failure not counted: Redis unavailable", extra={"event": "login_throttle"})

    def succeeded(self, name: str) -> None:
        try:
            runtime.current().redis.delete(self._counters(name, None)[0][0])
        except redis.RedisError:
            pass
