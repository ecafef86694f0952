"""Running a fired task's action: each step sent through 轻简 once, retried on failure, then finished.

A worker first takes the task's lease (a CAS on `lease_owner`/`lease_expires_at`), so two deliveries
of the same Celery message, or a re-drive by beat, never run the action side by side. Progress per
step is written to SQL; a retry or a new owner resumes at the first step 轻简 has not acknowledged,
and waits for the answer to a send that is still in flight instead of sending it again.
"""
from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import or_

from app import runtime, stats
from app.clients.qingjian import SendChannel, send_frame
from app.domain import actions as plan
from app.domain import backoff, states
from app.infra.db import session_scope
from app.infra.timeutil import utcnow
from app.models import Task
from app.services import dispatch
from app.state import tasks as task_states

log = logging.getLogger(__name__)
RETRY_FIRST_SECONDS, RETRY_MAX_SECONDS = 2.0, 60.0  # between attempts of an action: 2, 4, 8 … 60 s


@dataclass(frozen=True)
class Outcome:
    """What the Celery task should do next: nothing (`done`), or run again after `retry_in` seconds."""

    done: bool
    retry_in: float | None = None
    status: str | None = None


class StepFailed(Exception):
    pass


class Unrecoverable(Exception):
    """A failure no retry can cure (e.g. nobody to send to)."""


def _lease_held(owner: str) -> tuple:
    return (Task.lease_owner == owner,)


def take_lease(task_id: str, owner: str) -> Task | None:
    """The running task, if this worker now holds its lease; None if someone else does or it is done."""
    rt = runtime.current()
    now = utcnow()
    with session_scope() as session:
        took = task_states.update_running(
            session, task_id,
            where=(or_(Task.lease_owner.is_(None), Task.lease_owner == owner, Task.lease_expires_at < now),),
            lease_owner=owner, lease_expires_at=now + timedelta(seconds=rt.settings.action_lease_seconds),
        )
        return session.get(Task, task_id) if took else None


def run(task_id: str, owner: str) -> Outcome:
    task = take_lease(task_id, owner)
    if task is None:
        log.info("task %s: not running or held by another worker; nothing to do", task_id,
                 extra={"task_id": task_id, "event": "skip"})
        return Outcome(done=True)
    if task.action.get("type") == "transfer_to_designer":
        return _transfer(task, owner)
    sends = Sends(task)
    try:
        result = _send_all(task, owner, recipient(task), sends)
    except Unrecoverable as exc:
        return _finish(task, owner, sends, failed_with=str(exc))
    except StepFailed as exc:
        return _after_failure(task, owner, sends, str(exc))
    except LeaseLost:
        log.warning("task %s: lease lost to another worker; stopping", task_id, extra={"task_id": task_id})
        return Outcome(done=True)
    return _finish(task, owner, sends, result=result)


class Sends:
    """What this run learned about the steps (acknowledged or not), written to SQL when it ends.

    Nothing is written per step: an in-flight send is known to the hand-off in Redis (SendChannel
    queues a req_id once), and the steps' outcome lands with the task's next status write.
    """

    def __init__(self, task: Task):
        self.progress = dict(task.progress or {})
        self.events: list[tuple[str, dict]] = []
        self.lease_renewed = time.monotonic()

    def done(self, index: int) -> bool:
        return bool((self.progress.get(str(index)) or {}).get("ok"))

    def note(self, index: int, req_id: str, outcome: dict | None) -> None:
        ok = bool(outcome and outcome.get("ok"))
        self.progress[str(index)] = {"req_id": req_id, "ok": ok}
        detail = {"step": index, "req_id": req_id, "ok": ok}
        if not ok:
            detail["error"] = (outcome or {}).get("error") or "no send_result"
        self.events.append(("send", detail))

    def write(self, session, task_id: str) -> None:
        for kind, detail in self.events:
            task_states.record(session, task_id, kind, detail)


def _transfer(task: Task, owner: str) -> Outcome:
    """Hand the customer to a designer: a dispatch (app.services.dispatch) takes the task over and
    completes or fails it through the state machine when it is assigned or fails."""

    try:
        acc_id, to_id = recipient(task)
    except Unrecoverable as exc:
        return _finish(task, owner, failed_with=str(exc))
    if dispatch.start_for_task(task, owner, acc_id=acc_id, customer_id=to_id) is None:
        log.warning("task %s: lease lost to another worker; stopping", task.task_id, extra={"task_id": task.task_id})
    return Outcome(done=True, status=states.RUNNING)


def recipient(task: Task) -> tuple[str, str]:
    """(acc_id, to_id): the customer who triggered the task, on the task's account or theirs."""
    settings = runtime.current().settings
    by = task.triggered_by or {}
    customer = (task.raw or {}).get("customer") or {}
    to_id = by.get("customer_id") or customer.get("id") or task.customer_id
    acc_id = task.acc_id or by.get("acc_id") or settings.qingjian_default_acc_id
    if not to_id:
        raise Unrecoverable("no customer to send to: the event named none and the task has no customer.id")
    if not acc_id:
        raise Unrecoverable("no shop account to send from: set acc_id or QINGJIAN_DEFAULT_ACC_ID")
    return acc_id, to_id


def _send_all(task: Task, owner: str, target: tuple[str, str], sends: Sends) -> dict:
    rt = runtime.current()
    channel = SendChannel(rt.redis, rt.keys)
    timeout = rt.settings.qingjian_send_timeout
    for index, step in enumerate(plan.plan_steps(task.action)):
        if sends.done(index):
            continue
        _keep_lease(task.task_id, owner, sends)
        req, outcome = _send_step(channel, task, sends, index, step, target, timeout)
        sends.note(index, req, outcome)
        if outcome is None:
            raise StepFailed(f"step {index}: no send_result from 轻简 within {timeout:g}s ({req})")
        if not outcome.get("ok"):
            raise StepFailed(f"step {index}: 轻简 refused the send: {outcome.get('error') or 'unknown error'}")
    steps = sorted(sends.progress.items(), key=lambda item: int(item[0]))
    return {"sent": [record["req_id"] for _, record in steps], "to_id": target[1], "acc_id": target[0]}


def _send_step(channel, task, sends, index, step, target, timeout) -> tuple[str, dict | None]:
    """Send one step under this attempt's req_id, unless an earlier send of it settles the matter."""
    earlier = (sends.progress.get(str(index)) or {}).get("req_id")
    acc_id, to_id = target
    frame = send_frame(step, acc_id=acc_id, to_id=to_id, req_id=plan.req_id(task.task_id, index, task.retry_count))
    return channel.send_step(earlier, frame, timeout)


def _keep_lease(task_id: str, owner: str, sends: Sends) -> None:
    """Renew the lease when a third of it is gone, so a long multi-step action is not re-driven."""
    rt = runtime.current()
    if time.monotonic() - sends.lease_renewed < rt.settings.action_lease_seconds / 3:
        return
    with session_scope() as session:
        if not task_states.update_running(
                session, task_id, where=_lease_held(owner),
                lease_expires_at=utcnow() + timedelta(seconds=rt.settings.action_lease_seconds)):
            raise LeaseLost(task_id)
    sends.lease_renewed = time.monotonic()


class LeaseLost(Exception):
    """Another worker took the task over (this one was presumed dead); stop without a trace."""


def _finish(task: Task, owner: str, sends: Sends | None = None, *, result: dict | None = None,
            failed_with: str | None = None) -> Outcome:
    target = states.FAILED if failed_with else states.COMPLETED
    with session_scope() as session:
        if sends is not None:
            sends.write(session, task.task_id)
        moved = task_states.move(
            session, task.task_id, target, result=result, error=failed_with, where=_lease_held(owner),
            values={"progress": sends.progress} if sends is not None else None,
        )
        if not moved.won:  # the lease was lost: leave no history of this run
            session.rollback()
    received_at = (task.triggered_by or {}).get("received_at")
    if moved.won and target == states.COMPLETED and received_at:
        stats.observe_latency(time.time() - float(received_at))
    return Outcome(done=True, status=target if moved.won else moved.previous)


def _after_failure(task: Task, owner: str, sends: Sends, error: str) -> Outcome:
    """Retry while retries and time remain; past the deadline the task times out, else it fails."""
    rt = runtime.current()
    now = utcnow()
    with session_scope() as session:
        sends.write(session, task.task_id)
        task_states.record(session, task.task_id, "attempt_failed",
                           {"attempt": task.retry_count, "error": error}, now=now)
        if now >= task.expires_at:
            moved = task_states.move(session, task.task_id, states.TIMEOUT,
                                     error=f"deadline passed; last error: {error}",
                                     where=_lease_held(owner), values={"progress": sends.progress}, now=now)
            return Outcome(done=True, status=states.TIMEOUT if moved.won else moved.previous)
        if task.retry_count >= task.max_retry:
            moved = task_states.move(session, task.task_id, states.FAILED, error=error,
                                     where=_lease_held(owner), values={"progress": sends.progress}, now=now)
            return Outcome(done=True, status=states.FAILED if moved.won else moved.previous)
        delay = backoff.exponential(task.retry_count, random.random(), first=RETRY_FIRST_SECONDS, cap=RETRY_MAX_SECONDS)
        # Hand the lease back, but keep it from lapsing before the retry is due, so beat does not
        # re-drive a task whose retry is merely waiting.
        kept = task_states.update_running(
            session, task.task_id, where=_lease_held(owner), retry_count=task.retry_count + 1,
            error_message=error, lease_owner=None, progress=sends.progress,
            lease_expires_at=now + timedelta(seconds=delay + rt.settings.action_lease_seconds),
        )
        if not kept:  # the lease was lost: leave no history of this run
            session.rollback()
    if not kept:
        return Outcome(done=True)
    log.info("task %s: attempt %d failed (%s); retry in %.1fs", task.task_id, task.retry_count, error, delay,
             extra={"task_id": task.task_id, "event": "retry"})
    return Outcome(done=False, retry_in=delay)
