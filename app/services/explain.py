"""Why a task fired or did not (`/api/task/{task_id}/explain`): the task from SQL, the messages it is
explained against, the answer's shape. The reasoning itself is app.domain.explain.

Messages come from the inbound messages the listener recorded in SQL (kept MESSAGE_RETENTION_DAYS), read
through `recent_messages` and `message_by_id` only. Their content is stored masked (phone and ID
numbers), so a keyword made of such digits is explained against the masked text.
"""
from __future__ import annotations

import time
from datetime import datetime, timezone

from sqlalchemy import select

from app import runtime
from app.domain import explain as reasoning
from app.domain.events import InboundEvent
from app.domain.triggers import MESSAGE_TRIGGERS
from app.infra.db import session_scope
from app.infra.timeutil import epoch, iso
from app.models import InboundMessage, Task
from app.schemas import explain_kind
from app.services import inbound, registration
from app.state.tasks import TaskNotFound

RECENT_LIMIT = 20  # messages an explanation looks at, newest first


class MessageNotFound(LookupError):
    """No recent message has that msg_id."""


# -- where recent messages come from: the inbound messages in SQL (app.services.inbound) -------------

def recent_messages(customer_id: str | None, acc_id: str | None, limit: int = RECENT_LIMIT) -> list[InboundEvent]:
    """The newest `limit` messages of `customer_id` (None: of anyone) on shop `acc_id` (None: any),
    newest first, within the retention of MESSAGE_RETENTION_DAYS."""
    query = select(InboundMessage).order_by(InboundMessage.received_at.desc(), InboundMessage.id.desc()).limit(limit)
    if customer_id:
        query = query.where(InboundMessage.from_id == customer_id)
    if acc_id:
        query = query.where(InboundMessage.acc_id == acc_id)
    with session_scope() as session:
        return [inbound.event_of(row) for row in session.scalars(query)]


def message_by_id(msg_id: str, customer_id: str | None = None) -> InboundEvent | None:
    """The recorded message with that msg_id (the customer's, when several 轻简 used the same id)."""
    query = select(InboundMessage).where(InboundMessage.msg_id == msg_id).order_by(InboundMessage.id.desc())
    with session_scope() as session:
        rows = session.scalars(query.limit(10)).all()
    row = next((r for r in rows if customer_id is None or r.from_id == customer_id), rows[0] if rows else None)
    return inbound.event_of(row) if row is not None else None


# -- the explanation -----------------------------------------------------------------------------

def event_from_body(body: dict, received_at: float) -> InboundEvent:
    """A posted message (ExplainEventSchema) as the listener or POST /api/event would have made it;
    raises ValueError for a message the listener would have refused."""
    kind = explain_kind(body)
    if kind == "custom":
        return InboundEvent(kind="custom", event=body["event"], from_id=body.get("customer_id"),
                            acc_id=body.get("acc_id"), data=body.get("data") or {}, received_at=received_at)
    wire = {k: body.get(k) for k in ("msg_id", "acc_id", "from_id", "from_name", "msg_type", "content")}
    return InboundEvent.from_wire(kind, {k: v for k, v in wire.items() if v is not None}, received_at)


def explain_task(task_id: str, *, msg_id: str | None = None, event: InboundEvent | None = None,
                 limit: int = RECENT_LIMIT) -> dict:
    """The answer's data: the task against `event` (as if it arrived now), the message `msg_id`, or
    else its customer's (for an any-customer task: anyone's) recent messages. Raises TaskNotFound,
    MessageNotFound."""
    zone = runtime.current().settings.app_timezone
    with session_scope() as session:
        task = session.get(Task, task_id)
        if task is None:
            raise TaskNotFound(task_id)
        spec, state, status = registration.spec_of(task), state_of(task), task.status
    if event is not None:
        source, events = "body", [event]
    elif msg_id is not None:
        found = message_by_id(msg_id, spec.get("c"))
        if found is None:
            raise MessageNotFound(msg_id)
        source, events = "msg_id", [found]
    elif spec["t"] in MESSAGE_TRIGGERS:
        # A bound task's messages from every shop (another shop is a reason it did not fire); an
        # any-customer task's from its own shop, where the messages that could fire it are.
        source, events = "recent", recent_messages(spec.get("c"), None if spec.get("c") else spec.get("a"), limit)
    else:
        source, events = "task", []  # time_reach, and custom events (which are not kept)

    def when(ts: float) -> str:
        return iso(datetime.fromtimestamp(ts, timezone.utc).replace(tzinfo=None), zone)

    now = time.time()
    alone = reasoning.explain(spec, state, None, now=now, when=when)
    told = [reasoning.explain(spec, state, e, now=now, when=when, hypothetical=source == "body") for e in events]
    return {
        "task_id": task_id, "status": status, "trigger_type": spec["t"], "source": source,
        "conclusion": reasoning.summary(alone, told) if source == "recent" else (told or [alone])[0].conclusion,
        "evaluations": [_evaluation_view(e, when) for e in (told or [alone])],
    }


def state_of(task: Task) -> reasoning.TaskState:
    def at(moment):
        return epoch(moment) if moment is not None else None

    return reasoning.TaskState(
        status=task.status, created_at=epoch(task.created_at), expires_at=epoch(task.expires_at),
        due_at=at(task.due_at), triggered_at=at(task.triggered_at), triggered_by=task.triggered_by,
        completed_at=at(task.completed_at), error_message=task.error_message)


def _evaluation_view(told: reasoning.Explanation, when) -> dict:
    event = told.event
    message = None if event is None else {
        "kind": event.kind, "msg_id": event.msg_id, "acc_id": event.acc_id, "from_id": event.from_id,
        "from_name": event.from_name, "msg_type": event.message_type, "text": event.text,
        "event": event.event, "data": event.data, "received_at": when(event.received_at)}
    return {"message": message, "outcome": told.outcome, "conclusion": told.conclusion,
            "conditions": [{"name": c.name, "verdict": c.verdict, "expected": c.expected, "actual": c.actual,
                            "note": c.note} for c in told.conditions]}
