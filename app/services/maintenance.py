"""Beat's sweeps: due timers, deadlines, lapsed leases and due retries, overdue callbacks, lost matches,
undrained inboxes."""
from __future__ import annotations

import logging

from sqlalchemy import select

from app import queueing, runtime
from app.domain import states
from app.domain.triggers import PRIORITY_RANK, TIME_REACH
from app.infra.db import session_scope
from app.infra.timeutil import utcnow
from app.models import Task
from app.services import actions, callbacks, inbound
from app.state import tasks as task_states

log = logging.getLogger(__name__)
BATCH = 1000
MATCH_REDRIVE_SECONDS = 15.0  # a message not matched this long after it was handed over is handed over again


def fire_due_timers(limit: int = BATCH) -> int:
    """Claim every waiting time_reach task whose time has come, in one CAS, and start the winners'
    actions right here (urgent first, then the earliest), each in its customer's lane."""
    rt = runtime.current()
    now, token = utcnow(), actions.new_token()
    with session_scope() as session:
        due = session.execute(
            select(Task.task_id, Task.priority).where(
                Task.status == states.WAITING, Task.trigger_type == TIME_REACH, Task.due_at <= now)
            .order_by(Task.due_at).limit(limit)).all()
        if not due:
            return 0
        won = set(task_states.move_many(
            session, [task_id for task_id, _ in due], states.WAITING, states.RUNNING,
            values={"triggered_at": now, "triggered_by": {"kind": "time"}, "lease_owner": token,
                    "lease_expires_at": now + actions.lease()},
            detail={"triggered_by": {"kind": "time"}}, now=now))
    rt.registry.discard_many(won)
    winners = [task_id for task_id, priority in sorted(due, key=lambda row: PRIORITY_RANK.get(row[1], 2))
               if task_id in won]
    actions.queue(winners, {task_id: token for task_id in winners})
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
    """Running tasks whose lease expired: a retry that is due, or an action whose worker (or answer) was
    lost. Each is handed to `actions.resume` once: the lease is pushed forward first (a CAS on the expiry
    seen), so one lapse is one re-drive, however many beats sweep."""
    now = utcnow()
    lease = actions.lease()
    with session_scope() as session:
        lapsed = session.execute(
            select(Task.task_id, Task.lease_owner, Task.lease_expires_at).where(
                Task.status == states.RUNNING, Task.lease_expires_at < now).limit(limit)).all()
    ours = []
    with session_scope() as session:
        for task_id, owner, seen in lapsed:
            if task_states.update_running(session, task_id, where=(Task.lease_expires_at == seen,),
                                          lease_expires_at=now + lease):
                retry = owner == actions.RETRY_OWNER
                task_states.record(session, task_id, "retry_due" if retry else "redrive",
                                   None if retry else {"lease_expired_at": str(seen)}, now=now)
                ours.append((task_id, retry))
    for task_id, retry in ours:
        if not retry:
            log.warning("task %s: lease lapsed, re-driving its action", task_id,
                        extra={"task_id": task_id, "event": "redrive"})
    if ours:
        queueing.enqueue_resume([task_id for task_id, _ in ours])
    return len(ours)


def redrive_lost_matches(older_than: float = MATCH_REDRIVE_SECONDS) -> int:
    """Inbound messages handed to matching but never matched (a worker killed with them, the broker lost
    them, or the index was incomplete): handed over again, in one batch."""
    if not runtime.current().registry.is_built():
        return 0  # they would find nothing yet; the reconciliation that completes the index calls this
    lost = inbound.unmatched(older_than)
    if lost:
        log.warning("%d inbound messages were not matched; handing them to matching again", len(lost),
                    extra={"event": "match_redrive"})
        queueing.enqueue_match([{"event": event.as_dict(), "inbound_id": row_id,
                                 **_lane_of(event)} for row_id, event in lost])
    return len(lost)


def _lane_of(event) -> dict:
    """The lane entry the listener gave a message (its msg_id), so a re-driven match takes its place."""
    if event.kind == "custom" or not event.from_id or not event.msg_id:
        return {}
    acc_id = event.acc_id or runtime.current().settings.qingjian_default_acc_id
    return {"lane": [acc_id, event.from_id], "mark": event.msg_id.replace("|", "_")}


def wake_waiting_inboxes() -> int:
    """The listener's inboxes: batches a killed drain held go back, and items nobody drains wake a drain
    (its wake was lost with a worker or the broker). Returns the items put back."""
    returned = 0
    for name in queueing.INBOXES:
        box = queueing.inbox(name)
        returned += box.requeue_lapsed()
        box.wake_if_waiting()
    return returned


def wake_due_callbacks() -> int:
    """Callbacks due (retries whose time came, or rows whose flush was lost): wake a flush."""
    due = callbacks.due_count()
    if due:
        callbacks.wake()
    return due
