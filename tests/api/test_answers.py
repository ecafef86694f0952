"""The OpenAPI document describes what each endpoint's `data` holds, and the answers are those schemas'
dumps (issue 14 item 7): every answer of every endpoint, with realistic data in it (unknown fields, a
finished task, a dispatch with steps, a 409, a 503), conforms to its documented schema, and the wire is
what the views build (CONTRACTS.md §1), nothing dropped or retyped on the way."""
from __future__ import annotations

import json

import pytest
import schemathesis
from sqlalchemy import update

from app import runtime
from app.infra.db import session_scope
from app.infra.timeutil import utcnow
from app.models import DispatchStep, Task
from app.views import task_view
from tests.api.helpers import assert_envelope, task_body
from tests.conftest import uid


@pytest.fixture
def document(client):
    doc = client.get("/api/openapi.json").get_json()
    return schemathesis.openapi.from_dict(doc)


def conforms(document, method: str, path: str, response) -> dict:
    """The answer matches the schema documented for its status; returns its body."""
    document[path][method].validate_response(response)
    return response.get_json()


def test_every_answer_conforms_to_its_documented_data_schema(client, document):
    task_id = uid()
    body = task_body(task_id, x_future={"nested": [1, "二"]})
    body["trigger"]["x_trigger_extra"] = "t"
    body["customer"]["level"] = "vip"
    received = conforms(document, "POST", "/api/task/receive", client.post("/api/task/receive", json=body))
    assert received["data"] == {"task_id": task_id, "status": "waiting"}
    other = dict(body, type="another")
    clash = client.post("/api/task/receive", json=other)
    assert conforms(document, "POST", "/api/task/receive", clash)["data"] == {"task_id": task_id, "status": "waiting"}

    finished = uid()
    client.post("/api/task/receive", json=task_body(finished))
    with session_scope() as session:  # as the action would leave it
        session.execute(update(Task).where(Task.task_id == finished).values(
            status="completed", triggered_at=utcnow(), completed_at=utcnow(), result={"sent": ["text", "file"]},
            triggered_by={"msg_id": "m-1", "customer_id": "customer_123"}))

    for path, url in (("/api/task/status/{task_id}", f"/api/task/status/{task_id}"),
                      ("/api/task/status/{task_id}", f"/api/task/status/{finished}"),
                      ("/api/task/list", "/api/task/list?page_size=100"),
                      ("/api/task/stats", "/api/task/stats"),
                      ("/api/task/{task_id}/events", f"/api/task/{task_id}/events"),
                      ("/api/task/{task_id}/explain", f"/api/task/{task_id}/explain"),
                      ("/api/health", "/api/health"),
                      ("/api/ready", "/api/ready")):  # 503 here: no listener or beat heartbeat
        conforms(document, "GET", path, client.get(url))

    cancel = conforms(document, "POST", "/api/task/cancel",
                      client.post("/api/task/cancel", json={"task_id": task_id, "reason": "不要了"}))
    assert cancel["data"] == {"task_id": task_id, "status": "cancelled"}
    refused = client.post("/api/task/cancel", json={"task_id": finished})
    assert refused.status_code == 409
    assert conforms(document, "POST", "/api/task/cancel", refused)["data"] == {"task_id": finished,
                                                                             "status": "completed"}
    event = client.post("/api/event", json={"event": "paid", "customer_id": "c1", "data": {"k": 1}})
    assert conforms(document, "POST", "/api/event", event)["data"] == {"event": "paid"}

    transfer = client.post("/api/dispatch/transfer", json={"customer_id": "c1", "acc_id": "shop_001",
                                                           "image_url": "https://example.com/a.jpg"})
    dispatch_id = conforms(document, "POST", "/api/dispatch/transfer", transfer)["data"]["dispatch_id"]
    with session_scope() as session:
        session.add(DispatchStep(dispatch_id=dispatch_id, step="find_designer", status="done", attempts=1,
                                 result={"designer": "橘子"}))
        session.add(DispatchStep(dispatch_id=dispatch_id, step="create", status="pending", attempts=2,
                                 last_error="timeout"))
    record = conforms(document, "GET", "/api/dispatch/{dispatch_id}", client.get(f"/api/dispatch/{dispatch_id}"))
    assert [s["step"] for s in record["data"]["steps"]] == ["find_designer", "create"]


def test_a_task_answer_is_the_view_whole_unknown_fields_included(client):
    task_id = uid()
    body = task_body(task_id, x_future={"nested": [1, "二"]}, x_flag=True)
    body["trigger"]["x_trigger_extra"] = "t"
    body["action"]["x_action_extra"] = 5
    body["customer"]["level"] = "vip"
    assert_envelope(client.post("/api/task/receive", json=body), 200)
    data = assert_envelope(client.get(f"/api/task/status/{task_id}"), 200, errors=False)["data"]
    zone = runtime.current().settings.app_timezone
    with session_scope() as session:
        view = json.loads(json.dumps(task_view(session.get(Task, task_id), zone)))
    assert data == view
    assert (data["x_future"], data["x_flag"]) == ({"nested": [1, "二"]}, True)
    assert data["trigger"]["x_trigger_extra"] == "t" and data["action"]["x_action_extra"] == 5
    assert data["customer"] == {"id": "customer_123", "name": "小明", "level": "vip"}
    listed = assert_envelope(client.get("/api/task/list"), 200)["data"]["items"]
    assert listed == [view]


def test_each_endpoint_documents_its_own_data(client):
    doc = client.get("/api/openapi.json").get_json()
    schemas = doc["components"]["schemas"]
    expected = {
        ("post", "/api/task/receive", "200"): "TaskRef", ("post", "/api/task/receive", "409"): "TaskRef",
        ("get", "/api/task/status/{task_id}", "200"): "Task", ("post", "/api/task/cancel", "200"): "TaskRef",
        ("post", "/api/task/cancel", "409"): "TaskRef", ("get", "/api/task/list", "200"): "TaskPage",
        ("get", "/api/task/stats", "200"): "TaskStats", ("get", "/api/task/{task_id}/events", "200"): "TaskHistory",
        ("post", "/api/event", "202"): "EventAccepted", ("post", "/api/dispatch/transfer", "202"): "DispatchAccepted",
        ("get", "/api/dispatch/{dispatch_id}", "200"): "Dispatch", ("get", "/api/health", "200"): "Health",
        ("get", "/api/ready", "200"): "Readiness", ("get", "/api/ready", "503"): "Readiness",
        ("get", "/api/task/{task_id}/explain", "200"): "Explanation",
        ("post", "/api/task/{task_id}/explain", "200"): "Explanation",
    }
    for (method, path, status), data in expected.items():
        ref = doc["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]["$ref"]
        envelope = schemas[ref.rsplit("/", 1)[-1]]
        assert set(envelope["properties"]) == {"code", "message", "data", "errors"}, (path, status)
        assert envelope["properties"]["data"] == {"$ref": f"#/components/schemas/{data}"}, (path, status)
    assert schemas["Task"]["additionalProperties"] is True  # the fields 天网 added come back
    assert {"steps", "status", "designer"} <= set(schemas["Dispatch"]["properties"])
    assert schemas["TaskPage"]["properties"]["items"]["items"] == {"$ref": "#/components/schemas/Task"}
