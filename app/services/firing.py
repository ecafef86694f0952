"""From an inbound event to claimed tasks: look candidates up, match, claim, hand the action on."""
from __future__ import annotations

import logging
from datetime import timedelta

import redis
from sqlalchemy import select

from app import queueing, runtime, stats
from app.domain import states
from app.domain.triggers import (
    MESSAGE_TRIGGERS,
    PRIORITY_RANK,
    InboundEvent,
    firing_order,
    matches,
    within_lookback,
)
from app.infra.db import session_scope
from app.infra.timeutil import utcnow
from app.models import Task
from app.state import tasks as task_states

log = logging.getLogger(__name__)
PRIORITY_NAMES = {rank: name for name, rank in PRIORITY_RANK.items()}


def process_event(event: InboundEvent) -> list[str]:
    """Fire every waiting task this event matches, in priority order; returns the ids it fired."""
    specs = runtime.current().registry.candidates(event)
    hits = [
        spec for spec in firing_order(specs)
        if matches(spec, event) and (spec["t"] not in MESSAGE_TRIGGERS or within_lookback(spec, event))
    ]
    won = [spec for spec in hits if claim(spec["id"], event, spec=spec)]
    # One after another, in firing order (CONTRACTS.md §1: "they run in priority order"): as separate
    # actions they would race on the worker pool. A link lost on the way is re-driven by beat when its
    # claim's lease lapses, so one slow action never holds the others back for longer than a lease.
    queueing.enqueue_actions([(spec["id"], PRIORITY_NAMES.get(spec["p"], "normal")) for spec in won])
    stats.incr("match", "events")
    return [spec["id"] for spec in won]


def triggered_by(event: InboundEvent) -> dict:
    return {"kind": event.kind, "msg_id": event.msg_id, "customer_id": event.from_id,
            "customer_name": event.from_name, "acc_id": event.acc_id, "event": event.event,
            "received_at": event.received_at}


def claim(task_id: str, event: InboundEvent | None, spec: dict | None = None) -> bool:
    """waiting -> running for whoever gets there first; the winner enqueues the action, unless the
    caller passes the task's index `spec` (process_event: it enqueues its winners together).

    The claim carries a lease: if the action is never run (the winner died before enqueueing, or the
    worker died mid-action), beat sees the lapsed lease and enqueues it again.
    """
    rt = runtime.current()
    now = utcnow()
    by = triggered_by(event) if event is not None else {"kind": "time"}
    with session_scope() as session:
        moved = task_states.move(
            session, task_id, states.RUNNING, detail={"triggered_by": by},
            values={"triggered_at": now, "triggered_by": by, "lease_owner": None,
                    "lease_expires_at": now + timedelta(seconds=rt.settings.action_lease_seconds)}, now=now,
        )
        priority = session.scalar(select(Task.priority).where(Task.task_id == task_id)) \
            if moved.won and spec is None else None
    if moved.won or moved.previous != states.PENDING:
        rt.registry.discard(task_id, spec)  # fired, or a stale index entry of a task that no longer waits
    if not moved.won:
        return False
    log.info("task %s fired by %s", task_id, by.get("msg_id") or by["kind"],
             extra={"task_id": task_id, "event": "fired"})
    if spec is None:
        queueing.enqueue_action(task_id, priority)
    return True


def catch_up(spec: dict) -> None:
    """Fire a just-registered task on a message that arrived since the task did (or within its
    lookback_seconds before it).

    The listener keeps the last hour of messages; one that arrived while the task was being
    registered may have found it still pending, so it is looked at again here.
    """
    if spec["t"] not in MESSAGE_TRIGGERS:
        return
    rt = runtime.current()
    since = spec["ts"] - spec.get("lb", 0.0)
    try:
        recent = rt.registry.recent(spec.get("c"), since)
    except redis.RedisError:
        return
    for event in recent:  # oldest first
        if matches(spec, event) and within_lookback(spec, event):
            claim(spec["id"], event)
            return
