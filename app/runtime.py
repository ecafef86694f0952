"""The process's configured collaborators (settings, Redis and its key names, the index), set once at start-up.

Web, worker, beat and listener all call `configure(settings)` (the app factory does it), so service
functions can be called from any of them with plain ids and no Flask context.
"""
from __future__ import annotations

from dataclasses import dataclass

import redis
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from app.config import Settings
from app.domain.states import PENDING, WAITING
from app.infra import db
from app.infra.keys import Keys
from app.infra.redis_client import get_redis
from app.models import Task
from app.registry import Registry
from app.state import tasks as task_states


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    redis: redis.Redis
    keys: Keys
    registry: Registry


_current: Runtime | None = None
LISTENING = (PENDING, WAITING)


def configure(settings: Settings) -> Runtime:
    global _current
    db.init_engine(settings.database_url)
    task_states.configure(task_states.CallbackPolicy(enabled=bool(settings.callback_url), zone=settings.app_timezone))
    client = get_redis(settings.redis_url)
    keys = Keys(settings.redis_prefix)
    _current = Runtime(settings, client, keys, Registry(client, keys))
    _mark_an_empty_index_complete(_current)
    return _current


def _mark_an_empty_index_complete(rt: Runtime) -> None:
    """With no task waiting, an empty index is a complete one: a fresh system matches from its first
    message instead of waiting for beat's first reconciliation (app.services.registration)."""
    try:
        if rt.registry.is_built():
            return
        with db.session_scope() as session:
            waiting = session.scalar(select(Task.task_id).where(Task.status.in_(LISTENING)).limit(1))
        if waiting is None:
            rt.registry.mark_built()
    except (redis.RedisError, SQLAlchemyError):
        pass  # beat's reconciliation marks it once both answer


def current() -> Runtime:
    if _current is None:
        raise RuntimeError("runtime not configured: create the app (app.create_app) first")
    return _current
