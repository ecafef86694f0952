"""Delivering the callback outbox to 天网: at least once, each row by one sender at a time.

Deliveries are batched: a status change's commit wakes one `callbacks.flush` (unless one is already
queued), which claims the due rows with one UPDATE … RETURNING, posts them on a keep-alive session and
settles them in one transaction. Retries are rows with a later `next_attempt_at`; beat's tick wakes a
flush whenever rows are due.
"""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import timedelta

import requests
from sqlalchemy import func, select, update

from app import queueing, runtime, stats
from app.clients import tianwang
from app.domain import backoff
from app.infra.db import session_scope
from app.infra.timeutil import utcnow
from app.models import CallbackOutbox
from app.state import tasks as task_states

log = logging.getLogger(__name__)
IN_FLIGHT = timedelta(seconds=60)  # a claimed row is not re-driven while its post may still be under way
_http = requests.Session()


BATCH = 200
MAX_BATCHES = 10  # per flush; a flush that leaves rows due wakes the next one
WAKE_TTL_SECONDS = 5  # a flush asked for but lost (dead worker) blocks new ones this long at most


@dataclass(frozen=True)
class Delivery:
    event_id: str
    task_id: str
    status: str
    attempts: int
    state: str  # delivered | failed | pending (retry after retry_in) | unsent
    error: str | None = None
    retry_in: float | None = None


def wake() -> None:
    """Ask for a flush, unless one is already queued (commits in a burst share one flush)."""
    rt = runtime.current()
    if rt.redis.set(rt.keys.callback_flush_queued, 1, nx=True, ex=WAKE_TTL_SECONDS):
        queueing.enqueue_callback_flush()


def flush() -> dict:
    """Deliver every callback that is due: claim a batch, post each, settle the batch together.

    The caller (callbacks.flush) clears the wake flag first, so a row committed while this runs
    either is claimed here or wakes another flush. Returns counts by outcome, and `more` when rows
    were left due.
    """
    rt = runtime.current()
    rt.redis.delete(rt.keys.callback_flush_queued)
    counts: dict = {}
    for _ in range(MAX_BATCHES):
        rows = _claim_due(BATCH)
        if not rows:
            return counts
        stats.incr("callbacks", "attempts", len(rows))  # /metrics: summing the outbox's column would scan it
        outcomes = [_post(row) for row in rows]
        _settle(outcomes)
        for outcome in outcomes:
            counts[outcome.state] = counts.get(outcome.state, 0) + 1
    counts["more"] = True
    return counts


def _claim_due(limit: int) -> list:
    """Due pending rows, claimed in one compare-and-set: each row by one sender at a time."""
    now = utcnow()
    due = (select(CallbackOutbox.event_id)
           .where(CallbackOutbox.state == "pending", CallbackOutbox.next_attempt_at <= now)
           .order_by(CallbackOutbox.next_attempt_at).limit(limit))
    with session_scope() as session:
        return session.execute(
            update(CallbackOutbox)
            .where(CallbackOutbox.event_id.in_(due), CallbackOutbox.state == "pending",
                   CallbackOutbox.next_attempt_at <= now)
            .values(attempts=CallbackOutbox.attempts + 1, next_attempt_at=now + IN_FLIGHT)
            .returning(CallbackOutbox.event_id, CallbackOutbox.task_id, CallbackOutbox.status,
                       CallbackOutbox.body, CallbackOutbox.attempts, CallbackOutbox.created_at)
            .execution_options(synchronize_session=False)).all()


def _post(row) -> Delivery:
    settings = runtime.current().settings
    done = dict(event_id=row.event_id, task_id=row.task_id, status=row.status, attempts=row.attempts)
    if not settings.callback_url:
        return Delivery(**done, state="unsent")
    try:
        tianwang.post(_http, settings.callback_url, row.event_id, row.body, settings.callback_secret)
    except tianwang.CallbackRejected as exc:
        stats.incr("callbacks", "rejected")
        log.warning("callback %s for task %s rejected: %s", row.event_id, row.task_id, exc,
                    extra={"task_id": row.task_id, "event": "callback_rejected"})
        return Delivery(**done, state="failed", error=str(exc))
    except tianwang.CallbackRetryable as exc:
        stats.incr("callbacks", "retryable")
        if utcnow() - row.created_at >= timedelta(hours=settings.callback_max_age_hours):
            log.error("callback %s for task %s given up after %d attempts: %s", row.event_id, row.task_id,
                      row.attempts, exc, extra={"task_id": row.task_id, "event": "callback_expired"})
            return Delivery(**done, state="failed",
                            error=f"gave up after {settings.callback_max_age_hours:g}h: {exc}")
        # 1, 2, 4 … s after the first, second, third attempt, up to CALLBACK_RETRY_MAX_SECONDS
        delay = backoff.exponential(row.attempts - 1, random.random(), first=1.0,
                                    cap=settings.callback_retry_max_seconds)
        log.info("callback %s for task %s: %s; retry in %.1fs", row.event_id, row.task_id, exc, delay,
                 extra={"task_id": row.task_id, "event": "callback_retry"})
        return Delivery(**done, state="pending", error=str(exc), retry_in=delay)
    return Delivery(**done, state="delivered")


def _settle(outcomes: list[Delivery]) -> None:
    """The batch's outcomes in one transaction; settled ones get a line in their task's history."""
    now = utcnow()
    with session_scope() as session:
        session.execute(update(CallbackOutbox), [{
            "event_id": o.event_id, "state": o.state, "last_error": o.error,
            "delivered_at": now if o.state == "delivered" else None,
            "next_attempt_at": now + timedelta(seconds=o.retry_in or 0),
        } for o in outcomes])
        for o in outcomes:
            if o.state != "pending":
                task_states.record(session, o.task_id, "callback", {
                    "event_id": o.event_id, "status": o.status, "outcome": o.state, "attempts": o.attempts,
                    **({"error": o.error} if o.error else {})}, now=now)


def due_count() -> int:
    """How many pending rows are due now (beat wakes a flush when there are any)."""
    with session_scope() as session:
        return int(session.scalar(
            select(func.count()).select_from(CallbackOutbox)
            .where(CallbackOutbox.state == "pending", CallbackOutbox.next_attempt_at <= utcnow())) or 0)
