"""The process's configured collaborators (settings, Redis and its key names, the index), set once at start-up.

Web, worker, beat and listener all call `configure(settings)` (the app factory does it), so service
functions can be called from any of them with plain ids and no Flask context.
"""
from __future__ import annotations

from dataclasses import dataclass

import redis

from app.config import Settings
from app.infra import db
from app.infra.keys import Keys
from app.infra.redis_client import get_redis
from app.registry import Registry
from app.state import tasks as task_states


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    redis: redis.Redis
    keys: Keys
    registry: Registry


_current: Runtime | None = None


def configure(settings: Settings) -> Runtime:
    global _current
    db.init_engine(settings.database_url)
    task_states.configure(task_states.CallbackPolicy(enabled=bool(settings.callback_url), zone=settings.app_timezone))
    client = get_redis(settings.redis_url)
    keys = Keys(settings.redis_prefix)
    _current = Runtime(settings, client, keys, Registry(client, keys))
    return _current


def current() -> Runtime:
    if _current is None:
        raise RuntimeError("runtime not configured: create the app (app.create_app) first")
    return _current
