"""What an operator (the console, or 天网 through the API) may do to a finished task or its callbacks.

- retry a `failed` task: its action runs again now, with a fresh set of attempts; steps 轻简 already
  acknowledged are not sent again;
- retry a `timeout` task: it waits for its trigger again, with a new deadline;
- re-arm a `cancelled` task that 天网 sends again unchanged (the legacy manual retry, 取消任务后重新下发);
- re-deliver a callback 天网 says it never got.

Each is one compare-and-set through the state machine, so two operators clicking at once act once, and
each leaves a line in the task's history saying who did it and why.
"""
from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import update

from app.domain import states
from app.infra.db import session_scope
from app.infra.timeutil import utcnow
from app.models import CallbackOutbox, Task
from app.services import actions, callbacks, registration
from app.state import tasks as task_states
from app.state.tasks import TaskNotFound

log = logging.getLogger(__name__)


class NotRetryable(Exception):
    """The task is in a status no retry applies to; `status` says which."""

    def __init__(self, status: str):
        super().__init__(f"task is {status}; only failed or timed-out tasks can be retried")
        self.status = status


def retry(task_id: str, reason: str | None, actor: str) -> str:
    """`failed -> running` (the action runs again now) or `timeout -> waiting` (a new deadline); returns
    the new status. Raises TaskNotFound, or NotRetryable with the current status."""
    now = utcnow()
    detail = {"retry": True, "by": actor, **({"reason": reason} if reason else {})}
    with session_scope() as session:
        task = session.get(Task, task_id)
        if task is None:
            raise TaskNotFound(task_id)
        if task.status == states.FAILED:
            token = actions.new_token()
            moved = task_states.move(
                session, task_id, states.RUNNING, only_from={states.FAILED}, operator=True, detail=detail, now=now,
                values={"attempt_base": task.retry_count + 1, "retry_count": task.retry_count + 1,
                        "error_message": None, "result": None, "lease_owner": token,
                        "lease_expires_at": now + actions.lease()})
            target = states.RUNNING
        elif task.status == states.TIMEOUT:
            token = None
            # One that timed out while running has used attempts: when it fires again its sends need new
            # req_ids (each is queued once) and a fresh set of attempts, as a failed task's retry gets.
            attempts = ({"attempt_base": task.retry_count + 1, "retry_count": task.retry_count + 1}
                        if task.triggered_at is not None else {})
            moved = task_states.move(
                session, task_id, states.WAITING, only_from={states.TIMEOUT}, operator=True, detail=detail, now=now,
                values={"expires_at": now + timedelta(hours=task.timeout_hours), "armed_at": now,
                        "error_message": None, "lease_owner": None, "lease_expires_at": None, **attempts})
            target = states.WAITING
        else:
            raise NotRetryable(task.status)
    if not moved.won:
        raise NotRetryable(moved.previous)
    log.info("task %s retried by %s: %s -> %s", task_id, actor, moved.previous, target,
             extra={"task_id": task_id, "event": "retry"})
    if target == states.RUNNING:
        actions.queue([task_id], {task_id: token})
    else:
        registration.register_waiting(task_id)
    return target


def redeliver_callback(event_id: str, actor: str) -> bool:
    """Post a callback again (天网 dedupes by event_id): one that failed, or was delivered but 天网 says
    it lost it. False if there is no such callback or it is being posted right now."""
    now = utcnow()
    with session_scope() as session:
        row = session.get(CallbackOutbox, event_id)
        if row is None or row.state == "pending":
            return False
        hit = session.execute(
            update(CallbackOutbox).where(CallbackOutbox.event_id == event_id, CallbackOutbox.state == row.state)
            .values(state="pending", next_attempt_at=now, created_at=now, last_error=None)
            .execution_options(synchronize_session=False)).rowcount == 1
        if hit:
            task_states.record(session, row.task_id, "callback_redeliver",
                               {"event_id": event_id, "status": row.status, "was": row.state, "by": actor}, now=now)
    if hit:
        callbacks.wake()
    return hit
