"""What the console tests put in the stores: tasks through the API, messages as the listener records
them, and moves through the state machine (as a worker would make them)."""
from __future__ import annotations

import time
import uuid

from sqlalchemy import select

from app.domain.events import InboundEvent
from app.infra.db import session_scope
from app.infra.timeutil import utcnow
from app.models import CallbackOutbox, Task, TaskEvent
from app.services import inbound
from app.state import tasks as task_states
from tests.api.helpers import task_body


def post_task(api, task_id: str, customer: str = "customer_123", **overrides) -> str:
    answer = api.post("/api/task/receive", json=task_body(task_id, for_customer=customer, **overrides))
    assert answer.status_code == 200, answer.get_json()
    return task_id


def fail(task_id: str, error: str = "轻简 refused: account banned") -> None:
    """waiting -> running -> failed, as a worker whose every attempt was refused."""
    with session_scope() as session:
        assert task_states.move(session, task_id, "running", values={"triggered_at": utcnow()}).won
    with session_scope() as session:
        task_states.record(session, task_id, "send", {"step": 0, "req_id": f"{task_id}:0:0", "ok": False,
                                                      "error": "account banned"})
        assert task_states.move(session, task_id, "failed", error=error).won


def say(customer: str, content: str, name: str = "小明", acc_id: str = "shop_001", seconds_ago: float = 0,
        fired: list[str] | None = None) -> str:
    """A text message of `customer` recorded as the listener records it; matched, firing `fired`."""
    msg_id = f"m_{uuid.uuid4().hex[:10]}"
    event = InboundEvent.from_wire("message", {"msg_id": msg_id, "acc_id": acc_id, "from_id": customer,
                                               "from_name": name, "msg_type": "text", "content": content},
                                   time.time() - seconds_ago)
    [row] = inbound.record([inbound.Arrival(event, content=content)], "test")
    if fired is not None:
        with session_scope() as session:
            inbound.mark_matched(session, {row: fired}, utcnow())
    return msg_id


def status(task_id: str) -> str:
    with session_scope() as session:
        return session.get(Task, task_id).status


def history(task_id: str) -> list[TaskEvent]:
    with session_scope() as session:
        return list(session.scalars(select(TaskEvent).where(TaskEvent.task_id == task_id).order_by(TaskEvent.id)))


def callbacks(task_id: str) -> list[CallbackOutbox]:
    with session_scope() as session:
        return list(session.scalars(select(CallbackOutbox).where(CallbackOutbox.task_id == task_id)
                                    .order_by(CallbackOutbox.created_at)))
