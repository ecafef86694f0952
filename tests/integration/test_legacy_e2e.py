"""Imported legacy tasks fire here: the live system (worker, beat, listener, the 轻简 and 天网 fakes).

A legacy database is built, imported in this process (`legacy_import.run`, what the command runs), and
customers speak through the 轻简 fake: each waiting task fires once, history never sends anything or
calls 天网 back, and the one that waited past its deadline reaches 天网 as `timeout`.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from app.services import legacy_import
from tests import legacy_db
from tests.conftest import uid
from tests.integration.test_triggers_e2e import wait_remembered
from tests.legacy_db import row

pytestmark = pytest.mark.integration


def ago(hours: float) -> str:
    return (datetime.now(ZoneInfo("Asia/Shanghai")) - timedelta(hours=hours)).replace(tzinfo=None).isoformat()


def test_imported_waiting_tasks_fire_once_and_history_stays_quiet(live, tmp_path):
    c_reply, c_file, c_spec, c_any, c_early, c_done, c_late = (uid("c") for _ in range(7))
    keyword = uid("kw")
    ids = {name: uid(f"L_{name}") for name in ("reply", "file", "spec", "any", "early", "done", "late")}
    path = legacy_db.create(tmp_path / "tasks.db", [
        row(ids["reply"], customer_id=c_reply, created_at=ago(2)),
        row(ids["file"], customer_id=c_file, status="waiting", action_type="send_file",
            action_file_url="https://example.com/f/a.zip"),
        row(ids["spec"], trigger_type="specified_customer_reply", specified_customer_id=c_spec,
            specified_customer_name="小明", customer_id=c_spec, customer_name="小明"),
        row(ids["any"], trigger_type="customer_keyword", trigger_keyword=None, trigger_keywords=f'["{keyword}"]'),
        row(ids["early"], customer_id=c_early, created_at=ago(0.5)),
        row(ids["done"], customer_id=c_done, status="completed", triggered_at=ago(3), completed_at=ago(3)),
        row(ids["late"], customer_id=c_late, created_at=ago(30), timeout_hours=24),
    ])
    # c_early answered during the cut-over, after its legacy task was made and before the import.
    early = live.qingjian.say(c_early, "好的")
    wait_remembered(live, c_early, early)
    live.use()
    report = legacy_import.run(path)
    assert dict(report.imported) == {"waiting": 5, "completed": 1, "timeout": 1} and not report.refused

    assert live.wait_status(ids["early"], "completed")["triggered_by"]["msg_id"] == early  # caught up on import
    said = {
        "reply": live.qingjian.say(c_reply, "好的谢谢"),
        "file": live.qingjian.say(c_file, "好的"),
        "spec": (live.qingjian.say(c_spec, "好的", from_name="小红"),  # another name: not the one
                 live.qingjian.say(c_spec, "好的呀", from_name="小明"))[1],
        "any": live.qingjian.say(c_any, f"{keyword}!"),
    }
    for name, msg_id in said.items():
        assert live.wait_status(ids[name], "completed")["triggered_by"]["msg_id"] == msg_id, name
    sent = {customer: [(s["action"], s["req_id"]) for s in live.qingjian.sent_to(customer)]
            for customer in (c_reply, c_file, c_spec, c_any, c_early, c_done, c_late)}
    assert sent == {
        c_reply: [("send_text", f"{ids['reply']}:0:0")],
        c_file: [("send_text", f"{ids['file']}:0:0"), ("send_file", f"{ids['file']}:1:0")],
        c_spec: [("send_text", f"{ids['spec']}:0:0")],
        c_any: [("send_text", f"{ids['any']}:0:0")],
        c_early: [("send_text", f"{ids['early']}:0:0")],
        c_done: [], c_late: [],
    }
    for name in said.keys() | {"early"}:  # each callback once (batched deliveries may arrive in any order)
        assert live.tianwang.wait_for(lambda tw, t=ids[name]: sorted(tw.statuses(t)) == ["completed", "running"],
                                      20), (name, live.tianwang.statuses(ids[name]))
    assert live.tianwang.wait_for_status(ids["late"], "timeout")
    assert live.tianwang.statuses(ids["late"]) == ["timeout"]
    assert live.tianwang.statuses(ids["done"]) == []  # history: 天网 heard about it from the legacy bridge
    # Neither a finished legacy task, nor one that fired here, nor the timed-out one fires again;
    # a control task fired after those messages shows they were processed.
    for customer in (c_done, c_reply, c_late):
        live.qingjian.say(customer, "好的")
    control = uid("CONTROL")
    live.post_task(task_id=control, type="control", customer={"id": c_done},
                   trigger={"type": "customer_reply", "keyword": "收到了"}, action={"type": "send_message", "message": "x"})
    live.qingjian.say(c_done, "收到了")
    live.wait_status(control, "completed")
    assert [s["req_id"] for s in live.qingjian.sent_to(c_done)] == [f"{control}:0:0"]
    assert len(live.qingjian.sent_to(c_reply)) == 1 and live.qingjian.sent_to(c_late) == []
    assert live.status(ids["done"])["status"] == "completed" and live.status(ids["late"])["status"] == "timeout"


def test_loosely_typed_legacy_bodies_fire_too(live):
    """What a legacy caller sends loosely (a numeric customer id, "24" hours, "false") is stored in the
    contract's types, so the task is matched like any other."""
    customer = str(uuid.uuid4().int % 10**15)  # an id 天网 sends as a JSON number
    task_id = uid("LOOSE")
    data = live.post_task(task_id=task_id, type="legacy", customer={"id": int(customer)}, timeout_hours="24",
                          trigger={"type": "customer_reply", "keyword": "OK", "exact_match": "false"},
                          action={"type": "send_message", "message": "收到"})
    assert data == {"task_id": task_id, "status": "waiting"}
    msg_id = live.qingjian.say(customer, "ok, 好的")  # contains the keyword: "false" is not read as true
    assert live.wait_status(task_id, "completed")["triggered_by"]["msg_id"] == msg_id
    stored = live.status(task_id)
    assert stored["customer"] == {"id": customer} and stored["timeout_hours"] == 24
    assert stored["trigger"]["exact_match"] is False
