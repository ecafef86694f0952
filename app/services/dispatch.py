"""Handing a customer over to a human designer through 图绘 (CONTRACTS.md §3, seed 002).

A dispatch comes from `POST /api/dispatch/transfer` or from a task's `transfer_to_designer` action.
One Celery task, `dispatch.advance(dispatch_id, token)`, runs the steps not yet finished, in order:
find a designer, create the 图绘 task, assign it, notify the designers' WeCom group, reply to the
customer. Each step is a `dispatch_steps` row (pending, done or failed), so a retry or a re-drive
skips what is finished. Retryable failures (图绘 or WeCom unavailable, WeCom's rate limit, 轻简 not
acknowledging) are recorded on the step and raised again, and the Celery task retries with backoff and
jitter; past the step's limit a find/create/assign failure fails the dispatch, a notify/reply failure
is given up and the dispatch stays assigned.

Who drives a dispatch: whoever enqueues `dispatch.advance` first writes a fresh `token` into
`lease_owner` and hands it to the message, which alone may then work on the dispatch (Celery retries
carry the same token). `next_attempt_at` is when beat's `dispatch.sweep` should step in: the lapse of
that lease (renewed at every step), or the next check for an online designer. The sweep re-drives a
due dispatch under a new token, so a message that was lost, or a worker that died, costs a delay,
never a second 图绘 task: a create that may have gone through is looked for in `/dispatch/queue`
before creating again.
"""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Callable

import requests
from sqlalchemy import func, select, update

from app import queueing, runtime
from app.state import tasks as task_states
from app.state import dispatches as dispatch_states
from app.clients import tuhui, wecom
from app.clients.qingjian import SendChannel, send_frame
from app.infra.db import session_scope
from app.domain import dispatch as flow
from app.models import Dispatch, DispatchStep, Task
from app.infra.timeutil import utcnow

log = logging.getLogger(__name__)

HANDOFF = timedelta(seconds=60)  # an enqueued advance nobody picked up by then is re-driven
RUN_LEASE = timedelta(seconds=60)  # renewed at every step; longer than any one outside call
RETRY_LEASE = timedelta(seconds=120)  # covers a Celery retry's countdown (<= 30 s) and its run
TASK_LEASE_MARGIN = timedelta(minutes=30)
# How many failed attempts in a row a step gets before it is given up.
STEP_LIMITS = {flow.FIND_DESIGNER: 4, flow.CREATE: 4, flow.ASSIGN: 4, flow.NOTIFY: 6, flow.REPLY: 3}
_http = requests.Session()


class SendFailed(Exception):
    """轻简 did not acknowledge a message to the customer (no send_result, or ok=false): retryable."""


class NoRecipient(Exception):
    """No shop account to send from: no retry can cure it."""


class LeaseLost(Exception):
    """Another message took the dispatch over (this one was presumed lost)."""


class _Stop(Exception):
    """This run has nothing more to do; `status` is where the dispatch stands."""

    def __init__(self, status: str):
        super().__init__(status)
        self.status = status


class _NotYet(Exception):
    """The step ran fine but is not finished (nobody online): it stays pending, no failure counted."""

    def __init__(self, result: dict):
        super().__init__("not yet")
        self.result = result


RETRYABLE = (tuhui.TuhuiUnavailable, wecom.WecomUnavailable, wecom.RateLimited, SendFailed)
FINAL = (tuhui.TuhuiError, wecom.WecomError, NoRecipient)


def _token() -> str:
    return uuid.uuid4().hex


# -- entry points ---------------------------------------------------------------------------

def start(customer_id: str, *, acc_id: str | None = None, acc_type: str | None = None,
          image_url: str | None = None, reason: str | None = None) -> str:
    """A new dispatch (POST /api/dispatch/transfer), handed to a worker; returns its id."""
    dispatch_id, token, now = str(uuid.uuid4()), _token(), utcnow()
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
    dispatch_id, token = existing or str(uuid.uuid4()), _token()
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
                    notified_offline=False, created_at=now, updated_at=now, next_attempt_at=now + HANDOFF,
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
        token = _token()
        with session_scope() as session:
            ours = session.execute(
                update(Dispatch).where(Dispatch.dispatch_id == dispatch_id, Dispatch.next_attempt_at == seen)
                .values(lease_owner=token, next_attempt_at=now + HANDOFF)
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
    current = _claim(dispatch_id, token)
    if current is None:
        log.info("dispatch %s: finished or driven by another message; nothing to do", dispatch_id,
                 extra={"event": "dispatch_skip"})
        return "skipped"
    try:
        return _drive(current, token)
    except _Stop as stop:
        return stop.status
    except LeaseLost:
        log.warning("dispatch %s: taken over by another message; stopping", dispatch_id,
                    extra={"task_id": current.task_id, "event": "dispatch_lease_lost"})
        return "lease_lost"


def _drive(d: Dispatch, token: str) -> str:
    settings = runtime.current().settings
    if d.status == flow.FAILED:  # failed for want of a designer; the group's alert is still owed
        _notify(d, token, alert=True)
        return _release(d, token, flow.FAILED)
    if d.status != flow.ASSIGNED:
        if not settings.tuhui_base_url:
            _fail(d, token, "TUHUI_BASE_URL is not set: no 图绘 dispatch system to hand the customer to")
        client = tuhui.TuhuiClient(settings.tuhui_base_url, settings.tuhui_api_key, settings.tuhui_timeout, _http)
        if d.status in (flow.PENDING, flow.WAITING_DESIGNER):
            designer = _find_designer(d, token, client)
            if designer is None:
                return _wait_for_designer(d, token)
            d = _move(d, token, flow.CREATING, {"designer": designer})
        created = _run_step(d, token, flow.CREATE, lambda attempt: _create(client, d, attempt),
                            done_values=lambda out: {"tuhui_task_id": out["tuhui_task_id"]})
        _run_step(d, token, flow.ASSIGN, lambda attempt: _assign(client, d, created["tuhui_task_id"]))
        d = _move(d, token, flow.ASSIGNED, {"tuhui_task_id": created["tuhui_task_id"]})
    _notify(d, token)
    _reply(d, token)
    return _release(d, token, flow.ASSIGNED)


def _find_designer(d: Dispatch, token: str, client: tuhui.TuhuiClient) -> str | None:
    hours = runtime.current().settings.dispatch_sticky_hours

    def find(attempt: "_Attempt") -> dict:
        online = client.online_designers()
        if not online:
            raise _NotYet({"online": []})
        sticky = _recent_designer(d.customer_id, d.dispatch_id, hours)
        suggestion = _suggestion(client, d) if sticky not in online else None
        choice = flow.choose_designer(online, sticky=sticky, suggestion=suggestion,
                                      open_counts=_open_counts(online, hours))
        log.info("dispatch %s: designer %s (%s) of %s", d.dispatch_id, choice.designer, choice.why, online,
                 extra={"task_id": d.task_id, "event": "dispatch_designer"})
        return {"online": online, "designer": choice.designer, "why": choice.why}

    found = _run_step(d, token, flow.FIND_DESIGNER, find)
    return found["designer"] if found else None


def _recent_designer(customer_id: str, dispatch_id: str, hours: float) -> str | None:
    """The designer of this customer's last assigned dispatch within DISPATCH_STICKY_HOURS."""
    since = utcnow() - timedelta(hours=hours)
    with session_scope() as session:
        return session.scalar(
            select(Dispatch.designer).where(
                Dispatch.customer_id == customer_id, Dispatch.status == flow.ASSIGNED,
                Dispatch.completed_at >= since, Dispatch.dispatch_id != dispatch_id)
            .order_by(Dispatch.completed_at.desc()).limit(1))


def _open_counts(online: list[str], hours: float) -> dict[str, int]:
    """Our dispatches per designer still open: being created, or assigned within the sticky window."""
    since = utcnow() - timedelta(hours=hours)
    with session_scope() as session:
        rows = session.execute(
            select(Dispatch.designer, func.count()).where(
                Dispatch.designer.in_(online), Dispatch.status.in_((flow.CREATING, flow.ASSIGNED)),
                Dispatch.created_at >= since)
            .group_by(Dispatch.designer)).all()
    return {name: count for name, count in rows}


def _suggestion(client: tuhui.TuhuiClient, d: Dispatch) -> str | None:
    """The queue's suggestion; only a hint, so a failing queue call does not hold the dispatch up."""
    try:
        suggestion = client.queue().get("suggestion")
    except tuhui.TuhuiError as exc:
        log.info("dispatch %s: no suggestion from 图绘 (%s)", d.dispatch_id, exc, extra={"task_id": d.task_id})
        return None
    return suggestion.strip() if isinstance(suggestion, str) and suggestion.strip() else None


def _wait_for_designer(d: Dispatch, token: str) -> str:
    """Nobody online: tell the customer (once), check again later, give up after the maximum wait."""
    settings = runtime.current().settings
    now = utcnow()
    max_wait = timedelta(minutes=settings.dispatch_max_wait_minutes)
    if now - d.created_at >= max_wait:
        _fail(d, token, f"no designer came online within {settings.dispatch_max_wait_minutes:g} minutes",
              alert=True)
    notified = d.notified_offline or _tell_offline(d, token)
    next_at = min(now + timedelta(seconds=settings.dispatch_wait_retry_seconds), d.created_at + max_wait)
    values = {"next_attempt_at": next_at, "lease_owner": None, "notified_offline": notified}
    with session_scope() as session:
        if d.status == flow.PENDING:
            ours = dispatch_states.move(session, d.dispatch_id, flow.WAITING_DESIGNER, values=values,
                                       where=(Dispatch.lease_owner == token,), now=now).won
        else:
            ours = session.execute(
                update(Dispatch).where(Dispatch.dispatch_id == d.dispatch_id, Dispatch.lease_owner == token,
                                       Dispatch.status == flow.WAITING_DESIGNER)
                .values(updated_at=now, **values).execution_options(synchronize_session=False)).rowcount == 1
        if not ours:
            raise LeaseLost(d.dispatch_id)
    log.info("dispatch %s: no designer online; checking again in %.0fs", d.dispatch_id,
             (next_at - now).total_seconds(), extra={"task_id": d.task_id, "event": "dispatch_wait"})
    return flow.WAITING_DESIGNER


def _tell_offline(d: Dispatch, token: str) -> bool:
    """`设计师暂时不在线…` to the customer; a failure is logged and tried again at the next check."""
    settings = runtime.current().settings
    step = _load_step(d.dispatch_id, flow.FIND_DESIGNER)
    result = dict(step.result or {}) if step else {}
    attempts = step.attempts if step else 0

    def save() -> None:
        _save_step(d, token, flow.FIND_DESIGNER, flow.STEP_PENDING, attempts, step.last_error if step else None,
                   result)

    try:
        _say(d, "offline", int(result.get("offline_sends", 0)), settings.dispatch_offline_text, result, save,
             prefix="offline_")
    except (SendFailed, NoRecipient) as exc:
        log.warning("dispatch %s: could not tell the customer no designer is online: %s", d.dispatch_id, exc,
                    extra={"task_id": d.task_id, "event": "dispatch_offline_notice"})
        return False
    return True


def _create(client: tuhui.TuhuiClient, d: Dispatch, attempt: "_Attempt") -> dict:
    if attempt.number > 0:
        # An earlier attempt may have created the task and lost the answer: look before creating again.
        found = tuhui.find_task(client.queue(), d.dispatch_id)
        if found:
            log.info("dispatch %s: 图绘 task %s found in the queue; not creating another", d.dispatch_id, found,
                     extra={"task_id": d.task_id, "event": "dispatch_found"})
            return {"tuhui_task_id": found, "found_in_queue": True}
    created = client.create_task(flow.task_name(d.customer_id),
                                 flow.description(d.dispatch_id, d.customer_id, d.reason, d.image_url),
                                 flow.TASK_TYPE, flow.TASK_PRIORITY)
    log.info("dispatch %s: 图绘 task %s created", d.dispatch_id, created,
             extra={"task_id": d.task_id, "event": "dispatch_created"})
    return {"tuhui_task_id": created}


def _assign(client: tuhui.TuhuiClient, d: Dispatch, tuhui_task_id: str) -> dict:
    try:
        client.assign(tuhui_task_id, d.designer, flow.assign_notes(d.customer_id, d.reason))
    except tuhui.TuhuiNotFound:
        raise tuhui.TuhuiNotFound(f"图绘 has no task {tuhui_task_id} to assign (HTTP 404)") from None
    return {"designer": d.designer}


def _notify(d: Dispatch, token: str, *, alert: bool = False) -> None:
    """The designers' group hears of the new task (or, after the maximum wait, of the failure)."""
    settings = runtime.current().settings
    if not settings.wecom_webhook_url:
        step = _load_step(d.dispatch_id, flow.NOTIFY)
        if step is None or step.status == flow.STEP_PENDING:
            _save_step(d, token, flow.NOTIFY, flow.STEP_DONE, 0, None, {"skipped": "WECOM_WEBHOOK_URL is not set"})
            log.info("dispatch %s: WECOM_WEBHOOK_URL is not set; no group notice", d.dispatch_id,
                     extra={"task_id": d.task_id, "event": "dispatch_notify"})
        return
    if alert:
        content = flow.alert_markdown(d.dispatch_id, d.customer_id, d.reason, settings.dispatch_max_wait_minutes)
    else:
        content = flow.notice_markdown(d.designer, d.tuhui_task_id, d.customer_id, d.reason, d.image_url)

    def post(attempt: "_Attempt") -> dict:
        wecom.post_markdown(_http, settings.wecom_webhook_url, content)
        return {"kind": "alert" if alert else "notice"}

    _run_step(d, token, flow.NOTIFY, post, fatal=False)


def _reply(d: Dispatch, token: str) -> None:
    text = runtime.current().settings.dispatch_reply_text

    def reply(attempt: "_Attempt") -> dict:
        return _say(d, flow.REPLY, attempt.number, text, attempt.result, attempt.save)

    _run_step(d, token, flow.REPLY, reply, fatal=False)


def _say(d: Dispatch, key: str, number: int, text: str, result: dict, save: Callable[[], None],
         prefix: str = "") -> dict:
    """Send `text` to the customer through 轻简 as req `dispatch:<id>:<key>:<number>`.

    An earlier attempt whose send_result came late (or is still due) counts: no second message then.
    """
    rt = runtime.current()
    acc_id = d.acc_id or rt.settings.qingjian_default_acc_id
    if not acc_id:
        raise NoRecipient("no shop account to send from: give acc_id or set QINGJIAN_DEFAULT_ACC_ID")
    req = flow.req_id(d.dispatch_id, key, number)
    earlier = result.get(f"{prefix}req_id")
    result.update({f"{prefix}req_id": req, f"{prefix}sends": number + 1})
    save()  # before the send: a retry must know which req_id may still be answered
    frame = send_frame({"kind": "text", "content": text}, acc_id=acc_id, to_id=d.customer_id, req_id=req)
    settled, answer = SendChannel(rt.redis, rt.keys).send_step(earlier, frame, rt.settings.qingjian_send_timeout)
    result[f"{prefix}req_id"] = settled
    if answer is None:
        raise SendFailed(f"no send_result from 轻简 within {rt.settings.qingjian_send_timeout:g}s ({req})")
    if not answer.get("ok"):
        raise SendFailed(f"轻简 refused the message: {answer.get('error') or 'unknown error'} ({req})")
    log.info("dispatch %s: customer %s told (%s)", d.dispatch_id, d.customer_id, settled,
             extra={"task_id": d.task_id, "event": "dispatch_said"})
    return {f"{prefix}req_id": settled}


# -- steps, leases and moves ----------------------------------------------------------------

@dataclass
class _Attempt:
    number: int  # 0 for the first attempt of the step
    result: dict = field(default_factory=dict)  # the step's stored result, updated in place
    save: Callable[[], None] = lambda: None  # persist `result` now (before a send, say)


def _run_step(d: Dispatch, token: str, name: str, call: Callable[[_Attempt], dict], *, fatal: bool = True,
              done_values: Callable[[dict], dict] | None = None) -> dict | None:
    """Run step `name` unless it is finished; the step's result, or None (not finished, or given up)."""
    step = _load_step(d.dispatch_id, name)
    if step is not None and step.status == flow.STEP_DONE:
        return dict(step.result or {})
    if step is not None and step.status == flow.STEP_FAILED:
        return None
    number = step.attempts if step else 0
    attempts, last_error = number + 1, step.last_error if step else None
    result = dict(step.result or {}) if step else {}
    failures = int(result.get("failures", 0))

    def save() -> None:
        _save_step(d, token, name, flow.STEP_PENDING, attempts, last_error, result)

    save()
    try:
        out = call(_Attempt(number, result, save))
    except _NotYet as wait:
        result.update(wait.result, failures=0)
        _save_step(d, token, name, flow.STEP_PENDING, attempts, last_error, result)
        return None
    except RETRYABLE as exc:
        failures += 1
        result["failures"] = failures
        if failures < STEP_LIMITS[name]:
            _save_step(d, token, name, flow.STEP_PENDING, attempts, str(exc), result, lease=RETRY_LEASE)
            log.info("dispatch %s: %s attempt %d failed (%s); retrying", d.dispatch_id, name, attempts, exc,
                     extra={"task_id": d.task_id, "event": "dispatch_retry"})
            raise
        return _give_up(d, token, name, attempts, f"{name} failed after {failures} attempts: {exc}", result, fatal)
    except FINAL as exc:
        return _give_up(d, token, name, attempts, f"{name} failed: {exc}", result, fatal)
    result.update(out)
    _save_step(d, token, name, flow.STEP_DONE, attempts, last_error, result,
               dispatch_values=done_values(out) if done_values else None)
    return result


def _give_up(d: Dispatch, token: str, name: str, attempts: int, error: str, result: dict, fatal: bool) -> None:
    if fatal:
        _fail(d, token, error, step=(name, attempts, result))
    _save_step(d, token, name, flow.STEP_FAILED, attempts, error, result)
    log.warning("dispatch %s: %s given up: %s", d.dispatch_id, name, error,
                extra={"task_id": d.task_id, "event": "dispatch_step_failed"})
    return None


def _claim(dispatch_id: str, token: str) -> Dispatch | None:
    now = utcnow()
    with session_scope() as session:
        ours = session.execute(
            update(Dispatch).where(Dispatch.dispatch_id == dispatch_id, Dispatch.lease_owner == token,
                                   Dispatch.next_attempt_at.is_not(None))
            .values(next_attempt_at=now + RUN_LEASE, updated_at=now)
            .execution_options(synchronize_session=False)).rowcount == 1
        return session.get(Dispatch, dispatch_id) if ours else None


def _load_step(dispatch_id: str, name: str) -> DispatchStep | None:
    with session_scope() as session:
        return session.scalar(select(DispatchStep).where(DispatchStep.dispatch_id == dispatch_id,
                                                         DispatchStep.step == name))


def _save_step(d: Dispatch, token: str, name: str, status: str, attempts: int, last_error: str | None,
               result: dict, *, lease: timedelta = RUN_LEASE, dispatch_values: dict | None = None) -> None:
    """Write a step's row and renew our lease on the dispatch, or raise LeaseLost."""
    now = utcnow()
    with session_scope() as session:
        _renew(session, d.dispatch_id, token, now + lease, dispatch_values)
        _write_step(session, d.dispatch_id, name, status, attempts, last_error, result, now)


def _renew(session, dispatch_id: str, token: str, until, values: dict | None = None) -> None:
    ours = session.execute(
        update(Dispatch).where(Dispatch.dispatch_id == dispatch_id, Dispatch.lease_owner == token)
        .values(next_attempt_at=until, updated_at=utcnow(), **(values or {}))
        .execution_options(synchronize_session=False)).rowcount == 1
    if not ours:
        raise LeaseLost(dispatch_id)


def _write_step(session, dispatch_id: str, name: str, status: str, attempts: int, last_error: str | None,
                result: dict, now) -> None:
    values = {"status": status, "attempts": attempts, "last_error": last_error, "result": dict(result),
              "updated_at": now}
    hit = session.execute(
        update(DispatchStep).where(DispatchStep.dispatch_id == dispatch_id, DispatchStep.step == name)
        .values(**values).execution_options(synchronize_session=False)).rowcount
    if not hit:
        session.add(DispatchStep(dispatch_id=dispatch_id, step=name, **values))


def _move(d: Dispatch, token: str, target: str, values: dict) -> Dispatch:
    now = utcnow()
    with session_scope() as session:
        moved = dispatch_states.move(session, d.dispatch_id, target, where=(Dispatch.lease_owner == token,),
                                    values={**values, "next_attempt_at": now + RUN_LEASE}, now=now)
        if not moved.won:
            raise LeaseLost(d.dispatch_id)
        return session.get(Dispatch, d.dispatch_id)


def _fail(d: Dispatch, token: str, error: str, *, step: tuple | None = None, alert: bool = False) -> None:
    """failed, with a clear error (the task fails with it); after the maximum wait the group is alerted."""
    now = utcnow()
    keep = {"next_attempt_at": now + RUN_LEASE, "lease_owner": token} if alert else \
        {"next_attempt_at": None, "lease_owner": None}
    with session_scope() as session:
        if step is not None:
            name, attempts, result = step
            _write_step(session, d.dispatch_id, name, flow.STEP_FAILED, attempts, error, result, now)
        moved = dispatch_states.move(session, d.dispatch_id, flow.FAILED, error=error, values=keep,
                                    where=(Dispatch.lease_owner == token,), now=now)
        if not moved.won:
            raise LeaseLost(d.dispatch_id)
        failed = session.get(Dispatch, d.dispatch_id)
    log.warning("dispatch %s failed: %s", d.dispatch_id, error,
                extra={"task_id": d.task_id, "event": "dispatch_failed"})
    if alert:
        _notify(failed, token, alert=True)
        _release(failed, token, flow.FAILED)
    raise _Stop(flow.FAILED)


def _release(d: Dispatch, token: str, status: str) -> str:
    """Nothing left to do: the sweep leaves the dispatch alone from now on."""
    with session_scope() as session:
        session.execute(update(Dispatch).where(Dispatch.dispatch_id == d.dispatch_id, Dispatch.lease_owner == token)
                        .values(next_attempt_at=None, lease_owner=None, updated_at=utcnow())
                        .execution_options(synchronize_session=False))
    return status
