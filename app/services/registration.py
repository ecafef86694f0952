"""Putting tasks into the Redis index, taking them out, and rebuilding the index from SQL."""
from __future__ import annotations

import json
import logging
import time

import redis
from sqlalchemy import select

from app import runtime
from app.domain import states
from app.domain.triggers import compile_spec
from app.infra.db import session_scope
from app.infra.timeutil import epoch
from app.models import Task
from app.services import firing
from app.state import counts
from app.state import tasks as task_states

log = logging.getLogger(__name__)
# An index entry with no task in SQL is left alone this long: intake writes the entry, then commits the task.
INTAKE_GRACE_SECONDS = 60.0


def spec_of(task: Task) -> dict:
    settings = runtime.current().settings
    customer = (task.raw or {}).get("customer") or {}
    return compile_spec(
        task_id=task.task_id, trigger=task.trigger, customer_id=customer.get("id") or None,
        priority=task.priority, created_at=epoch(task.armed_at or task.created_at),
        payment_keywords=settings.payment_keywords, order_keywords=settings.order_keywords,
        acc_id=task.acc_id,  # the task's own shop only: QINGJIAN_DEFAULT_ACC_ID says where to send from
    )


def activate(task_id: str, spec: dict | None = None) -> str:
    """pending -> registered in Redis -> waiting, then catch up on messages that raced the task in.

    If Redis is down the task stays pending and the reconciler finishes the job; either way the
    current status is returned. `spec`, when the caller has it, saves reading the task back.
    """
    rt = runtime.current()
    if spec is None:
        with session_scope() as session:
            spec = spec_of(session.get(Task, task_id))
    try:
        rt.registry.register(spec)
    except redis.RedisError:
        log.warning("task %s stays pending: Redis unavailable, the reconciler will register it", task_id,
                    extra={"task_id": task_id, "event": "register_failed"})
        return states.PENDING
    with session_scope() as session:
        moved = task_states.move(session, task_id, states.WAITING)
    if not moved.won:
        return moved.previous
    firing.catch_up(spec)
    return states.WAITING


def register_waiting(task_id: str) -> None:
    """A task an operator put back to waiting: into the index, then catch up on what it missed since."""
    with session_scope() as session:
        spec = spec_of(session.get(Task, task_id))
    try:
        runtime.current().registry.register(spec)
    except redis.RedisError:
        log.warning("task %s waits but is not in the index yet: Redis unavailable, the reconciler will add it",
                    task_id, extra={"task_id": task_id, "event": "register_failed"})
        return
    firing.catch_up(spec)


def reconcile(batch: int = 1000, full: bool = False) -> dict:
    """Make the index match SQL: register every pending/waiting task (again, if its entry was compiled
    by an older version of the matcher), drop everything else; then mark the index complete.

    Pending tasks (stored, never registered: Redis was down, or the web process died) are
    registered and moved to waiting. Returns counts of what was done.
    """
    rt = runtime.current()
    registry = rt.registry
    added = dropped = activated = refreshed = 0
    if full:
        registry.clear()
    # SQL -> Redis, in pages by primary key so a million waiting tasks never sit in memory at once.
    last = ""
    while True:
        with session_scope() as session:
            tasks = session.scalars(
                select(Task).where(Task.status.in_((states.PENDING, states.WAITING)), Task.task_id > last)
                .order_by(Task.task_id).limit(batch)).all()
        if not tasks:
            break
        last = tasks[-1].task_id
        present = rt.redis.hmget(registry.spec_key, [t.task_id for t in tasks])
        for task, raw in zip(tasks, present):
            if task.status == states.PENDING:
                if activate(task.task_id) == states.WAITING:
                    activated += 1
            elif raw is None:
                registry.register(spec_of(task))
                added += 1
            elif (spec := spec_of(task)) != (stale := json.loads(raw)):
                registry.unregister(task.task_id, stale)
                registry.register(spec)
                refreshed += 1
    # Redis -> SQL: drop what no longer waits. An entry whose task is not in SQL at all may be an intake
    # between its index write and its commit: it is dropped only once it is older than any intake takes.
    for ids in registry.registered_ids(batch):
        with session_scope() as session:
            status = dict(session.execute(select(Task.task_id, Task.status).where(Task.task_id.in_(ids))).all())
        unknown = [task_id for task_id in ids if task_id not in status]
        young = {spec["id"] for spec in registry.specs(unknown) if spec["ts"] > time.time() - INTAKE_GRACE_SECONDS}
        for task_id in ids:
            if status.get(task_id) not in (states.PENDING, states.WAITING) and task_id not in young:
                registry.unregister(task_id)
                dropped += 1
    registry.mark_built()
    if added or dropped or activated or refreshed:
        log.info("reconciled index: %d registered, %d refreshed, %d dropped, %d activated", added, refreshed,
                 dropped, activated, extra={"event": "reconcile"})
    return {"registered": added, "refreshed": refreshed, "dropped": dropped, "activated": activated}


def index_drift() -> int:
    """How far the index count is from SQL's count of waiting tasks (cheap: the kept counts, not a scan)."""
    with session_scope() as session:
        waiting = counts.read(session).by_status[states.WAITING]
    return abs(runtime.current().registry.count() - waiting)


def index_drift_persists(period_seconds: float) -> bool:
    """Drift now and at the check one period before. A single look is not enough: while tasks fire, a task
    claimed in SQL leaves the index just after its commit, and a new one enters it just before its own,
    so a moment's drift is normal and a full rebuild for it would be wasted work under load."""
    rt = runtime.current()
    mark = rt.keys.lock("index-drift-seen")
    if not index_drift():
        rt.redis.delete(mark)
        return False
    seen_before = rt.redis.exists(mark)
    rt.redis.set(mark, 1, px=int(period_seconds * 2500))  # forgotten if the next check is late
    return bool(seen_before)
