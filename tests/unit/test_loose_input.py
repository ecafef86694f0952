"""`loosen_task_body`: the loosely typed values a legacy caller sends, read into the contract's types
before validation; nothing else is touched, and the caller's body is never changed."""
from __future__ import annotations

import copy

import pytest
from marshmallow import ValidationError

from app.schemas import CustomEventSchema, TaskReceiveSchema, loosen_task_body

BODY = {"task_id": "T_1", "type": "reply", "customer": {"id": "c_1", "name": "小明"},
        "trigger": {"type": "specified_customer_reply", "customer_id": "c_1", "keyword": "好的"},
        "action": {"type": "send_message", "message": "您好"}, "timeout_hours": 24}


def with_(**changes) -> dict:
    body = copy.deepcopy(BODY)
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = body
        for part in parents:
            node = node[part]
        node[leaf] = value
    return body


@pytest.mark.parametrize("changes, path, read", [
    ({"customer__id": 123, "trigger__customer_id": 123}, ("customer", "id"), "123"),
    ({"customer__id": 123, "trigger__customer_id": 123}, ("trigger", "customer_id"), "123"),
    ({"timeout_hours": "24"}, ("timeout_hours",), 24),
    ({"timeout_hours": "0.5"}, ("timeout_hours",), 0.5),
    ({"timeout_hours": "+12."}, ("timeout_hours",), 12),
    ({"trigger__exact_match": "false"}, ("trigger", "exact_match"), False),
    ({"trigger__exact_match": "True"}, ("trigger", "exact_match"), True),
    ({"trigger__exact_match": 1}, ("trigger", "exact_match"), True),
])
def test_loose_values_are_read_as_the_contract_types(changes, path, read):
    body = with_(**changes)
    original = copy.deepcopy(body)
    loosened = loosen_task_body(body)
    value = loosened
    for key in path:
        value = value[key]
    assert value == read and type(value) is type(read)
    assert body == original  # the caller's dict is left as it was
    TaskReceiveSchema().load(loosened)


@pytest.mark.parametrize("changes", [{}, {"timeout_hours": "24h"}, {"timeout_hours": "1e3"}, {"timeout_hours": "٢٤"},
                                     {"customer__id": True}, {"customer__id": 1.5}, {"trigger__exact_match": "maybe"},
                                     {"customer__name": 5}])
def test_anything_else_is_left_for_validation_to_judge(changes):
    body = with_(**changes)
    assert loosen_task_body(body) is body


@pytest.mark.parametrize("not_an_object", [None, [], "body", 5])
def test_a_body_that_is_not_an_object_passes_through(not_an_object):
    assert loosen_task_body(not_an_object) is not_an_object


def test_the_schema_loosens_by_itself_too():
    loaded = TaskReceiveSchema().load(with_(customer__id=7, trigger__customer_id=7, timeout_hours="48"))
    assert (loaded["customer"]["id"], loaded["trigger"]["customer_id"], loaded["timeout_hours"]) == ("7", "7", 48)
    with pytest.raises(ValidationError) as info:
        TaskReceiveSchema().load(with_(timeout_hours="721"))
    assert "timeout_hours" in info.value.messages


def test_a_custom_events_numeric_customer_id_is_text():
    assert CustomEventSchema().load({"event": "paid", "customer_id": 123})["customer_id"] == "123"
    with pytest.raises(ValidationError):
        CustomEventSchema().load({"event": "paid", "customer_id": 1.5})
