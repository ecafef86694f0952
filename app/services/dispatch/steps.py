"""The steps of a dispatch (CONTRACTS.md §3): find a designer (or wait for one, telling the customer
once), create the 图绘 task, assign it, notify the designers' WeCom group, reply to the customer."""
from __future__ import annotations

import logging
from datetime import timedelta
from typing import Callable

import requests
from sqlalchemy import func, select, update

from app import runtime
from app.clients import tuhui, wecom
from app.clients.qingjian import SendChannel, send_frame
from app.domain import dispatch as flow
from app.infra.db import session_scope
from app.infra.timeutil import utcnow
from app.models import Dispatch
from app.services.dispatch import ledger
from app.state import dispatches as dispatch_states

log = logging.getLogger(__name__)
_http = requests.Session()


def tuhui_client(settings) -> tuhui.TuhuiClient:
    return tuhui.TuhuiClient(settings.tuhui_base_url, settings.tuhui_api_key, settings.tuhui_timeout, _http)


def find_designer(d: Dispatch, token: str, client: tuhui.TuhuiClient) -> str | None:
    hours = runtime.current().settings.dispatch_sticky_hours

    def find(attempt: "ledger.Attempt") -> dict:
        online = client.online_designers()
        if not online:
            raise ledger.NotYet({"online": []})
        sticky = _recent_designer(d.customer_id, d.dispatch_id, hours)
        suggestion = _suggestion(client, d) if sticky not in online else None
        choice = flow.choose_designer(online, sticky=sticky, suggestion=suggestion,
                                      open_counts=_open_counts(online, hours))
        log.info("dispatch %s: designer %s (%s) of %s", d.dispatch_id, choice.designer, choice.why, online,
                 extra={"task_id": d.task_id, "event": "dispatch_designer"})
        return {"online": online, "designer": choice.designer, "why": choice.why}

    found = ledger.run_step(d, token, flow.FIND_DESIGNER, find)
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


def wait_for_designer(d: Dispatch, token: str) -> str:
    """Nobody online: tell the customer (once), check again later, give up after the maximum wait."""
    settings = runtime.current().settings
    now = utcnow()
    max_wait = timedelta(minutes=settings.dispatch_max_wait_minutes)
    if now - d.created_at >= max_wait:
        ledger.fail(d, token, f"no designer came online within {settings.dispatch_max_wait_minutes:g} minutes",
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
            raise ledger.LeaseLost(d.dispatch_id)
    log.info("dispatch %s: no designer online; checking again in %.0fs", d.dispatch_id,
             (next_at - now).total_seconds(), extra={"task_id": d.task_id, "event": "dispatch_wait"})
    return flow.WAITING_DESIGNER


def _tell_offline(d: Dispatch, token: str) -> bool:
    """`设计师暂时不在线…` to the customer; a failure is logged and tried again at the next check."""
    settings = runtime.current().settings
    step = ledger.load_step(d.dispatch_id, flow.FIND_DESIGNER)
    result = dict(step.result or {}) if step else {}
    attempts = step.attempts if step else 0

    def save() -> None:
        ledger.save_step(d, token, flow.FIND_DESIGNER, flow.STEP_PENDING, attempts, step.last_error if step else None,
                   result)

    try:
        _say(d, "offline", int(result.get("offline_sends", 0)), settings.dispatch_offline_text, result, save,
             prefix="offline_")
    except (ledger.SendFailed, ledger.NoRecipient) as exc:
        log.warning("dispatch %s: could not tell the customer no designer is online: %s", d.dispatch_id, exc,
                    extra={"task_id": d.task_id, "event": "dispatch_offline_notice"})
        return False
    return True


def create(client: tuhui.TuhuiClient, d: Dispatch, attempt: "ledger.Attempt") -> dict:
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


def assign(client: tuhui.TuhuiClient, d: Dispatch, tuhui_task_id: str) -> dict:
    try:
        client.assign(tuhui_task_id, d.designer, flow.assign_notes(d.customer_id, d.reason))
    except tuhui.TuhuiNotFound:
        raise tuhui.TuhuiNotFound(f"图绘 has no task {tuhui_task_id} to assign (HTTP 404)") from None
    return {"designer": d.designer}


def notify(d: Dispatch, token: str, *, alert: bool = False) -> None:
    """The designers' group hears of the new task (or, after the maximum wait, of the failure)."""
    settings = runtime.current().settings
    if not settings.wecom_webhook_url:
        step = ledger.load_step(d.dispatch_id, flow.NOTIFY)
        if step is None or step.status == flow.STEP_PENDING:
            ledger.save_step(d, token, flow.NOTIFY, flow.STEP_DONE, 0, None,
                             {"skipped": "WECOM_WEBHOOK_URL is not set"})
            log.info("dispatch %s: WECOM_WEBHOOK_URL is not set; no group notice", d.dispatch_id,
                     extra={"task_id": d.task_id, "event": "dispatch_notify"})
        return
    if alert:
        content = flow.alert_markdown(d.dispatch_id, d.customer_id, d.reason, settings.dispatch_max_wait_minutes)
    else:
        content = flow.notice_markdown(d.designer, d.tuhui_task_id, d.customer_id, d.reason, d.image_url)

    def post(attempt: "ledger.Attempt") -> dict:
        wecom.post_markdown(_http, settings.wecom_webhook_url, content)
        return {"kind": "alert" if alert else "notice"}

    ledger.run_step(d, token, flow.NOTIFY, post, fatal=False)


def reply(d: Dispatch, token: str) -> None:
    text = runtime.current().settings.dispatch_reply_text

    def reply(attempt: "ledger.Attempt") -> dict:
        return _say(d, flow.REPLY, attempt.number, text, attempt.result, attempt.save)

    ledger.run_step(d, token, flow.REPLY, reply, fatal=False)


def _say(d: Dispatch, key: str, number: int, text: str, result: dict, save: Callable[[], None],
         prefix: str = "") -> dict:
    """Send `text` to the customer through 轻简 as req `dispatch:<id>:<key>:<number>`.

    An earlier attempt whose send_result came late (or is still due) counts: no second message then.
    """
    rt = runtime.current()
    acc_id = d.acc_id or rt.settings.qingjian_default_acc_id
    if not acc_id:
        raise ledger.NoRecipient("no shop account to send from: give acc_id or set QINGJIAN_DEFAULT_ACC_ID")
    req = flow.req_id(d.dispatch_id, key, number)
    earlier = result.get(f"{prefix}req_id")
    result.update({f"{prefix}req_id": req, f"{prefix}sends": number + 1})
    save()  # before the send: a retry must know which req_id may still be answered
    frame = send_frame({"kind": "text", "content": text}, acc_id=acc_id, to_id=d.customer_id, req_id=req)
    settled, answer = SendChannel(rt.redis, rt.keys).send_step(earlier, frame, rt.settings.qingjian_send_timeout)
    result[f"{prefix}req_id"] = settled
    if answer is None:
        raise ledger.SendFailed(f"no send_result from 轻简 within {rt.settings.qingjian_send_timeout:g}s ({req})")
    if not answer.get("ok"):
        raise ledger.SendFailed(f"轻简 refused the message: {answer.get('error') or 'unknown error'} ({req})")
    log.info("dispatch %s: customer %s told (%s)", d.dispatch_id, d.customer_id, settled,
             extra={"task_id": d.task_id, "event": "dispatch_said"})
    return {f"{prefix}req_id": settled}
