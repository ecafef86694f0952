"""Values a legacy caller sends loosely are taken where their meaning is unambiguous, and stored in the
contract's types (what matching reads); everything else stays refused (CONTRACTS.md §1)."""
from __future__ import annotations

import json

import pytest

from app.infra.db import session_scope
from app.models import Task
from tests.api.helpers import assert_envelope, reply_body, task_body
from tests.conftest import uid


def stored(task_id: str) -> Task:
    with session_scope() as session:
        return session.get(Task, task_id)


@pytest.mark.parametrize("changes, field, value", [
    ({"customer": {"id": 123456, "name": "小明"}}, ("customer", "id"), "123456"),
    ({"timeout_hours": "24"}, ("timeout_hours",), 24),
    ({"timeout_hours": "1.5"}, ("timeout_hours",), 1.5),
    ({"trigger": {"type": "customer_reply", "keyword": "好的", "exact_match": "false"}}, ("trigger", "exact_match"),
     False),
    ({"trigger": {"type": "customer_reply", "keyword": "好的", "exact_match": "TRUE"}}, ("trigger", "exact_match"),
     True),
    ({"trigger": {"type": "customer_reply", "keyword": "好的", "exact_match": "0"}}, ("trigger", "exact_match"),
     False),
    ({"trigger": {"type": "customer_reply", "keyword": "好的", "exact_match": 0}}, ("trigger", "exact_match"), False),
])
def test_loose_values_are_stored_in_the_contracts_types(client, changes, field, value):
    task_id = uid()
    body = {**reply_body(task_id), **changes}
    assert_envelope(client.post("/api/task/receive", json=body), 200)
    raw = stored(task_id).raw
    for key in field:
        raw = raw[key]
    assert raw == value and type(raw) is type(value)


def test_numeric_customer_ids_bind_the_trigger_as_text(client):
    task_id = uid()
    body = task_body(task_id, customer={"id": 123, "name": "小明"})
    body["trigger"]["customer_id"] = 123
    assert_envelope(client.post("/api/task/receive", json=body), 200)
    task = stored(task_id)
    assert (task.customer_id, task.specified_customer_id, task.trigger["customer_id"]) == ("123", "123", "123")


def test_two_spellings_of_one_task_are_the_same_task(client):
    task_id = uid()
    loose = {**reply_body(task_id, customer=None), "customer": {"id": 42}, "timeout_hours": "24"}
    strict = {**reply_body(task_id, customer=None), "customer": {"id": "42"}, "timeout_hours": 24}
    assert_envelope(client.post("/api/task/receive", json=loose), 200)
    again = assert_envelope(client.post("/api/task/receive", json=strict), 200)  # a repeat, not a 409
    assert again["data"]["status"] == "waiting"


@pytest.mark.parametrize("changes, path", [
    ({"timeout_hours": "24h"}, "timeout_hours"), ({"timeout_hours": "0"}, "timeout_hours"),
    ({"timeout_hours": "721"}, "timeout_hours"), ({"timeout_hours": "1e3"}, "timeout_hours"),
    ({"timeout_hours": "NaN"}, "timeout_hours"), ({"timeout_hours": " 24"}, "timeout_hours"),
    ({"customer": {"id": 12.5}}, "customer.id"), ({"customer": {"name": 7}}, "customer.name"),
    ({"customer": {"id": True}}, "customer.id"), ({"customer": {"id": [1]}}, "customer.id"),
    ({"trigger": {"type": "customer_reply", "keyword": "好的", "exact_match": "maybe"}}, "trigger.exact_match"),
    ({"trigger": {"type": "customer_reply", "keyword": "好的", "exact_match": "tRuE"}}, "trigger.exact_match"),
    ({"trigger": {"type": "customer_reply", "keyword": "好的", "exact_match": 2}}, "trigger.exact_match"),
])
def test_values_with_no_single_meaning_stay_refused(client, changes, path):
    body = {**reply_body(uid()), **changes}
    answer = assert_envelope(client.post("/api/task/receive", json=body), 422, errors=True)
    assert path in answer["errors"], answer


def test_a_custom_event_for_a_numeric_customer_id_is_matched_as_text(client, rdb):
    answer = assert_envelope(client.post("/api/event", json={"event": "paid", "customer_id": 123, "data": {}}), 202)
    assert answer["data"] == {"event": "paid"}
    handed = [json.loads(m) for m in rdb.lrange("tw:inbox:match", 0, -1)]  # what matching will take
    assert [(a["event"]["event"], a["event"]["from_id"]) for a in handed] == [("paid", "123")]
