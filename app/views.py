"""How stored rows look on the wire (times in APP_TIMEZONE with their offset)."""
from __future__ import annotations

from app.models import Task, TaskEvent
from app.timeutil import iso


def task_view(task: Task, zone: str) -> dict:
    # The body as received (unknown fields included), then what we know about it.
    view = dict(task.raw or {})
    view.update({
        "task_id": task.task_id, "type": task.type, "priority": task.priority,
        "timeout_hours": task.timeout_hours, "max_retry": task.max_retry,
        "customer_id": task.customer_id, "acc_id": task.acc_id,
        "trigger": task.trigger, "action": task.action,
        "status": task.status, "retry_count": task.retry_count,
        "created_at": iso(task.created_at, zone), "triggered_at": iso(task.triggered_at, zone),
        "completed_at": iso(task.completed_at, zone), "expires_at": iso(task.expires_at, zone),
        "due_at": iso(task.due_at, zone), "updated_at": iso(task.updated_at, zone),
        "error_message": task.error_message, "result": task.result, "triggered_by": task.triggered_by,
    })
    return view


def event_view(event: TaskEvent, zone: str) -> dict:
    return {"at": iso(event.at, zone), "kind": event.kind, "from_status": event.from_status,
            "to_status": event.to_status, "detail": event.detail}
