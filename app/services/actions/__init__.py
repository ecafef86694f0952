"""Running fired tasks' actions without ever blocking a worker (DESIGN.md rules 1, 8, 10).

An action is a list of steps (app.domain.actions.plan_steps), each one send through 轻简 under the req_id
`<task>:<step>:<attempt>`. A step is handed to the listener (SendChannel, with `notify`) and the worker
moves on; when 轻简 answers, or the send fails, the listener hands that to `advance`, which sends the next
step or finishes the task. Which steps 轻简 acknowledged is the task's `progress` in SQL.

Every write to a running task is a compare-and-set on its lease token (`lease_owner`): of two runs that
race (a late answer and beat's re-drive, two deliveries of one message) one wins and the other drops its
work. A failed attempt is retried after a backoff while retries and time remain; the retry is due when
the lease expires (`lease_owner` is RETRY_OWNER then) and beat's sweep re-drives it through `resume`, so
no Celery countdown holds a message. Beat also re-drives an action whose lease lapsed for any other reason
(its worker died, the listener died with its answer): `resume` looks at what became of the step in flight
— its answer if one came; otherwise it abandons the send (it then never leaves) and counts the attempt
as failed. Sends to one customer go out one action at a time, in order (app.lanes).
"""
from __future__ import annotations

import logging
import random
import time
import uuid
from collections import defaultdict
from datetime import timedelta

from sqlalchemy import select

from app import runtime, stats
from app.clients.qingjian import SendChannel, send_frame
from app.domain import actions as plan
from app.domain import backoff, states
from app.infra.db import session_scope
from app.infra.timeutil import utcnow
from app.lanes import Lanes
from app.models import Task
from app.services import dispatch
from app.services.actions.batch import Batch, Unrecoverable, recipient

log = logging.getLogger(__name__)
RETRY_OWNER = "retry"  # lease_owner of a task whose next attempt is due when its lease expires
LISTENER_GRACE_SECONDS = 5.0  # the listener reports a send unanswered this long after its timeout


def start(task_ids: list[str], owned: dict[str, str] | None = None) -> None:
    """Begin, or go on with, the actions of tasks that have reached the head of their lane.

    `owned`: tasks this caller claimed a moment ago, with the lease token it wrote (no second write is
    needed to send their first step)."""
    owned = owned or {}
    batch = Batch(utcnow(), lease())
    for task in _load(task_ids):
        if task.status != states.RUNNING:
            batch.leave_lane(task)  # finished or moved by someone else meanwhile
            continue
        token = owned.get(task.task_id, task.lease_owner)
        if not _has_recipient(batch, task, token):
            continue
        if task.action.get("type") == "transfer_to_designer":
            batch.hand_over(task, token)
            continue
        step = plan.first_unacknowledged(task.progress, len(plan.plan_steps(task.action)))
        if step >= len(plan.plan_steps(task.action)):
            batch.finish(task, token, states.COMPLETED)
        else:
            batch.send(task, token, step, fresh=task.task_id in owned and step == 0)
    _carry_out(batch)


def queue(task_ids: list[str], owned: dict[str, str] | None = None) -> None:
    """Running tasks fired without a message's place in a lane (a timer, a custom event, a catch-up, a
    message matched again) queue at the tail of their customer's lane; whoever reaches a head starts."""
    owned = owned or {}
    batch = Batch(utcnow(), lease())
    for task in _load(task_ids):
        if task.status == states.RUNNING and _has_recipient(batch, task, owned.get(task.task_id, task.lease_owner)):
            batch.rejoin(task)
    _carry_out(batch, owned)


def advance(answers: list[tuple[str, bool, str | None]]) -> None:
    """轻简's answers to action sends (or the listener's word that a send failed), as the listener hands
    them over: acknowledged steps move on, refused ones fail their attempt."""
    by_task: dict[str, list] = defaultdict(list)
    for req_id, ok, error in answers:
        parsed = plan.parse_req_id(req_id)
        if parsed:
            by_task[parsed[0]].append((req_id, parsed[1], parsed[2], ok, error))
    batch = Batch(utcnow(), lease())
    for task in _load(list(by_task)):
        if task.status != states.RUNNING:
            continue
        for req_id, step, attempt, ok, error in by_task[task.task_id]:
            _apply_answer(batch, task, task.lease_owner, req_id, step, attempt, ok, error)
    _carry_out(batch)


def resume(task_ids: list[str]) -> None:
    """Beat's re-drive of running tasks whose lease expired: a retry that is due, or an action whose
    worker or answer was lost. Also where an operator's retry starts."""
    rt = runtime.current()
    channel = SendChannel(rt.redis, rt.keys)
    batch = Batch(utcnow(), lease())
    tasks = [t for t in _load(task_ids) if t.status == states.RUNNING]
    for task in tasks:
        if not _has_recipient(batch, task, task.lease_owner):
            continue
        if task.lease_owner == RETRY_OWNER or task.action.get("type") == "transfer_to_designer":
            batch.rejoin(task)  # queue for the customer's lane; started when it is the head
            continue
        steps = len(plan.plan_steps(task.action))
        step = plan.first_unacknowledged(task.progress, steps)
        req_id = plan.req_id(task.task_id, step, task.retry_count)
        answer = channel.result(req_id) if step < steps else None
        if step >= steps:
            batch.finish(task, task.lease_owner, states.COMPLETED)
        elif answer is not None:  # answered, but the answer never reached us
            _apply_answer(batch, task, task.lease_owner, req_id, step, task.retry_count, answer["ok"],
                          answer.get("error"))
        elif rt.redis.exists(rt.keys.send_queued(req_id)):
            left = not channel.abandon(req_id)  # from now on it never leaves, unless it already did
            _apply_answer(batch, task, task.lease_owner, req_id, step, task.retry_count, False,
                          "no send_result from 轻简 (sent, never answered)" if left else
                          "not sent: 轻简 was unreachable until the send was given up")
        else:  # never handed to the listener (its starter died, or it waited in a lane that was lost)
            batch.rejoin(task)
    _carry_out(batch)


def _has_recipient(batch: Batch, task: Task, token) -> bool:
    """Whether the task has somebody to send to; if not, it fails (no retry can cure that)."""
    try:
        batch.lane_of(task)
        return True
    except Unrecoverable as exc:
        batch.finish(task, token, states.FAILED, error=str(exc))
        return False


def _apply_answer(batch: Batch, task: Task, token, req_id: str, step: int, attempt: int, ok: bool,
                  error: str | None) -> None:
    steps = len(plan.plan_steps(task.action))
    move, following = plan.after_answer(steps=steps, progress=batch.progress_of(task), attempt=task.retry_count,
                                        answer_step=step, answer_attempt=attempt, ok=ok)
    if move == plan.IGNORE:
        return
    batch.note_send(task, step, req_id, ok, error)
    if move == plan.SEND:
        batch.send(task, token, following)
    elif move == plan.COMPLETE:
        batch.finish(task, token, states.COMPLETED)
    else:
        _after_failure(batch, task, token, error or "轻简 refused the send")


def _after_failure(batch: Batch, task: Task, token, error: str) -> None:
    batch.note_failed_attempt(task, error)
    verdict = plan.after_failure(retry_count=task.retry_count - (task.attempt_base or 0), max_retry=task.max_retry,
                                 past_deadline=batch.now >= task.expires_at)
    if verdict == plan.TIMEOUT:
        batch.finish(task, token, states.TIMEOUT, error=f"deadline passed; last error: {error}")
    elif verdict == plan.FAIL:
        batch.finish(task, token, states.FAILED, error=error)
    else:
        delay = backoff.exponential(task.retry_count - (task.attempt_base or 0), random.random(), first=2.0, cap=60.0)
        batch.retry_later(task, token, delay, error, owner=RETRY_OWNER)
        log.info("task %s: attempt %d failed (%s); retry in %.1fs", task.task_id, task.retry_count, error, delay,
                 extra={"task_id": task.task_id, "event": "retry"})


def _carry_out(batch: Batch, owned: dict[str, str] | None = None) -> None:
    """Write the batch (one transaction; each task's write a CAS on its lease), then do in Redis what the
    winners need: their next sends, their lanes moving on; and start whoever took a lane's head."""
    rt = runtime.current()
    won = batch.commit()
    frames = [send_frame(step, acc_id=acc, to_id=to, req_id=req) for step, acc, to, req in won.sends]
    if frames:
        SendChannel(rt.redis, rt.keys).submit_many(frames, rt.settings.qingjian_send_timeout)
    for task, token, acc_id, to_id in won.hand_overs:
        if dispatch.start_for_task(task, token, acc_id=acc_id, customer_id=to_id) is None:
            log.warning("task %s: lease lost to another worker; stopping", task.task_id,
                        extra={"task_id": task.task_id, "event": "skip"})
    stats.observe_latencies([time.time() - received_at for received_at in won.completed_latencies])
    lanes = Lanes(rt.redis, rt.keys)
    heads = lanes.done(won.left_lanes) + lanes.join(won.joined_lanes)
    if heads:
        start(heads, owned)


def lease() -> timedelta:
    """How long beat leaves a running action alone: a step's send may take QINGJIAN_SEND_TIMEOUT, and the
    listener reports an unanswered send LISTENER_GRACE_SECONDS later."""
    settings = runtime.current().settings
    return timedelta(seconds=max(settings.action_lease_seconds,
                                 settings.qingjian_send_timeout + LISTENER_GRACE_SECONDS + 1))


def _load(task_ids) -> list[Task]:
    if not task_ids:
        return []
    with session_scope() as session:
        found = {t.task_id: t for t in session.scalars(select(Task).where(Task.task_id.in_(list(task_ids))))}
    return [found[i] for i in dict.fromkeys(task_ids) if i in found]


def new_token() -> str:
    return uuid.uuid4().hex


__all__ = ["start", "queue", "advance", "resume", "lease", "recipient", "Unrecoverable", "RETRY_OWNER", "new_token"]
