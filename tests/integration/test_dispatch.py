"""The transfer-to-designer workflow (CONTRACTS.md §3) end to end, on real processes and the fakes.

API or task action -> dispatch.advance (worker) -> 图绘 fake (find, create, assign) -> WeCom fake
(notice) -> 轻简 fake (the customer's reply). Each test uses its own customer ids and looks 图绘's
tasks up by dispatch id, so what other tests left behind never counts. Controls a test sets on the
shared fakes (who is online, the suggestion, one-shot failures) are undone after each test (conftest's
`_shared_fakes_reset_after_each_test`), and put back in `finally` where the test itself goes on.
"""
import dataclasses
from datetime import timedelta

import pytest
from sqlalchemy import update

from app import create_app, queueing, runtime
from app.clients import tuhui as tuhui_client
from app.clients import wecom as wecom_client
from app.config import DEFAULT_DISPATCH_OFFLINE_TEXT, DEFAULT_DISPATCH_REPLY_TEXT
from app.infra.db import session_scope
from app.infra.timeutil import utcnow
from app.models import Dispatch
from app.services import dispatch as dispatch_service
from devkit.fakes.tuhui import FakeTuhui
from devkit.fakes.wecom import FakeWecom
from devkit.processes import API_KEY
from devkit.stores import wait_until
from tests.conftest import DESIGNERS, TUHUI_API_KEY, uid

pytestmark = pytest.mark.integration

IMAGE = "https://img.example.com/blurry.jpg"


# -- helpers ------------------------------------------------------------------------------------

def transfer(live, customer: str, reason: str = "图片过于模糊，AI 无法处理", **extra) -> str:
    live.use()
    answer = live.client.post("/api/dispatch/transfer", json={
        "customer_id": customer, "acc_id": "shop_001", "acc_type": "AliWorkbench", "image_url": IMAGE,
        "reason": reason, "source": "天网", **extra})  # unknown fields are ignored
    body = answer.get_json()
    assert answer.status_code == 202, body
    assert body["code"] == 202 and body["data"]["status"] == "pending"
    return body["data"]["dispatch_id"]


def record(live, dispatch_id: str) -> dict:
    live.use()
    answer = live.client.get(f"/api/dispatch/{dispatch_id}")
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()["data"]


def settled(live, dispatch_id: str, status: str, timeout: float = 25) -> dict:
    """The dispatch once it is `status` and nothing is left to do (notice and reply included)."""
    def done():
        data = record(live, dispatch_id)
        return data if data["status"] == status and data["next_attempt_at"] is None else None

    try:
        return wait_until(done, timeout, 0.1, f"dispatch {dispatch_id} to settle as {status}")
    except AssertionError:
        raise AssertionError(f"dispatch {dispatch_id}: {record(live, dispatch_id)}\n{live.system.dump_logs()}")


def steps(data: dict) -> dict:
    return {s["step"]: s for s in data["steps"]}


def notices_for(live, customer: str) -> list[str]:
    return [m["content"] for m in live.wecom.messages if customer in m["content"]]


def texts_to(live, customer: str) -> list[str]:
    """Every text our side sent the customer (a repeat included)."""
    return [f["data"]["content"] for f in live.qingjian.frames_for(customer) if f["action"] == "send_text"]


def transfer_task(live, customer: str, keyword: str = "转人工", reason: str = "客户要做高清修复") -> str:
    task_id = uid()
    data = live.post_task(
        task_id=task_id, type="transfer", customer={"id": customer, "name": "小明"}, acc_id="shop_001",
        trigger={"type": "specified_customer_reply", "customer_id": customer, "keyword": keyword},
        action={"type": "transfer_to_designer", "reason": reason, "image_url": IMAGE})
    assert data["status"] == "waiting", data
    live.qingjian.say(customer, f"{keyword}吧", from_name="小明")
    return task_id


# -- the whole flow -----------------------------------------------------------------------------

def test_transfer_through_the_api_creates_assigns_notifies_and_replies(live):
    customer = uid("cust")
    dispatch_id = transfer(live, customer)
    data = settled(live, dispatch_id, "assigned")

    created = live.tuhui.find_tasks(dispatch_id)
    assert len(created) == 1
    task = created[0]
    assert task["task_name"] == f"图片处理-{customer[-4:]}"
    for part in ("图片过于模糊", customer, IMAGE, dispatch_id):
        assert part in task["description"]
    assert task["status"] == "assigned" and task["assigned_to"] == data["designer"] in DESIGNERS
    assert data["tuhui_task_id"] == task["task_id"] and data["error"] is None and data["task_id"] is None
    assert data["completed_at"] is not None

    by_step = steps(data)
    assert [s["step"] for s in data["steps"]] == ["find_designer", "create", "assign", "notify", "reply"]
    assert all(s["status"] == "done" and s["attempts"] == 1 for s in data["steps"]), data["steps"]
    assert by_step["find_designer"]["result"]["designer"] == data["designer"]

    wait_until(lambda: notices_for(live, customer), 10, message="the group notice")
    [notice] = notices_for(live, customer)
    assert notice.startswith(f"📋 **新任务派单**\n设计师：{data['designer']}\n")
    assert task["task_id"] in notice
    sends = live.qingjian.frames_for(customer)
    assert [(s["action"], s["req_id"], s["data"]["content"], s["data"]["acc_id"]) for s in sends] == [
        ("send_text", f"dispatch:{dispatch_id}:reply:0", DEFAULT_DISPATCH_REPLY_TEXT, "shop_001")]


def test_transfer_action_of_a_task_completes_the_task_when_assigned(live):
    customer = uid("cust")
    task_id = transfer_task(live, customer)
    done = live.wait_status(task_id, "completed", timeout=30)
    result = done["result"]
    assert set(result) >= {"dispatch_id", "designer", "tuhui_task_id"}

    data = settled(live, result["dispatch_id"], "assigned")
    assert data["task_id"] == task_id and data["customer_id"] == customer
    assert (data["designer"], data["tuhui_task_id"]) == (result["designer"], result["tuhui_task_id"])
    [task] = live.tuhui.find_tasks(result["dispatch_id"])
    assert task["assigned_to"] == result["designer"] and "客户要做高清修复" in task["description"]
    wait_until(lambda: notices_for(live, customer), 10, message="the group notice")
    assert texts_to(live, customer) == [DEFAULT_DISPATCH_REPLY_TEXT]
    wait_until(lambda: sorted(live.tianwang.statuses(task_id)) == ["completed", "running"], 15,
               message="running and completed callbacks")
    events = live.client.get(f"/api/task/{task_id}/events").get_json()["data"]["events"]
    assert any(e["kind"] == "dispatch" and e["detail"]["dispatch_id"] == result["dispatch_id"] for e in events)


def test_transfer_validation_and_unknown_dispatch(live):
    live.use()
    answer = live.client.post("/api/dispatch/transfer", json={"acc_id": "shop_001", "reason": 5})
    body = answer.get_json()
    assert answer.status_code == 422 and body["code"] == 422 and body["data"] is None
    assert set(body["errors"]) == {"customer_id", "reason"}
    answer = live.client.post("/api/dispatch/transfer", json={"customer_id": "   "})
    assert answer.status_code == 422 and "customer_id" in answer.get_json()["errors"]
    answer = live.client.post("/api/dispatch/transfer", data="[1]", content_type="application/json")
    assert answer.status_code == 400
    answer = live.client.get("/api/dispatch/no-such-dispatch")
    assert answer.status_code == 404 and answer.get_json()["code"] == 404
    # without acc_id the reply needs QINGJIAN_DEFAULT_ACC_ID (the live system has one)
    bare = create_app(dataclasses.replace(live.app.config["SETTINGS"], qingjian_default_acc_id=None))
    try:
        answer = bare.test_client().post("/api/dispatch/transfer", json={"customer_id": "c1"},
                                         headers={"X-API-Key": API_KEY})
    finally:
        live.use()
    assert answer.status_code == 422 and list(answer.get_json()["errors"]) == ["acc_id"]


# -- choosing the designer -----------------------------------------------------------------------

def test_the_customers_recent_designer_is_preferred_while_online(live):
    regular, newcomer = uid("cust"), uid("cust")
    try:
        live.tuhui.set_suggestion("婷婷")
        first = settled(live, transfer(live, regular), "assigned")
        assert first["designer"] == "婷婷"

        live.tuhui.set_suggestion("橘子")
        again, fresh = transfer(live, regular), transfer(live, newcomer)
        again, fresh = settled(live, again, "assigned"), settled(live, fresh, "assigned")
        assert (again["designer"], steps(again)["find_designer"]["result"]["why"]) == ("婷婷", "sticky")
        assert (fresh["designer"], steps(fresh)["find_designer"]["result"]["why"]) == ("橘子", "suggestion")

        live.tuhui.set_online(["橘子"])  # the regular's designer went home
        third = settled(live, transfer(live, regular), "assigned")
        assert third["designer"] == "橘子"
    finally:
        live.tuhui.reset_suggestion()
        live.tuhui.set_online(DESIGNERS)


def test_no_designer_online_waits_tells_the_customer_once_then_assigns(live):
    customer = uid("cust")
    try:
        live.tuhui.set_online([])
        dispatch_id = transfer(live, customer)

        def waiting_and_told():
            data = record(live, dispatch_id)
            return data["status"] == "waiting_designer" and data["notified_offline"]

        wait_until(waiting_and_told, 15, message="waiting_designer, customer told")
        assert texts_to(live, customer) == [DEFAULT_DISPATCH_OFFLINE_TEXT]
        # beat checks again (and does not tell the customer again) while nobody is online
        wait_until(lambda: steps(record(live, dispatch_id))["find_designer"]["attempts"] >= 2, 25,
                   message="a second designer check")
        assert texts_to(live, customer) == [DEFAULT_DISPATCH_OFFLINE_TEXT]

        live.tuhui.set_online(["婷婷"])
        data = settled(live, dispatch_id, "assigned", timeout=30)
    finally:
        live.tuhui.set_online(DESIGNERS)
    assert data["designer"] == "婷婷" and data["notified_offline"] is True
    assert texts_to(live, customer) == [DEFAULT_DISPATCH_OFFLINE_TEXT, DEFAULT_DISPATCH_REPLY_TEXT]
    assert len(live.tuhui.find_tasks(dispatch_id)) == 1


# -- failures -------------------------------------------------------------------------------------

def test_a_create_that_times_out_after_succeeding_makes_exactly_one_tuhui_task(live):
    customer = uid("cust")
    live.tuhui.create_succeeds_but_times_out(4)  # the bridge's TUHUI_TIMEOUT is 2 s
    dispatch_id = transfer(live, customer)
    data = settled(live, dispatch_id, "assigned", timeout=30)
    created = live.tuhui.find_tasks(dispatch_id)
    assert len(created) == 1 and created[0]["assigned_to"] == data["designer"]
    create = steps(data)["create"]
    assert create["attempts"] == 2 and create["result"]["found_in_queue"] is True
    assert "may have been created" in create["last_error"]
    assert data["tuhui_task_id"] == created[0]["task_id"]
    assert texts_to(live, customer) == [DEFAULT_DISPATCH_REPLY_TEXT]


def test_assign_404_fails_the_dispatch_and_its_task(live):
    customer = uid("cust")
    live.tuhui.fail_next("POST /tasks/", 404)  # the assign call (create is "POST /tasks")
    task_id = transfer_task(live, customer)
    failed = live.wait_status(task_id, "failed", timeout=30)
    assert "404" in failed["error_message"]
    dispatch_id = failed["result"]["dispatch_id"]
    data = settled(live, dispatch_id, "failed")
    assert "assign failed" in data["error"] and "404" in data["error"]
    assert steps(data)["assign"]["status"] == "failed" and steps(data)["assign"]["attempts"] == 1
    assert "notify" not in steps(data) and "reply" not in steps(data)
    assert notices_for(live, customer) == [] and texts_to(live, customer) == []
    wait_until(lambda: sorted(live.tianwang.statuses(task_id)) == ["failed", "running"], 15,
               message="running and failed callbacks")


def test_a_rate_limited_notice_is_retried_until_the_robot_takes_it(live):
    customer = uid("cust")
    rejected_before = len(live.wecom.rejected)
    live.wecom.rate_limit_next(1)
    dispatch_id = transfer(live, customer)
    data = settled(live, dispatch_id, "assigned")
    notify = steps(data)["notify"]
    assert notify["status"] == "done" and notify["attempts"] == 2 and "45009" in notify["last_error"]
    # the retry ran only the unfinished steps
    assert [steps(data)[name]["attempts"] for name in ("find_designer", "create", "assign")] == [1, 1, 1]
    assert len(live.tuhui.find_tasks(dispatch_id)) == 1
    assert [r["errcode"] for r in live.wecom.rejected[rejected_before:]] == [45009]
    assert len(notices_for(live, customer)) == 1
    assert texts_to(live, customer) == [DEFAULT_DISPATCH_REPLY_TEXT]


def test_a_failing_notice_does_not_fail_the_dispatch(live):
    customer = uid("cust")
    live.wecom.fail_next(1, errcode=93000, errmsg="invalid webhook url")
    data = settled(live, transfer(live, customer), "assigned")
    assert steps(data)["notify"]["status"] == "failed" and "93000" in steps(data)["notify"]["last_error"]
    assert data["error"] is None and steps(data)["reply"]["status"] == "done"
    assert texts_to(live, customer) == [DEFAULT_DISPATCH_REPLY_TEXT]


def test_tuhui_down_is_retried_then_fails_with_a_clear_error(live):
    customer = uid("cust")
    live.tuhui.down()
    try:
        dispatch_id = transfer(live, customer)
        data = settled(live, dispatch_id, "failed", timeout=40)
    finally:
        live.tuhui.up()
    find = steps(data)["find_designer"]
    # Retried (more than one attempt), then given up, saying how often it tried; and it stops: nothing
    # is scheduled again (`settled` waited for next_attempt_at to be cleared).
    assert find["status"] == "failed" and find["attempts"] > 1
    assert data["error"].startswith(f"find_designer failed after {find['attempts']} attempts: 图绘 GET "
                                    "/online/designers")
    assert "connection refused" in data["error"]
    assert texts_to(live, customer) == [] and notices_for(live, customer) == []


def test_without_tuhui_base_url_the_dispatch_fails_with_a_clear_error(live, monkeypatch):
    """Run in this process against the live database, with settings that lack TUHUI_BASE_URL."""
    handed = []
    monkeypatch.setattr(queueing, "enqueue_dispatch", lambda *args: handed.append(args))
    settings = dataclasses.replace(live.app.config["SETTINGS"], tuhui_base_url=None)
    runtime.configure(settings)
    try:
        dispatch_id = dispatch_service.start(uid("cust"), acc_id="shop_001", reason="r")
        [(handed_id, token)] = handed
        assert handed_id == dispatch_id
        assert dispatch_service.advance(dispatch_id, token) == "failed"
        assert dispatch_service.advance(dispatch_id, token) == "skipped"  # a redelivery does nothing
    finally:
        live.use()
    data = record(live, dispatch_id)
    assert data["status"] == "failed" and data["next_attempt_at"] is None
    assert data["error"].startswith("TUHUI_BASE_URL is not set")


def test_a_lost_hand_off_is_re_driven_by_the_sweep_and_the_stale_message_does_nothing(live, monkeypatch):
    live.use()
    dropped = []
    monkeypatch.setattr(queueing, "enqueue_dispatch", lambda *args: dropped.append(args))
    dispatch_id = dispatch_service.start(uid("cust"), acc_id="shop_001", reason="lost message")
    [(_, stale_token)] = dropped
    monkeypatch.undo()
    with session_scope() as session:  # the hand-off lapses (instead of waiting a minute for it)
        session.execute(update(Dispatch).where(Dispatch.dispatch_id == dispatch_id)
                        .values(next_attempt_at=utcnow() - timedelta(seconds=1)))
    dispatch_service.sweep()  # (or beat's sweep, whichever comes first)
    settled(live, dispatch_id, "assigned")
    assert dispatch_service.advance(dispatch_id, stale_token) == "skipped"
    assert len(live.tuhui.find_tasks(dispatch_id)) == 1


def test_no_designer_within_the_maximum_wait_fails_and_alerts_the_group(isolated):
    tuhui, wecom = FakeTuhui(api_key=TUHUI_API_KEY, designers=[]).start(), FakeWecom().start()
    try:
        system = isolated(TUHUI_BASE_URL=tuhui.url, TUHUI_API_KEY=TUHUI_API_KEY, WECOM_WEBHOOK_URL=wecom.url,
                          DISPATCH_MAX_WAIT_MINUTES="0.05", DISPATCH_WAIT_RETRY_SECONDS="1")
        system.tuhui, system.wecom = tuhui, wecom
        customer = uid("cust")
        task_id = transfer_task(system, customer)
        failed = system.wait_status(task_id, "failed", timeout=40)
        assert "no designer came online within 0.05 minutes" in failed["error_message"]
        data = settled(system, failed["result"]["dispatch_id"], "failed")
        assert data["notified_offline"] is True and steps(data)["notify"]["result"]["kind"] == "alert"
        assert texts_to(system, customer) == [DEFAULT_DISPATCH_OFFLINE_TEXT]
        [alert] = notices_for(system, customer)
        assert alert.startswith("⚠️ **派单失败：无设计师在线**")
        assert tuhui.created == []
        logs = "\n".join(p.output() for p in system.system.procs)
        assert TUHUI_API_KEY not in logs and "key=fake" not in logs
    finally:
        tuhui.stop()
        wecom.stop()


# -- the clients, against the fakes ---------------------------------------------------------------

def test_tuhui_client_speaks_the_contract_and_types_its_errors():
    with FakeTuhui(api_key=TUHUI_API_KEY, designers=["橘子"]) as fake:
        client = tuhui_client.TuhuiClient(fake.url, TUHUI_API_KEY, timeout=1)
        assert client.online_designers() == ["橘子"]
        fake.set_online(["婷婷", " 橘子 ", "婷婷", ""], bare_list=True)
        assert client.online_designers() == ["婷婷", "橘子"]
        task_id = client.create_task("图片处理-0001", "d")
        client.assign(task_id, "婷婷", "notes")
        assert client.get_task(task_id)["assigned_to"] == "婷婷"
        with pytest.raises(tuhui_client.TuhuiNotFound):
            client.assign("nope", "婷婷")
        fake.fail_next("GET /online", 503)
        with pytest.raises(tuhui_client.TuhuiUnavailable):
            client.online_designers()
        fake.create_succeeds_but_times_out(3)
        with pytest.raises(tuhui_client.TuhuiOutcomeUnknown):
            client.create_task("图片处理-0002", "marker-xyz")
        assert tuhui_client.find_task(client.queue(), "marker-xyz") == fake.find_tasks("marker-xyz")[0]["task_id"]
        with pytest.raises(tuhui_client.TuhuiError) as refused:
            tuhui_client.TuhuiClient(fake.url, "wrong-" + TUHUI_API_KEY, timeout=1).online_designers()
        assert not isinstance(refused.value, tuhui_client.TuhuiUnavailable)
        assert TUHUI_API_KEY not in str(refused.value) and TUHUI_API_KEY not in repr(client)
        fake.down()
        with pytest.raises(tuhui_client.TuhuiUnavailable) as down:
            client.create_task("图片处理-0003", "d")
        assert not isinstance(down.value, tuhui_client.TuhuiOutcomeUnknown)  # refused: nothing was sent


def test_wecom_client_reads_errcode():
    session = wecom_client.requests.Session()
    with FakeWecom() as fake:
        wecom_client.post_markdown(session, fake.url, "📋 **新任务派单**\n设计师：橘子")
        fake.rate_limit_next(1)
        with pytest.raises(wecom_client.RateLimited):
            wecom_client.post_markdown(session, fake.url, "again")
        fake.fail_next(1, errcode=40001)
        with pytest.raises(wecom_client.WecomError) as refused:
            wecom_client.post_markdown(session, fake.url, "again")
        assert not isinstance(refused.value, (wecom_client.RateLimited, wecom_client.WecomUnavailable))
        assert [m["content"] for m in fake.messages] == ["📋 **新任务派单**\n设计师：橘子"]
        fake.down()
        with pytest.raises(wecom_client.WecomUnavailable) as down:
            wecom_client.post_markdown(session, fake.url, "x")
        assert "key=" not in str(down.value)


# -- secrets --------------------------------------------------------------------------------------

def test_the_tuhui_api_key_never_reaches_a_log(live):
    customer = uid("cust")
    live.tuhui.fail_next("GET /online/designers", 500)
    settled(live, transfer(live, customer), "assigned")
    logs = "\n".join(p.output() for p in live.system.procs)
    assert '"event": "dispatch_designer"' in logs  # the workers did log the dispatch
    assert TUHUI_API_KEY not in logs
    assert "key=fake" not in logs  # nor the robot's webhook key
