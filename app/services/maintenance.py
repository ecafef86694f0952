"""Beat's sweeps: due timers, deadlines, lapsed leases, overdue callbacks, index reconciliation."""
from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import select

from app import queueing, runtime
from app.domain import states
from app.domain.triggers import PRIORITY_RANK, TIME_REACH
from app.infra.db import session_scope
from app.infra.timeutil import utcnow
from app.models import Task
from app.services import callbacks
from app.state import tasks as task_states

log = logging.getLogger(__name__)
BATCH = 1000


def fire_due_timers(limit: int = BATCH) -> int:
    """Claim every waiting time_reach task whose time has come, in one CAS, and enqueue the winners
    (urgent first, then the earliest)."""
    rt = runtime.current()
    now = utcnow()
    with session_scope() as session:
        due = session.execute(
            select(Task.task_id, Task.priority).where(
                Task.status == states.WAITING, Task.trigger_type == TIME_REACH, Task.due_at <= now)
            .order_by(Task.due_at).limit(limit)).all()
        if not due:
            return 0
        won = set(task_states.move_many(
            session, [task_id for task_id, _ in due], states.WAITING, states.RUNNING,
            values={"triggered_at": now, "triggered_by": {"kind": "time"}, "lease_owner": None,
                    "lease_expires_at": now + timedelta(seconds=rt.settings.action_lease_seconds)},
            detail={"triggered_by": {"kind": "time"}}, now=now))
    rt.registry.discard_many(won)
    winners = [row for row in due if row[0] in won]
    for task_id, priority in sorted(winners, key=lambda row: PRIORITY_RANK.get(row[1], 2)):
        queueing.enqueue_action(task_id, priority)
    return len(winners)


def expire_deadlines(limit: int = BATCH) -> int:
    """pending/waiting tasks past their deadline become `timeout` (running ones finish their attempt)."""
    now = utcnow()
    expired: list[str] = []
    for source in (states.PENDING, states.WAITING):
        with session_scope() as session:
            late = list(session.scalars(
                select(Task.task_id).where(Task.status == source, Task.expires_at <= now).limit(limit)))
            expired += task_states.move_many(
                session, late, source, states.TIMEOUT, error="deadline passed before the trigger fired", now=now)
    runtime.current().registry.discard_many(expired)
    return len(expired)


def redrive_lapsed_leases(limit: int = BATCH) -> int:
    """Running tasks whose worker died (or whose action was never enqueued): enqueue them again.

    Each re-drive pushes the lease forward, so one lapse causes one re-drive, not one per sweep.
    """
    rt = runtime.current()
    now = utcnow()
    lease = timedelta(seconds=rt.settings.action_lease_seconds)
    with session_scope() as session:
        lapsed = session.execute(
            select(Task.task_id, Task.priority, Task.lease_expires_at).where(
                Task.status == states.RUNNING, Task.lease_expires_at < now).limit(limit)).all()
    count = 0
    for task_id, priority, seen in lapsed:
        with session_scope() as session:
            ours = task_states.update_running(
                session, task_id, where=(Task.lease_expires_at == seen,),
                lease_owner=None, lease_expires_at=now + lease)
            if ours:
                task_states.record(session, task_id, "redrive", {"lease_expired_at": str(seen)})
        if ours:
            log.warning("task %s: lease lapsed, re-driving its action", task_id,
                        extra={"task_id": task_id, "event": "redrive"})
            queueing.enqueue_action(task_id, priority)
            count += 1
    return count


def wake_due_callbacks() -> int:
    """Callbacks due (retries whose time came, or rows whose flush was lost): wake a flush."""
    due = callbacks.due_count()
    if due:
        callbacks.wake()
    return due
