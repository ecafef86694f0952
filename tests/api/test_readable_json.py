"""JSON answers carry Chinese as UTF-8 text an operator can read with curl, not as \\uXXXX escapes."""
from __future__ import annotations

import json

from tests.api.helpers import task_body
from tests.conftest import uid


def assert_readable(response, *texts: str) -> dict:
    assert response.headers["Content-Type"] == "application/json; charset=utf-8", response.headers
    raw = response.get_data()
    assert b"\\u" not in raw, raw[:300]
    decoded = raw.decode("utf-8")
    for text in texts:
        assert text in decoded, decoded[:300]
    return json.loads(decoded)


def test_answers_with_chinese_are_readable_utf8(client):
    task_id = uid()
    body = task_body(task_id, created_by="设计师 lz")
    assert_readable(client.post("/api/task/receive", json=body), "任务接收成功")
    status = assert_readable(client.get(f"/api/task/status/{task_id}"), "小明", "好的", "这是您要的文件", "设计师 lz")
    assert status["data"]["trigger"]["keyword"] == "好的"
    assert_readable(client.post("/api/task/cancel", json={"task_id": task_id, "reason": "客户取消订单"}),
                    "任务已取消")
    assert_readable(client.get(f"/api/task/{task_id}/events"), "客户取消订单")


def test_error_answers_are_readable_too(client):
    answer = assert_readable(client.get("/api/task/status/任务不存在"), "任务不存在")
    assert answer["code"] == 404
