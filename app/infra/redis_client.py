"""One Redis client per URL per process (redis-py pools are fork-safe: they reconnect in a child)."""
from __future__ import annotations

import functools

import redis
from redis.commands.core import Script
from redis.exceptions import NoScriptError


@functools.lru_cache(maxsize=8)
def get_redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=15, socket_connect_timeout=5, health_check_interval=30)


def eval_many(client: redis.Redis, calls: list[tuple[Script, list, list]]) -> list:
    """Run Lua scripts (registered with `client.register_script`) in one round trip.

    redis-py asks `SCRIPT EXISTS` before every pipeline that holds a script: a second round trip each
    time. Here the EVALSHAs go out alone; any a restarted Redis no longer knows are loaded and run again
    (only those: the others have run)."""
    if not calls:
        return []
    pipe = client.pipeline(transaction=False)
    for script, keys, args in calls:
        pipe.evalsha(script.sha, len(keys), *keys, *args)
    results = pipe.execute(raise_on_error=False)
    missing = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
    if missing:
        for script in {id(calls[i][0]): calls[i][0] for i in missing}.values():
            script.sha = client.script_load(script.script)
        pipe = client.pipeline(transaction=False)
        for i in missing:
            script, keys, args = calls[i]
            pipe.evalsha(script.sha, len(keys), *keys, *args)
        for i, result in zip(missing, pipe.execute(raise_on_error=False)):
            results[i] = result
    for result in results:
        if isinstance(result, Exception):
            raise result
    return results
