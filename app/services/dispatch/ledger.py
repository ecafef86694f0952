"""The step ledger and the lease of a dispatch: each step a `dispatch_steps` row, so a retry or a
re-drive skips what is finished, and every write renews the lease of the message driving it (or finds
it lost to another message and stops)."""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Callable, NoReturn

from sqlalchemy import select, update

from app.clients import tuhui, wecom
from app.domain import dispatch as flow
from app.infra.db import session_scope
from app.infra.timeutil import utcnow
from app.models import Dispatch, DispatchStep
from app.state import dispatches as dispatch_states

log = logging.getLogger(__name__)

HANDOFF = timedelta(seconds=60)  # an enqueued advance nobody picked up by then is re-driven
RUN_LEASE = timedelta(seconds=60)  # renewed at every step; longer than any one outside call
RETRY_LEASE = timedelta(seconds=120)  # covers a Celery retry's countdown (<= 30 s) and its run
# How many failed attempts in a row a step gets before it is given up.
STEP_LIMITS = {flow.FIND_DESIGNER: 4, flow.CREATE: 4, flow.ASSIGN: 4, flow.NOTIFY: 6, flow.REPLY: 3}


class SendFailed(Exception):
    """轻简 did not acknowledge a message to the customer (no send_result, or ok=false): retryable."""


class NoRecipient(Exception):
    """No shop account to send from: no retry can cure it."""


class LeaseLost(Exception):
    """Another message took the dispatch over (this one was presumed lost)."""


class DispatchFailed(Exception):
    """The dispatch has failed (written); `alert`: the designers' group is still to be told."""

    def __init__(self, dispatch: Dispatch, alert: bool):
        super().__init__(dispatch.error)
        self.dispatch, self.alert = dispatch, alert


class NotYet(Exception):
    """The step ran fine but is not finished (nobody online): it stays pending, no failure counted."""

    def __init__(self, result: dict):
        super().__init__("not yet")
        self.result = result


# Only what a retry may cure: recorded on the step, then raised for the Celery task to retry.
RETRYABLE = (tuhui.TuhuiUnavailable, wecom.WecomUnavailable, wecom.RateLimited, SendFailed)
FINAL = (tuhui.TuhuiError, wecom.WecomError, NoRecipient)


def new_token() -> str:
    return uuid.uuid4().hex


@dataclass
class Attempt:
    number: int  # 0 for the first attempt of the step
    result: dict = field(default_factory=dict)  # the step's stored result, updated in place
    save: Callable[[], None] = lambda: None  # persist `result` now (before a send, say)


def run_step(d: Dispatch, token: str, name: str, call: Callable[[Attempt], dict], *, fatal: bool = True,
              done_values: Callable[[dict], dict] | None = None) -> dict | None:
    """Run step `name` unless it is finished; the step's result, or None (not finished, or given up)."""
    step = load_step(d.dispatch_id, name)
    if step is not None and step.status == flow.STEP_DONE:
        return dict(step.result or {})
    if step is not None and step.status == flow.STEP_FAILED:
        return None
    number = step.attempts if step else 0
    attempts, last_error = number + 1, step.last_error if step else None
    result = dict(step.result or {}) if step else {}
    failures = int(result.get("failures", 0))

    def save() -> None:
        save_step(d, token, name, flow.STEP_PENDING, attempts, last_error, result)

    save()
    try:
        out = call(Attempt(number, result, save))
    except NotYet as wait:
        result.update(wait.result, failures=0)
        save_step(d, token, name, flow.STEP_PENDING, attempts, last_error, result)
        return None
    except RETRYABLE as exc:
        failures += 1
        result["failures"] = failures
        if failures < STEP_LIMITS[name]:
            save_step(d, token, name, flow.STEP_PENDING, attempts, str(exc), result, lease=RETRY_LEASE)
            log.info("dispatch %s: %s attempt %d failed (%s); retrying", d.dispatch_id, name, attempts, exc,
                     extra={"task_id": d.task_id, "event": "dispatch_retry"})
            raise
        return _give_up(d, token, name, attempts, f"{name} failed after {failures} attempts: {exc}", result, fatal)
    except FINAL as exc:
        return _give_up(d, token, name, attempts, f"{name} failed: {exc}", result, fatal)
    result.update(out)
    save_step(d, token, name, flow.STEP_DONE, attempts, last_error, result,
               dispatch_values=done_values(out) if done_values else None)
    return result


def _give_up(d: Dispatch, token: str, name: str, attempts: int, error: str, result: dict, fatal: bool) -> None:
    if fatal:
        fail(d, token, error, step=(name, attempts, result))
    save_step(d, token, name, flow.STEP_FAILED, attempts, error, result)
    log.warning("dispatch %s: %s given up: %s", d.dispatch_id, name, error,
                extra={"task_id": d.task_id, "event": "dispatch_step_failed"})
    return None


def claim(dispatch_id: str, token: str) -> Dispatch | None:
    now = utcnow()
    with session_scope() as session:
        ours = session.execute(
            update(Dispatch).where(Dispatch.dispatch_id == dispatch_id, Dispatch.lease_owner == token,
                                   Dispatch.next_attempt_at.is_not(None))
            .values(next_attempt_at=now + RUN_LEASE, updated_at=now)
            .execution_options(synchronize_session=False)).rowcount == 1
        return session.get(Dispatch, dispatch_id) if ours else None


def load_step(dispatch_id: str, name: str) -> DispatchStep | None:
    with session_scope() as session:
        return session.scalar(select(DispatchStep).where(DispatchStep.dispatch_id == dispatch_id,
                                                         DispatchStep.step == name))


def save_step(d: Dispatch, token: str, name: str, status: str, attempts: int, last_error: str | None,
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


def move(d: Dispatch, token: str, target: str, values: dict) -> Dispatch:
    now = utcnow()
    with session_scope() as session:
        moved = dispatch_states.move(session, d.dispatch_id, target, where=(Dispatch.lease_owner == token,),
                                    values={**values, "next_attempt_at": now + RUN_LEASE}, now=now)
        if not moved.won:
            raise LeaseLost(d.dispatch_id)
        return session.get(Dispatch, d.dispatch_id)


def fail(d: Dispatch, token: str, error: str, *, step: tuple | None = None, alert: bool = False) -> NoReturn:
    """failed, with a clear error (the task fails with it); raises DispatchFailed for the workflow to stop
    (and, after the maximum wait, to alert the group: the lease is kept until that is done)."""
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
    raise DispatchFailed(failed, alert)


def release(d: Dispatch, token: str, status: str) -> str:
    """Nothing left to do: the sweep leaves the dispatch alone from now on."""
    with session_scope() as session:
        session.execute(update(Dispatch).where(Dispatch.dispatch_id == d.dispatch_id, Dispatch.lease_owner == token)
                        .values(next_attempt_at=None, lease_owner=None, updated_at=utcnow())
                        .execution_options(synchronize_session=False))
    return status
