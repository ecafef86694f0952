"""Readiness checks for /api/ready: every dependency answers and the singletons are alive."""
from __future__ import annotations

from celery import current_app as celery_app
from sqlalchemy import text

from app import runtime
from app.infra import heartbeat
from app.infra.db import engine


def _check(fn) -> dict:
    try:
        detail = fn()
        return {"ok": True, **({"detail": detail} if detail is not None else {})}
    except Exception as exc:  # a readiness probe reports, it does not raise
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}


def _heartbeat(name: str):
    rt = runtime.current()
    seen = heartbeat.age(rt.redis, rt.keys, name)
    if seen is None:
        raise RuntimeError(f"no {name} heartbeat in the last {heartbeat.TTL_SECONDS}s")
    return {"age_seconds": round(seen, 1)}


def _broker():
    with celery_app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)


def _database():
    with engine().connect() as conn:
        conn.execute(text("SELECT 1"))


def _redis():
    runtime.current().redis.ping()


# What the bridge cannot work without; /api/ready and /metrics (tianwang_dependency_up) both ask.
DEPENDENCIES = {"database": _database, "redis": _redis, "broker": _broker}


def answers(name: str) -> bool:
    return _check(DEPENDENCIES[name])["ok"]


def readiness() -> dict:
    return {
        **{name: _check(check) for name, check in DEPENDENCIES.items()},
        "listener": _check(lambda: _heartbeat("listener")),
        "beat": _check(lambda: _heartbeat("beat")),
    }
