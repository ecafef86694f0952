"""`flatten()`: marshmallow's nested error messages as dotted field paths (CONTRACTS.md §1 Envelope)."""
from __future__ import annotations

from app.api.errors import flatten


def test_nested_paths():
    messages = {
        "trigger": {"keyword": ["required for specified_customer_reply"],
                    "keywords": {0: ["must not be empty or whitespace"], 3: ["Not a valid string."]}},
        "customer": {"id": ["differs from trigger.customer_id"]},
        "task_id": ["Missing data for required field."],
    }
    assert flatten(messages) == {
        "trigger.keyword": ["required for specified_customer_reply"],
        "trigger.keywords.0": ["must not be empty or whitespace"],
        "trigger.keywords.3": ["Not a valid string."],
        "customer.id": ["differs from trigger.customer_id"],
        "task_id": ["Missing data for required field."],
    }


def test_schema_errors_name_their_parent():
    assert flatten({"trigger": {"_schema": ["Invalid input type."]}}) == {"trigger": ["Invalid input type."]}
    assert flatten({"_schema": ["bad body"]}) == {"body": ["bad body"]}


def test_parent_and_schema_errors_merge():
    out = flatten({"trigger": {"_schema": ["a"], "type": ["b"]}, "_schema": ["c"]})
    assert out == {"trigger": ["a"], "trigger.type": ["b"], "body": ["c"]}


def test_string_and_list_at_top():
    assert flatten(["oops"]) == {"body": ["oops"]}
    assert flatten("oops") == {"body": ["oops"]}


def test_list_of_dicts():
    assert flatten({"items": [{"a": ["x"]}, {"a": ["y"]}]}) == {"items.a": ["x", "y"]}


def test_deep_nesting_and_prefix():
    assert flatten({"a": {"b": {"c": {"d": ["deep"]}}}}) == {"a.b.c.d": ["deep"]}
    assert flatten({"x": ["e"]}, "json") == {"json.x": ["e"]}


def test_real_schema_errors():
    import pytest
    from marshmallow import ValidationError

    from app.schemas import TaskReceiveSchema

    with pytest.raises(ValidationError) as info:
        TaskReceiveSchema().load({"task_id": "T", "type": "x",
                                  "trigger": {"type": "customer_keyword", "keywords": ["ok", ""]},
                                  "action": {"type": "send_file"}})
    flat = flatten(info.value.messages)
    assert set(flat) == {"trigger.keywords.1", "action.file_url"}
    assert all(isinstance(v, list) and v and all(isinstance(m, str) for m in v) for v in flat.values())
