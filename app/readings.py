"""The system's figures as they are now, read from SQL and Redis: one place for what /metrics exports and
the console's overview shows, so the two never disagree."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from app import runtime, stats
from app.domain import dispatch as dispatch_domain
from app.infra.db import session_scope
from app.models import CallbackOutbox, Dispatch
from app.state import counts
from app.state.counts import Counts

OUTBOX_STATES = ("pending", "delivered", "failed", "unsent")
UNDELIVERED = ("pending", "failed", "unsent")


def task_totals() -> Counts:
    """Tasks by status and trigger type, how many entered each status, outbox size: from the counts kept
    beside the tasks (app.state.counts), the same cost at ten million tasks as at ten."""
    with session_scope() as session:
        return counts.read(session)


def task_counts() -> dict[str, int]:
    """Tasks by status, every status present (zero when none)."""
    return dict(task_totals().by_status)


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
    """Rows not yet delivered are few and counted through the (state, next_attempt_at) index; delivered
    ones are the rest of the outbox, whose size is kept with the task counts; attempts are counted in Redis
    as they are made (summing the column would scan the outbox)."""
    with session_scope() as session:
        counts.snapshot(session)  # the size and the per-state counts from one moment
        size = counts.read(session).callbacks
        # One statement for the counts and the oldest pending one: asked alone for the oldest, SQLite's
        # planner (which sees two states, so "half the rows") scans the whole outbox.
        undelivered = {state: (n, first) for state, n, first in session.execute(
            select(CallbackOutbox.state, func.count(), func.min(CallbackOutbox.created_at))
            .where(CallbackOutbox.state.in_(UNDELIVERED)).group_by(CallbackOutbox.state))}
        first = undelivered.get("pending", (0, None))[1]
        row = session.execute(
            select(CallbackOutbox.event_id, CallbackOutbox.task_id, CallbackOutbox.status, CallbackOutbox.created_at,
                   CallbackOutbox.attempts, CallbackOutbox.last_error)
            .where(CallbackOutbox.state == "pending", CallbackOutbox.created_at == first).limit(1)).first() \
            if first is not None else None
    by_state = {state: n for state, (n, _) in undelivered.items()}
    by_state = {**{state: by_state.get(state, 0) for state in UNDELIVERED}, "delivered": size - sum(by_state.values())}
    return CallbackBacklog({state: by_state[state] for state in OUTBOX_STATES},
                           int(stats.read("callbacks").get("attempts", 0)),
                           OldestCallback(*row) if row is not None else None)


def queue_depths(queues, inboxes=()) -> dict[str, int]:
    """Messages waiting in each Celery queue (kombu's Redis transport keeps a queue in a list), and items
    waiting in each inbox (app.infra.inbox), named `inbox:<name>`."""
    rt = runtime.current()
    pipe = rt.redis.pipeline(transaction=False)
    for queue in queues:
        pipe.llen(queue)
    for name in inboxes:
        pipe.llen(rt.keys.inbox(name))
    return dict(zip([*queues, *(f"inbox:{name}" for name in inboxes)], pipe.execute()))
