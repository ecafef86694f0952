"""Retention: finished tasks, with their history and callbacks, and inbound messages, deleted once old.

A task that ended (completed, failed, cancelled, timeout) more than RETENTION_DAYS ago — judged by its
last change, `updated_at`: its end, or for history the legacy import stored, its import — goes with its
history and its callback outbox rows, unless one of those is still `pending` (天网 is owed it: the task
waits until it is delivered or given up). Inbound messages go MESSAGE_RETENTION_DAYS after they
arrived. 0 keeps either for ever.

Deleted, not moved to an archive table: an archive in the same database would keep every byte the
purge is for (and need a retention of its own); 天网 holds its own record of each task, every status of
which it was sent, and a longer history is a database backup's job. Beat runs `sweep` every few
seconds; each batch is its own short transaction, so a backlog (the first sweep of an old database)
is worked off bit by bit without holding locks that intake or firing wait on.
"""
from __future__ import annotations

import logging
import time
from collections import Counter
from datetime import datetime, timedelta

from sqlalchemy import delete, select

from app.domain import states
from app.infra.db import session_scope
from app.infra.timeutil import utcnow
from app.models import CallbackOutbox, Task, TaskEvent
from app.services import inbound
from app.state import counts

log = logging.getLogger(__name__)
BATCH = 500  # tasks per transaction (each with its few history and outbox rows)
BUDGET_SECONDS = 1.0  # per sweep: beat's other sweeps share the maintenance workers
TERMINAL = tuple(sorted(states.TERMINAL))


def purge_tasks(status: str, cutoff: datetime, batch: int = BATCH) -> int:
    """Delete up to `batch` tasks of `status` (a finished one) unchanged since `cutoff`, in one
    transaction; returns how many went.

    Lock order is the outbox rows, then the task rows — the order a callback's settlement and an
    operator's redelivery take them — so the purge cannot deadlock with them. A task is deleted only if,
    under those locks, it is still `status`, still unchanged since `cutoff`, and has no pending callback.
    """
    if status not in states.TERMINAL:
        raise ValueError(f"{status} is not a finished status")
    with session_scope() as session:
        owes = select(CallbackOutbox.event_id).where(CallbackOutbox.task_id == Task.task_id,
                                                     CallbackOutbox.state == "pending")
        candidates = list(session.scalars(
            select(Task.task_id).where(Task.status == status, Task.updated_at < cutoff, ~owes.exists())
            .order_by(Task.updated_at).limit(batch)))
        if not candidates:
            return 0
        outbox = session.execute(select(CallbackOutbox.task_id, CallbackOutbox.state)
                                 .where(CallbackOutbox.task_id.in_(candidates)).with_for_update()).all()
        owed = {task_id for task_id, state in outbox if state == "pending"}
        doomed = dict(session.execute(
            select(Task.task_id, Task.trigger_type)
            .where(Task.task_id.in_([t for t in candidates if t not in owed]), Task.status == status,
                   Task.updated_at < cutoff).with_for_update()).all())
        if not doomed:
            return 0
        ids = list(doomed)
        session.execute(delete(CallbackOutbox).where(CallbackOutbox.task_id.in_(ids))
                        .execution_options(synchronize_session=False))
        session.execute(delete(TaskEvent).where(TaskEvent.task_id.in_(ids)).execution_options(synchronize_session=False))
        session.execute(delete(Task).where(Task.task_id.in_(ids)).execution_options(synchronize_session=False))
        tasks_gone, callbacks_gone = Counter(doomed.values()), Counter()
        for task_id, _ in outbox:
            if task_id in doomed:
                callbacks_gone[doomed[task_id]] += 1
        for trigger_type, n in tasks_gone.items():
            counts.record(session, status, None, n, trigger_type=trigger_type, callbacks=-callbacks_gone[trigger_type])
    return len(doomed)


def sweep(retention_days: float, message_retention_days: float, *, budget_seconds: float = BUDGET_SECONDS,
          batch: int = BATCH, now: datetime | None = None) -> dict:
    """One run of beat's retention sweep: batches of old finished tasks (each finished status in turn)
    and of old inbound messages, until none is left or the time budget is spent."""
    now = now or utcnow()
    stop_at = time.monotonic() + budget_seconds
    done = {"tasks_purged": 0, "messages_purged": 0}
    if retention_days > 0:
        cutoff = now - timedelta(days=retention_days)
        remaining = list(TERMINAL)
        while remaining and time.monotonic() < stop_at:  # the finished statuses in turn, a batch each
            status = remaining.pop(0)
            purged = purge_tasks(status, cutoff, batch)
            done["tasks_purged"] += purged
            if purged == batch:
                remaining.append(status)  # more of it may be waiting
    if message_retention_days > 0:
        while time.monotonic() < stop_at:
            purged = inbound.purge(message_retention_days, batch=batch)
            done["messages_purged"] += purged
            if purged < batch:
                break
    if done["tasks_purged"] or done["messages_purged"]:
        log.info("retention: %d finished tasks and %d inbound messages purged", done["tasks_purged"],
                 done["messages_purged"], extra={"event": "retention"})
    return done
