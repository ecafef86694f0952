"""Every request example of the legacy bridge's documents (seeds 000 and 001) is accepted unchanged,
with only the API key added; the answers keep the legacy shape (README "Moving from the legacy bridge"
lists what differs: `waiting` where the legacy said `pending`).

The bodies below are copied verbatim from the seeds. Two are time_reach tasks for a morning in
February 2026, so every example is posted with intake's clock at the day seed 001 was written
(2026-02-26 10:00 in Shanghai): a timer more than 5 minutes in the past is refused, rightly.
"""
from __future__ import annotations

from datetime import datetime

import pytest

from app.services import intake
from tests.api.helpers import assert_envelope

DOCUMENTS_DAY = datetime(2026, 2, 26, 2, 0)  # naive UTC, as intake's clock gives it

SEED_000_RECEIVE = {
    "task_id": "TASK_20260227_001",
    "type": "send_file_after_reply",
    "customer": {"id": "customer_123", "name": "小明"},
    "trigger": {
        "type": "specified_customer_reply",
        "customer_id": "customer_123",
        "customer_name": "小明",
        "keyword": "好的",
        "exact_match": False,
    },
    "action": {"type": "send_message", "message": "这是您要的文件"},
    "priority": "normal",
    "timeout_hours": 24,
    "created_by": "设计师 lz",
}
# seed 000, 触发条件详解: each trigger shown there, posted in the 接收任务 example in place of its trigger
SEED_000_TRIGGERS = {
    "specified_customer_reply": {"type": "specified_customer_reply", "customer_id": "customer_123",
                                 "customer_name": "小明", "keyword": "好的", "exact_match": False},
    "customer_reply": {"type": "customer_reply", "keyword": "好的"},
    "customer_keyword": {"type": "customer_keyword", "keywords": ["好的", "可以", "行"]},
    "customer_payment": {"type": "customer_payment", "keywords": ["已付款", "拍下了"]},
    "time_reach": {"type": "time_reach", "time": "2026-02-28 09:00:00"},
}
SEED_001_STRUCTURE = {  # 任务数据结构
    "task_id": "TASK_20260226_001",
    "type": "send_file_after_reply",
    "customer": {"name": "小明", "id": "customer_123"},
    "trigger": {"type": "customer_reply", "keyword": "好的"},
    "action": {"type": "send_file", "file_url": "https://xxx.com/file.zip", "message": "这是您要的文件"},
    "priority": "normal",
    "timeout_hours": 24,
    "created_by": "设计师 lz",
}
SEED_001_CURL = {  # API 调用示例 1. 接收任务
    "task_id": "TASK_20260226_001",
    "type": "send_file_after_reply",
    "customer": {"name": "小明", "id": "customer_123"},
    "trigger": {"type": "customer_reply", "keyword": "好的"},
    "action": {"type": "send_message", "message": "这是您要的文件"},
    "priority": "normal",
    "timeout_hours": 24,
    "created_by": "设计师 lz",
}
SEED_001_SCENARIOS = {  # 使用场景示例 1-3
    "file_after_reply": {
        "task_id": "TASK_001", "type": "send_file_after_reply", "customer": {"id": "customer_123"},
        "trigger": {"type": "customer_reply", "keyword": "好的"},
        "action": {"type": "send_file", "file_url": "https://xxx.com/file.zip", "message": "这是您要的文件"}},
    "tutorial_after_payment": {
        "task_id": "TASK_002", "type": "send_tutorial_after_payment", "customer": {"id": "customer_456"},
        "trigger": {"type": "customer_payment"},
        "action": {"type": "send_message", "message": "感谢购买!这是使用教程:..."}},
    "greeting_at_nine": {
        "task_id": "TASK_003", "type": "send_greeting", "customer": {"id": "customer_789"},
        "trigger": {"type": "time_reach", "time": "2026-02-27 09:00:00"},
        "action": {"type": "send_message", "message": "早上好!有什么可以帮您?"}},
}
BODIES = {
    "000 接收任务": SEED_000_RECEIVE,
    **{f"000 触发条件 {kind}": {**SEED_000_RECEIVE, "trigger": trigger} for kind, trigger in SEED_000_TRIGGERS.items()},
    "001 任务数据结构": SEED_001_STRUCTURE,
    "001 接收任务": SEED_001_CURL,
    **{f"001 场景 {name}": body for name, body in SEED_001_SCENARIOS.items()},
}
# The other requests of the seeds, each after its document's receive example.
CANCELS = {"000": {"task_id": "TASK_20260227_001", "reason": "客户取消订单"},
           "001": {"task_id": "TASK_20260226_001", "reason": "客户已退款"}}
RECEIVES = {"000": SEED_000_RECEIVE, "001": SEED_001_CURL}


@pytest.fixture
def documents_day(monkeypatch):
    monkeypatch.setattr(intake, "utcnow", lambda: DOCUMENTS_DAY)


@pytest.mark.parametrize("body", [pytest.param(b, id=name) for name, b in BODIES.items()])
def test_every_legacy_receive_example_is_accepted_unchanged(client, documents_day, body):
    answer = assert_envelope(client.post("/api/task/receive", json=body), 200, errors=False)
    # The legacy answer: {"code": 200, "message": "任务接收成功", "data": {"task_id", "status": "pending"}}
    assert answer["message"] == "任务接收成功"
    assert answer["data"] == {"task_id": body["task_id"], "status": "waiting"}
    stored = client.get(f"/api/task/status/{body['task_id']}").get_json()["data"]
    assert {k: stored[k] for k in body} == body  # kept as it came


@pytest.mark.parametrize("seed", ["000", "001"])
def test_the_legacy_status_cancel_list_stats_and_health_examples(client, documents_day, seed):
    task_id = RECEIVES[seed]["task_id"]
    assert_envelope(client.post("/api/task/receive", json=RECEIVES[seed]), 200)
    status = assert_envelope(client.get(f"/api/task/status/{task_id}"), 200)["data"]
    assert status["task_id"] == task_id and status["status"] == "waiting"
    listed = assert_envelope(client.get("/api/task/list?status=pending&page=1&page_size=10"), 200)["data"]
    assert (listed["page"], listed["page_size"], listed["total"]) == (1, 10, 0)  # it waits: not pending
    cancelled = assert_envelope(client.post("/api/task/cancel", json=CANCELS[seed]), 200)
    assert cancelled["data"] == {"task_id": task_id, "status": "cancelled"}
    assert assert_envelope(client.get("/api/task/stats"), 200)["data"]["by_status"]["cancelled"] == 1
    health = assert_envelope(client.get("/api/health"), 200)
    assert health["message"] == "OK" and health["data"]["service"] == "tianwang-bridge"
