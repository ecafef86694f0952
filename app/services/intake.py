"""Receiving and cancelling tasks (CONTRACTS.md §1): store, register, and answer."""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import timedelta

import redis
from sqlalchemy.exc import IntegrityError

from app import runtime
from app.domain import states
from app.domain.times import parse_wire_time, to_utc_naive
from app.domain.triggers import SPECIFIED_CUSTOMER_REPLY, TIME_REACH
from app.infra.db import session_scope
from app.infra.timeutil import utcnow
from app.models import Task
from app.services import firing, registration
from app.state import tasks as task_states

log = logging.getLogger(__name__)
PAST_TOLERANCE = timedelta(minutes=5)


class FieldErrors(ValueError):
    """Input the schema could not judge alone (it needs the clock or the configuration): a 422."""

    def __init__(self, errors: dict[str, list[str]]):
        super().__init__("validation failed")
        self.errors = errors


class Conflict(Exception):
    def __init__(self, message: str, status: str | None = None):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Received:
    task_id: str
    status: str
    created: bool
    rearmed: bool = False  # a cancelled task received again unchanged listens again


def body_hash(body: dict) -> str:
    canonical = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def receive(body: dict, data: dict) -> Received:
    """Store a validated task (`data`, from TaskReceiveSchema) whose raw form is `body`.

    The same task_id with the same body answers the current status and does nothing; with another
    body it is a Conflict. Nothing is written unless every check passed.
    """
    rt = runtime.current()
    digest = body_hash(body)
    task_id = data["task_id"]
    try:
        task = _new_task(data, body, digest, rt.settings)
    except FieldErrors:
        # A repeat of a body that was valid when first received (its time has since passed).
        repeat = repeat_of(body)
        if repeat is None:
            raise
        return repeat
    spec = registration.spec_of(task)
    indexed = _index_first(spec)
    try:
        with session_scope() as session:
            task_states.store_new(session, task, listening=bool(indexed))
    except IntegrityError:  # the id is taken: a repeat (or a conflict), judged outside that transaction
        if indexed == "added":
            rt.registry.discard(task_id, spec)  # ours, for an id that turned out to be another task's
        with session_scope() as session:
            existing = session.get(Task, task_id)
        return _same_or_conflict(existing, digest)
    except BaseException:
        if indexed == "added":
            rt.registry.discard(task_id, spec)  # nothing was stored: nothing may be listening
        raise
    log.info("task %s received (%s, %s)", task_id, task.trigger_type, task.action_type,
             extra={"task_id": task_id, "event": "received"})
    if not indexed:
        return Received(task_id, registration.activate(task_id, spec), True)
    firing.catch_up(spec)
    return Received(task_id, states.WAITING, True)


def _index_first(spec: dict) -> str | None:
    """Put a new task into the Redis index before it is stored, so it is stored already listening (one
    transaction). `added` or `same` (an equal entry left by a request that died): stored as waiting.
    None (another task's entry, or Redis away): stored as pending, then registered the usual way, or by
    the reconciler."""
    try:
        outcome = runtime.current().registry.register_new(spec)
    except redis.RedisError:
        log.warning("task %s: Redis unavailable; stored as pending, the reconciler will register it", spec["id"],
                    extra={"task_id": spec["id"], "event": "register_failed"})
        return None
    return outcome if outcome in ("added", "same") else None


def repeat_of(body: dict) -> Received | None:
    """The answer to a body already received as it is (None if its task_id is new or has another body).

    A repeat is answered even if it would no longer validate (a timer whose time has since passed).
    """
    task_id = body.get("task_id")
    if not isinstance(task_id, str) or len(task_id) > 128:
        return None
    with session_scope() as session:
        existing = session.get(Task, task_id)
    if existing is None or existing.body_hash != body_hash(body):
        return None
    return _same_or_conflict(existing, existing.body_hash)


def _same_or_conflict(existing: Task, digest: str) -> Received:
    if existing.body_hash != digest:
        raise Conflict("task_id already used with a different body", existing.status)
    if existing.status == states.PENDING:
        # Stored, but registration never finished (Redis or the database went away mid-request):
        # the repeat finishes it now rather than waiting for the reconciler.
        return Received(existing.task_id, registration.activate(existing.task_id), False)
    if existing.status == states.CANCELLED:
        return _rearm(existing)
    return Received(existing.task_id, existing.status, False)


def _rearm(task: Task) -> Received:
    """The legacy manual retry (seed 001: 取消任务后重新下发): a cancelled task received again unchanged
    listens again, from now, with a new deadline; its history is kept."""
    now = utcnow()
    start = max(now, task.due_at) if task.due_at else now
    with session_scope() as session:
        moved = task_states.move(session, task.task_id, states.WAITING, only_from={states.CANCELLED}, operator=True,
                                 detail={"rearmed": True, "by": "天网"}, now=now,
                                 values={"expires_at": start + timedelta(hours=task.timeout_hours), "armed_at": now,
                                         "error_message": None})
    if not moved.won:  # re-armed by a request racing this one, or moved meanwhile
        return Received(task.task_id, moved.previous, False)
    log.info("task %s re-armed: received again after it was cancelled", task.task_id,
             extra={"task_id": task.task_id, "event": "rearmed"})
    registration.register_waiting(task.task_id)
    return Received(task.task_id, states.WAITING, False, rearmed=True)


def _new_task(data: dict, body: dict, digest: str, settings) -> Task:
    now = utcnow()
    trigger, action = data["trigger"], data["action"]
    customer = data.get("customer") or {}
    customer_id = customer.get("id") or trigger.get("customer_id")
    acc_id = data.get("acc_id")
    due_at = None
    if trigger["type"] == TIME_REACH:
        due_at = to_utc_naive(parse_wire_time(trigger["time"]), settings.app_timezone)
        errors = {}
        if due_at < now - PAST_TOLERANCE:
            errors["trigger.time"] = ["more than 5 minutes in the past"]
        if not (acc_id or settings.qingjian_default_acc_id):
            errors["acc_id"] = ["required for time_reach (or set QINGJIAN_DEFAULT_ACC_ID)"]
        if errors:
            raise FieldErrors(errors)
    keyword = trigger.get("keyword")
    return Task(
        task_id=data["task_id"], type=data["type"],
        customer_id=customer_id, customer_name=customer.get("name") or trigger.get("customer_name"),
        specified_customer_id=trigger.get("customer_id") if trigger["type"] == SPECIFIED_CUSTOMER_REPLY else None,
        specified_customer_name=trigger.get("customer_name") if trigger["type"] == SPECIFIED_CUSTOMER_REPLY else None,
        trigger_type=trigger["type"], trigger_keyword=keyword, trigger_keywords=trigger.get("keywords"),
        action_type=action["type"], action_file_url=action.get("file_url"), action_message=action.get("message"),
        priority=data["priority"], timeout_hours=float(data["timeout_hours"]), status=states.PENDING,
        retry_count=0, max_retry=data["max_retry"], created_at=now, created_by=data.get("created_by"),
        acc_id=acc_id, trigger=body["trigger"], action=body["action"], raw=body, body_hash=digest,
        expires_at=(due_at or now) + timedelta(hours=float(data["timeout_hours"])), due_at=due_at,
        updated_at=now,
    )


def cancel(task_id: str, reason: str | None, actor: str = "api") -> str:
    """Cancel a pending or waiting task (`actor`: who asked: "api" for 天网, an operator's name for the
    console); raises TaskNotFound, or Conflict with the current status."""
    with session_scope() as session:
        moved = task_states.move(
            session, task_id, states.CANCELLED, error=None, detail={"reason": reason, "by": actor},
            values={"error_message": f"cancelled: {reason}" if reason else "cancelled"},
        )
    if not moved.won:
        raise Conflict(f"task is {moved.previous}; only pending or waiting tasks can be cancelled",
                       moved.previous)
    runtime.current().registry.discard(task_id)
    return states.CANCELLED
