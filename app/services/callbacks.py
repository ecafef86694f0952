"""Delivering the callback outbox to 天网: at least once, each row by one sender at a time."""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import timedelta

import requests
from sqlalchemy import select, update

from app import runtime, state_machine, stats
from app.clients import tianwang
from app.db import session_scope
from app.models import CallbackOutbox
from app.timeutil import utcnow

log = logging.getLogger(__name__)
IN_FLIGHT = timedelta(seconds=60)  # a claimed row is not re-driven while its post may still be under way
_http = requests.Session()


@dataclass(frozen=True)
class Delivery:
    state: str  # delivered | failed | pending (retry due in retry_in) | skipped
    retry_in: float | None = None


def backoff(attempts: int, jitter: float, cap: float = 600.0) -> float:
    """1, 2, 4 ... seconds up to `cap` (CALLBACK_RETRY_MAX_SECONDS), times a jitter in [0.5, 1]."""
    return min(cap, 2.0 ** max(0, attempts - 1)) * (0.5 + 0.5 * jitter)


def deliver(event_id: str) -> Delivery:
    rt = runtime.current()
    settings = rt.settings
    now = utcnow()
    with session_scope() as session:
        # Claim the row: only a pending row that is due, and only one sender at a time.
        claimed = session.execute(
            update(CallbackOutbox)
            .where(CallbackOutbox.event_id == event_id, CallbackOutbox.state == "pending",
                   CallbackOutbox.next_attempt_at <= now)
            .values(attempts=CallbackOutbox.attempts + 1, next_attempt_at=now + IN_FLIGHT)
            .execution_options(synchronize_session=False)
        ).rowcount
        row = session.get(CallbackOutbox, event_id) if claimed else None
    if row is None:
        return Delivery("skipped")
    if not settings.callback_url:
        return _settle(row, "unsent", None, now)
    try:
        tianwang.post(_http, settings.callback_url, row.event_id, row.body, settings.callback_secret)
    except tianwang.CallbackRejected as exc:
        stats.incr("callbacks", "rejected")
        log.warning("callback %s for task %s rejected: %s", event_id, row.task_id, exc,
                    extra={"task_id": row.task_id, "event": "callback_rejected"})
        return _settle(row, "failed", str(exc), now)
    except tianwang.CallbackRetryable as exc:
        stats.incr("callbacks", "retryable")
        if now - row.created_at >= timedelta(hours=settings.callback_max_age_hours):
            log.error("callback %s for task %s given up after %d attempts: %s", event_id, row.task_id,
                      row.attempts, exc, extra={"task_id": row.task_id, "event": "callback_expired"})
            return _settle(row, "failed", f"gave up after {settings.callback_max_age_hours:g}h: {exc}", now)
        delay = backoff(row.attempts, random.random(), settings.callback_retry_max_seconds)
        with session_scope() as session:
            session.execute(update(CallbackOutbox).where(CallbackOutbox.event_id == event_id).values(
                next_attempt_at=now + timedelta(seconds=delay), last_error=str(exc)))
        log.info("callback %s for task %s: %s; retry in %.1fs", event_id, row.task_id, exc, delay,
                 extra={"task_id": row.task_id, "event": "callback_retry"})
        return Delivery("pending", delay)
    return _settle(row, "delivered", None, now)


def _settle(row: CallbackOutbox, state: str, error: str | None, now) -> Delivery:
    with session_scope() as session:
        session.execute(update(CallbackOutbox).where(CallbackOutbox.event_id == row.event_id).values(
            state=state, last_error=error, delivered_at=utcnow() if state == "delivered" else None))
        state_machine.record(session, row.task_id, "callback", {
            "event_id": row.event_id, "status": row.status, "outcome": state, "attempts": row.attempts,
            **({"error": error} if error else {})})
    return Delivery(state)


def overdue(limit: int = 500, grace: timedelta = timedelta(seconds=5)) -> list[str]:
    """Pending rows whose next attempt is past due (their Celery message was lost, or never sent)."""
    with session_scope() as session:
        return list(session.scalars(
            select(CallbackOutbox.event_id)
            .where(CallbackOutbox.state == "pending", CallbackOutbox.next_attempt_at <= utcnow() - grace)
            .order_by(CallbackOutbox.next_attempt_at).limit(limit)))
