"""A dispatch's life: started (by the API or a task's action), advanced by the message holding its lease,
re-driven by beat's sweep when a lease lapses or a designer check is due."""
from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from sqlalchemy import select, update

from app import queueing, runtime
from app.domain import dispatch as flow
from app.infra.db import session_scope
from app.infra.timeutil import utcnow
from app.models import Dispatch, DispatchStep, Task
from app.services.dispatch import ledger, steps
from app.state import tasks as task_states

log = logging.getLogger(__name__)

TASK_LEASE_MARGIN = timedelta(minutes=30)


def start(customer_id: str, *, acc_id: str | None = None, acc_type: str | None = None,
          image_url: str | None = None, reason: str | None = None) -> str:
    """A new dispatch (POST /api/dispatch/transfer), handed to a worker; returns its id."""
    dispatch_id, token, now = str(uuid.uuid4()), ledger.new_token(), utcnow()
    with session_scope() as session:
        session.add(_new(dispatch_id, token, now, None, customer_id, acc_id, acc_type, image_url, reason))
    log.info("dispatch %s started for customer %s", dispatch_id, customer_id, extra={"event": "dispatch"})
    _enqueue(dispatch_id, token)
    return dispatch_id


def start_for_task(task: Task, owner: str, *, acc_id: str, customer_id: str) -> str | None:
    """The `transfer_to_designer` action of a running task whose lease `owner` holds.

    Starts the task's dispatch (once: a re-driven action finds the one already started) and hands the
    task's lease to it for as long as the dispatch may wait, so beat does not re-drive the action; the
    dispatch completes or fails the task when it is assigned or fails. None if the lease was lost.
    """
    rt = runtime.current()
    now = utcnow()
    lease_until = now + timedelta(minutes=rt.settings.dispatch_max_wait_minutes) + TASK_LEASE_MARGIN
    existing = _dispatch_of_task(task.task_id)
    dispatch_id, token = existing or str(uuid.uuid4()), ledger.new_token()
    with session_scope() as session:
        kept = task_states.update_running(session, task.task_id, where=(Task.lease_owner == owner,),
                                            lease_owner=f"dispatch:{dispatch_id}", lease_expires_at=lease_until)
        if not kept:
            return None
        if existing is None:
            action = task.action or {}
            session.add(_new(dispatch_id, token, now, task.task_id, customer_id, acc_id, None,
                             action.get("image_url"), action.get("reason")))
            task_states.record(session, task.task_id, "dispatch", {"dispatch_id": dispatch_id}, now=now)
    if existing is None:
        log.info("task %s: dispatch %s started for customer %s", task.task_id, dispatch_id, customer_id,
                 extra={"task_id": task.task_id, "event": "dispatch"})
        _enqueue(dispatch_id, token)
    else:  # the dispatch drives itself (and beat re-drives it); this re-drive only renewed the lease
        log.info("task %s: dispatch %s already under way", task.task_id, dispatch_id,
                 extra={"task_id": task.task_id, "event": "dispatch"})
    return dispatch_id


def _new(dispatch_id, token, now, task_id, customer_id, acc_id, acc_type, image_url, reason) -> Dispatch:
    return Dispatch(dispatch_id=dispatch_id, task_id=task_id, customer_id=customer_id, acc_id=acc_id,
                    acc_type=acc_type, image_url=image_url, reason=reason, status=flow.PENDING,
                    notified_offline=False, created_at=now, updated_at=now, next_attempt_at=now + ledger.HANDOFF,
                    lease_owner=token)


def _dispatch_of_task(task_id: str) -> str | None:
    with session_scope() as session:
        return session.scalar(select(Dispatch.dispatch_id).where(Dispatch.task_id == task_id))


def _enqueue(dispatch_id: str, token: str) -> None:
    try:
        queueing.enqueue_dispatch(dispatch_id, token)
    except Exception:  # the row is safe: beat re-drives it when its hand-off lapses
        log.warning("could not enqueue dispatch %s; beat will re-drive it", dispatch_id, exc_info=True)


def get(dispatch_id: str) -> tuple[Dispatch, list[DispatchStep]] | None:
    with session_scope() as session:
        found = session.get(Dispatch, dispatch_id)
        if found is None:
            return None
        steps = session.scalars(select(DispatchStep).where(DispatchStep.dispatch_id == dispatch_id)).all()
        order = {name: i for i, name in enumerate(flow.STEPS)}
        return found, sorted(steps, key=lambda s: order.get(s.step, len(order)))


def sweep(limit: int = 200) -> int:
    """Re-drive every dispatch whose next attempt is due: a designer check, or a lapsed lease."""
    now = utcnow()
    with session_scope() as session:
        due = session.execute(
            select(Dispatch.dispatch_id, Dispatch.next_attempt_at, Dispatch.lease_owner, Dispatch.status)
            .where(Dispatch.next_attempt_at <= now).order_by(Dispatch.next_attempt_at).limit(limit)).all()
    count = 0
    for dispatch_id, seen, holder, status in due:
        token = ledger.new_token()
        with session_scope() as session:
            ours = session.execute(
                update(Dispatch).where(Dispatch.dispatch_id == dispatch_id, Dispatch.next_attempt_at == seen)
                .values(lease_owner=token, next_attempt_at=now + ledger.HANDOFF)
                .execution_options(synchronize_session=False)).rowcount == 1
        if not ours:
            continue
        if holder is not None:
            log.warning("dispatch %s (%s): its worker's lease lapsed; re-driving it", dispatch_id, status,
                        extra={"event": "dispatch_redrive"})
        _enqueue(dispatch_id, token)
        count += 1
    return count


# -- the workflow ---------------------------------------------------------------------------


def advance(dispatch_id: str, token: str) -> str:
    """Run the dispatch's unfinished steps in order; returns its status, or `skipped` if not ours."""
    current = ledger.claim(dispatch_id, token)
    if current is None:
        log.info("dispatch %s: finished or driven by another message; nothing to do", dispatch_id,
                 extra={"event": "dispatch_skip"})
        return "skipped"
    try:
        return _drive(current, token)
    except ledger.DispatchFailed as failed:
        if failed.alert:  # after the maximum wait: the designers' group hears of it, then we let go
            steps.notify(failed.dispatch, token, alert=True)
            ledger.release(failed.dispatch, token, flow.FAILED)
        return flow.FAILED
    except ledger.LeaseLost:
        log.warning("dispatch %s: taken over by another message; stopping", dispatch_id,
                    extra={"task_id": current.task_id, "event": "dispatch_lease_lost"})
        return "lease_lost"


def _drive(d: Dispatch, token: str) -> str:
    settings = runtime.current().settings
    if d.status == flow.FAILED:  # failed for want of a designer; the group's alert is still owed
        steps.notify(d, token, alert=True)
        return ledger.release(d, token, flow.FAILED)
    if d.status != flow.ASSIGNED:
        if not settings.tuhui_base_url:
            ledger.fail(d, token, "TUHUI_BASE_URL is not set: no 图绘 dispatch system to hand the customer to")
        client = steps.tuhui_client(settings)
        if d.status in (flow.PENDING, flow.WAITING_DESIGNER):
            designer = steps.find_designer(d, token, client)
            if designer is None:
                return steps.wait_for_designer(d, token)
            d = ledger.move(d, token, flow.CREATING, {"designer": designer})
        created = ledger.run_step(d, token, flow.CREATE, lambda attempt: steps.create(client, d, attempt),
                                  done_values=lambda out: {"tuhui_task_id": out["tuhui_task_id"]})
        ledger.run_step(d, token, flow.ASSIGN, lambda attempt: steps.assign(client, d, created["tuhui_task_id"]))
        d = ledger.move(d, token, flow.ASSIGNED, {"tuhui_task_id": created["tuhui_task_id"]})
    steps.notify(d, token)
    steps.reply(d, token)
    return ledger.release(d, token, flow.ASSIGNED)
