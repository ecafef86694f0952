"""The system's figures as they are now, read from SQL and Redis: one place for what /metrics exports and
the console's overview shows, so the two never disagree."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from app import runtime
from app.domain import dispatch as dispatch_domain
from app.domain import states
from app.infra.db import session_scope
from app.models import CallbackOutbox, Dispatch, Task

OUTBOX_STATES = ("pending", "delivered", "failed", "unsent")


def task_counts() -> dict[str, int]:
    """Tasks by status, every status present (zero when none)."""
    with session_scope() as session:
        counts = dict(session.execute(select(Task.status, func.count()).group_by(Task.status)).all())
    return {status: counts.get(status, 0) for status in states.STATUSES}


def dispatch_counts() -> dict[str, int]:
    with session_scope() as session:
        counts = dict(session.execute(select(Dispatch.status, func.count()).group_by(Dispatch.status)).all())
    return {status: counts.get(status, 0) for status in dispatch_domain.STATUSES}


@dataclass(frozen=True)
class OldestCallback:
    event_id: str
    task_id: str
    status: str
    created_at: datetime
    attempts: int
    last_error: str | None


@dataclass(frozen=True)
class CallbackBacklog:
    by_state: dict[str, int]
    attempts: int  # every delivery attempt so far
    oldest: OldestCallback | None  # the oldest callback not yet delivered (state pending)


def callback_backlog() -> CallbackBacklog:
    with session_scope() as session:
        by_state = dict(session.execute(
            select(CallbackOutbox.state, func.count()).group_by(CallbackOutbox.state)).all())
        attempts = session.scalar(select(func.coalesce(func.sum(CallbackOutbox.attempts), 0)))
        row = session.execute(
            select(CallbackOutbox.event_id, CallbackOutbox.task_id, CallbackOutbox.status, CallbackOutbox.created_at,
                   CallbackOutbox.attempts, CallbackOutbox.last_error)
            .where(CallbackOutbox.state == "pending").order_by(CallbackOutbox.created_at).limit(1)).first()
    return CallbackBacklog({state: by_state.get(state, 0) for state in OUTBOX_STATES}, int(attempts or 0),
                           OldestCallback(*row) if row is not None else None)


def queue_depths(queues) -> dict[str, int]:
    """Messages waiting in each Celery queue (kombu's Redis transport keeps a queue in a list)."""
    pipe = runtime.current().redis.pipeline(transaction=False)
    for queue in queues:
        pipe.llen(queue)
    return dict(zip(queues, pipe.execute()))
