"""How stored rows look on the wire (times in APP_TIMEZONE with their offset)."""
from __future__ import annotations

from app.infra.timeutil import iso
from app.models import Dispatch, DispatchStep, Task, TaskEvent


def task_view(task: Task, zone: str) -> dict:
    # The body as received (unknown fields included), then what we know about it.
    raw = task.raw or {}
    view = {"customer": None, "acc_id": None, "created_by": None, **raw}
    view.update({
        "task_id": task.task_id, "type": task.type, "priority": task.priority,
        "timeout_hours": task.timeout_hours, "max_retry": task.max_retry,
        "customer_id": task.customer_id, "acc_id": task.acc_id,
        "trigger": task.trigger, "action": task.action,
        "status": task.status, "retry_count": task.retry_count - (task.attempt_base or 0),
        "created_at": iso(task.created_at, zone), "triggered_at": iso(task.triggered_at, zone),
        "completed_at": iso(task.completed_at, zone), "expires_at": iso(task.expires_at, zone),
        "due_at": iso(task.due_at, zone), "updated_at": iso(task.updated_at, zone),
        "error_message": task.error_message, "result": task.result, "triggered_by": task.triggered_by,
    })
    return view


def event_view(event: TaskEvent, zone: str) -> dict:
    return {"at": iso(event.at, zone), "kind": event.kind, "from_status": event.from_status,
            "to_status": event.to_status, "detail": event.detail}


def dispatch_view(dispatch: Dispatch, steps: list[DispatchStep], zone: str) -> dict:
    return {
        "dispatch_id": dispatch.dispatch_id, "task_id": dispatch.task_id, "customer_id": dispatch.customer_id,
        "acc_id": dispatch.acc_id, "acc_type": dispatch.acc_type, "image_url": dispatch.image_url,
        "reason": dispatch.reason, "designer": dispatch.designer, "tuhui_task_id": dispatch.tuhui_task_id,
        "status": dispatch.status, "error": dispatch.error, "notified_offline": dispatch.notified_offline,
        "created_at": iso(dispatch.created_at, zone), "updated_at": iso(dispatch.updated_at, zone),
        "next_attempt_at": iso(dispatch.next_attempt_at, zone), "completed_at": iso(dispatch.completed_at, zone),
        "steps": [{"step": s.step, "status": s.status, "attempts": s.attempts, "last_error": s.last_error,
                   "result": s.result, "updated_at": iso(s.updated_at, zone)} for s in steps],
    }
