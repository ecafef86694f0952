"""`TaskReceiveSchema` (CONTRACTS.md §1 POST /api/task/receive): each bad input is a ValidationError naming
the field; good bodies load with the contract's defaults and keep unknown fields."""
from __future__ import annotations

import copy

import pytest
from marshmallow import ValidationError

from app.api.errors import flatten
from app.schemas import TaskReceiveSchema

CONTRACT_EXAMPLE = {
    "task_id": "TASK_20260227_001",
    "type": "send_file_after_reply",
    "customer": {"id": "customer_123", "name": "小明"},
    "acc_id": "shop_001",
    "trigger": {"type": "specified_customer_reply", "customer_id": "customer_123",
                "customer_name": "小明", "keyword": "好的", "exact_match": False},
    "action": {"type": "send_file", "file_url": "https://example.com/a.zip", "file_name": "a.zip",
               "message": "这是您要的文件"},
    "priority": "normal",
    "timeout_hours": 24,
    "max_retry": 3,
    "created_by": "设计师 lz",
}

MINIMAL = {
    "task_id": "T_1",
    "type": "reply",
    "trigger": {"type": "customer_reply", "keyword": "好的"},
    "action": {"type": "send_message", "message": "您好"},
}


def load(body: dict) -> dict:
    return TaskReceiveSchema().load(copy.deepcopy(body))


def body_with(base: dict = MINIMAL, **changes) -> dict:
    """`changes` keys are dotted paths; the value `DELETE` removes the field."""
    body = copy.deepcopy(base)
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = body
        for p in parents:
            node = node.setdefault(p, {})
        if value is DELETE:
            node.pop(leaf, None)
        else:
            node[leaf] = value
    return body


DELETE = object()


def error_at(messages, path: tuple):
    """The error list at `path` in marshmallow's nested messages (list indexes may be int keys)."""
    node = messages
    for part in path:
        assert isinstance(node, dict), f"no nested errors at {part!r} in {messages!r}"
        if part in node:
            node = node[part]
        elif isinstance(part, int) and str(part) in node:
            node = node[str(part)]
        else:
            raise AssertionError(f"no error at {path!r}: {messages!r}")
    if isinstance(node, dict) and set(node) == {"_schema"}:  # e.g. a nested field that is not an object
        node = node["_schema"]
    return node


def assert_invalid(body: dict, path: tuple) -> dict:
    with pytest.raises(ValidationError) as info:
        load(body)
    messages = info.value.messages
    found = error_at(messages, path)
    assert isinstance(found, list) and found and all(isinstance(m, str) and m for m in found), messages
    return messages


TIME_REACH = body_with(**{"trigger": {"type": "time_reach", "time": "2030-01-01 10:00:00"},
                          "customer": {"id": "customer_123"}, "acc_id": "shop_001"})
SCR = body_with(**{"trigger": {"type": "specified_customer_reply", "customer_id": "customer_123",
                               "keyword": "好的"}})
KEYWORDS = body_with(**{"trigger": {"type": "customer_keyword", "keywords": ["发票", "pdf"]}})

BAD = [
    # task_id
    ("task_id missing", body_with(task_id=DELETE), ("task_id",)),
    ("task_id empty", body_with(task_id=""), ("task_id",)),
    ("task_id 129 chars", body_with(task_id="T" * 129), ("task_id",)),
    ("task_id with space", body_with(task_id="TASK 1"), ("task_id",)),
    ("task_id with slash", body_with(task_id="TASK/1"), ("task_id",)),
    ("task_id with slash traversal", body_with(task_id="../etc"), ("task_id",)),
    ("task_id non-ascii", body_with(task_id="任务1"), ("task_id",)),
    ("task_id not a string", body_with(task_id=123), ("task_id",)),
    # type
    ("type missing", body_with(type=DELETE), ("type",)),
    ("type empty", body_with(type=""), ("type",)),
    ("type 65 chars", body_with(type="x" * 65), ("type",)),
    # trigger
    ("trigger missing", body_with(trigger=DELETE), ("trigger",)),
    ("trigger not an object", body_with(trigger="customer_reply"), ("trigger",)),
    ("trigger type missing", body_with(trigger={"keyword": "好的"}), ("trigger", "type")),
    ("trigger type unknown", body_with(trigger__type="customer_said"), ("trigger", "type")),
    ("reply keyword missing", body_with(trigger__keyword=DELETE), ("trigger", "keyword")),
    ("reply keyword empty", body_with(trigger__keyword=""), ("trigger", "keyword")),
    ("reply keyword whitespace", body_with(trigger__keyword="   "), ("trigger", "keyword")),
    ("reply keyword full-width space", body_with(trigger__keyword="\u3000"), ("trigger", "keyword")),
    ("scr keyword missing", body_with(SCR, trigger__keyword=DELETE), ("trigger", "keyword")),
    ("scr keyword whitespace", body_with(SCR, trigger__keyword=" \t "), ("trigger", "keyword")),
    ("scr customer_id missing", body_with(SCR, trigger__customer_id=DELETE), ("trigger", "customer_id")),
    ("scr customer_id blank", body_with(SCR, trigger__customer_id="  "), ("trigger", "customer_id")),
    ("keywords missing", body_with(KEYWORDS, trigger__keywords=DELETE), ("trigger", "keywords")),
    ("keywords not a list", body_with(KEYWORDS, trigger__keywords="发票"), ("trigger", "keywords")),
    ("keywords empty list", body_with(KEYWORDS, trigger__keywords=[]), ("trigger", "keywords")),
    ("keywords holds empty string", body_with(KEYWORDS, trigger__keywords=["", "发票"]),
     ("trigger", "keywords", 0)),
    ("keywords holds blank at 1", body_with(KEYWORDS, trigger__keywords=["发票", "  "]),
     ("trigger", "keywords", 1)),
    ("keywords holds a number", body_with(KEYWORDS, trigger__keywords=["发票", 5]), ("trigger", "keywords", 1)),
    ("keywords 51 items", body_with(KEYWORDS, trigger__keywords=[f"k{i}" for i in range(51)]),
     ("trigger", "keywords")),
    ("time missing", body_with(TIME_REACH, trigger__time=DELETE), ("trigger", "time")),
    ("time unparsable", body_with(TIME_REACH, trigger__time="tomorrow 10am"), ("trigger", "time")),
    ("time impossible date", body_with(TIME_REACH, trigger__time="2030-02-30 10:00:00"), ("trigger", "time")),
    ("custom_event without event", body_with(trigger={"type": "custom_event"}), ("trigger", "event")),
    ("lookback 3601", body_with(trigger__lookback_seconds=3601), ("trigger", "lookback_seconds")),
    ("lookback negative", body_with(trigger__lookback_seconds=-1), ("trigger", "lookback_seconds")),
    ("lookback string", body_with(trigger__lookback_seconds="30"), ("trigger", "lookback_seconds")),
    # timeout_hours / max_retry / priority
    ("timeout_hours 0", body_with(timeout_hours=0), ("timeout_hours",)),
    ("timeout_hours negative", body_with(timeout_hours=-5), ("timeout_hours",)),
    ("timeout_hours 721", body_with(timeout_hours=721), ("timeout_hours",)),
    ("timeout_hours 720.01", body_with(timeout_hours=720.01), ("timeout_hours",)),
    ("timeout_hours not numeric", body_with(timeout_hours="24h"), ("timeout_hours",)),
    ("timeout_hours bool", body_with(timeout_hours=True), ("timeout_hours",)),
    ("max_retry 11", body_with(max_retry=11), ("max_retry",)),
    ("max_retry -1", body_with(max_retry=-1), ("max_retry",)),
    ("max_retry string", body_with(max_retry="3"), ("max_retry",)),
    ("max_retry float", body_with(max_retry=2.5), ("max_retry",)),
    ("priority asap", body_with(priority="asap"), ("priority",)),
    ("priority upper case", body_with(priority="URGENT"), ("priority",)),
    # action
    ("action missing", body_with(action=DELETE), ("action",)),
    ("action type missing", body_with(action={"message": "hi"}), ("action", "type")),
    ("action type unknown", body_with(action={"type": "send_sms", "message": "hi"}), ("action", "type")),
    ("send_message without message", body_with(action={"type": "send_message"}), ("action", "message")),
    ("send_message blank message", body_with(action={"type": "send_message", "message": "  "}),
     ("action", "message")),
    ("send_file without file_url", body_with(action={"type": "send_file", "message": "hi"}), ("action", "file_url")),
    ("send_file ftp url", body_with(action={"type": "send_file", "file_url": "ftp://example.com/a.zip"}),
     ("action", "file_url")),
    ("send_file not a url", body_with(action={"type": "send_file", "file_url": "a.zip"}), ("action", "file_url")),
    ("send_file javascript url", body_with(action={"type": "send_file", "file_url": "javascript:alert(1)"}),
     ("action", "file_url")),
    ("send_link without link_url", body_with(action={"type": "send_link", "title": "t"}), ("action", "link_url")),
    ("send_link ftp url", body_with(action={"type": "send_link", "link_url": "ftp://example.com/"}),
     ("action", "link_url")),
    # customer consistency
    ("scr customer.id differs", body_with(SCR, customer={"id": "customer_999"}), ("customer", "id")),
    ("time_reach without customer", body_with(TIME_REACH, customer=DELETE), ("customer", "id")),
    ("time_reach customer without id", body_with(TIME_REACH, customer={"name": "小明"}), ("customer", "id")),
]


@pytest.mark.parametrize("body,path", [pytest.param(b, p, id=name) for name, b, p in BAD])
def test_bad_bodies(body, path):
    assert_invalid(body, path)


def test_bad_field_paths_flatten_to_dotted_names():
    messages = assert_invalid(body_with(KEYWORDS, trigger__keywords=["", "ok"]), ("trigger", "keywords", 0))
    assert "trigger.keywords.0" in flatten(messages)
    messages = assert_invalid(body_with(SCR, customer={"id": "other"}), ("customer", "id"))
    assert "customer.id" in flatten(messages)


def test_several_errors_are_reported_together():
    with pytest.raises(ValidationError) as info:
        load(body_with(task_id="bad id", priority="asap", max_retry=99))
    assert {"task_id", "priority", "max_retry"} <= set(info.value.messages)


@pytest.mark.parametrize("task_id", ["T1\n", "T" * 128 + "\n"])
def test_task_id_with_trailing_newline_is_rejected(task_id):
    assert_invalid(body_with(task_id=task_id), ("task_id",))


def test_file_url_with_trailing_newline_is_rejected():
    assert_invalid(body_with(action={"type": "send_file", "file_url": "https://example.com/a.zip\n"}),
                   ("action", "file_url"))


# -- good bodies --------------------------------------------------------------------------------------

def test_contract_example_loads():
    data = load(CONTRACT_EXAMPLE)
    assert data["task_id"] == "TASK_20260227_001"
    assert data["trigger"]["keyword"] == "好的"
    assert data["timeout_hours"] == 24
    assert data["customer"] == {"id": "customer_123", "name": "小明"}


def test_defaults():
    data = load(MINIMAL)
    assert data["priority"] == "normal"
    assert data["timeout_hours"] == 24
    assert data["max_retry"] == 3
    assert data["trigger"]["exact_match"] is False


def test_unknown_fields_are_kept_everywhere():
    body = body_with(**{"future_field": {"nested": [1, 2]}, "trigger__weight": 7, "action__tracking": "abc",
                        "customer": {"id": "c1", "vip": True}})
    data = load(body)
    assert data["future_field"] == {"nested": [1, 2]}
    assert data["trigger"]["weight"] == 7
    assert data["action"]["tracking"] == "abc"
    assert data["customer"]["vip"] is True


GOOD = [
    ("task_id 128 chars of every allowed class", body_with(task_id=("Az09_.:-" * 16))),
    ("task_id 1 char", body_with(task_id="x")),
    ("timeout_hours 720", body_with(timeout_hours=720)),
    ("timeout_hours fraction", body_with(timeout_hours=0.5)),
    ("max_retry 0", body_with(max_retry=0)),
    ("max_retry 10", body_with(max_retry=10)),
    ("lookback 0", body_with(trigger__lookback_seconds=0)),
    ("lookback 3600", body_with(trigger__lookback_seconds=3600)),
    ("keywords 50", body_with(KEYWORDS, trigger__keywords=[f"k{i}" for i in range(50)])),
    ("scr with equal customer.id", body_with(SCR, customer={"id": "customer_123"})),
    ("scr without customer", SCR),
    ("reply exact", body_with(trigger__exact_match=True)),
    ("payment without keywords", body_with(trigger={"type": "customer_payment"})),
    ("order with keywords", body_with(trigger={"type": "customer_order", "keywords": ["拍了"]})),
    ("time_reach", TIME_REACH),
    ("time_reach iso with offset", body_with(TIME_REACH, trigger__time="2030-01-01T10:00:00+08:00")),
    ("time_reach iso Z", body_with(TIME_REACH, trigger__time="2030-01-01T02:00:00Z")),
    ("custom_event with match", body_with(trigger={"type": "custom_event", "event": "done", "match": {"a": 1}})),
    ("send_file no name", body_with(action={"type": "send_file", "file_url": "http://e.com/a.zip"})),
    ("send_link", body_with(action={"type": "send_link", "link_url": "https://e.com/p", "title": "t"})),
    ("transfer", body_with(action={"type": "transfer_to_designer", "reason": "修图"})),
    ("each priority urgent", body_with(priority="urgent")),
    ("each priority low", body_with(priority="low")),
]


@pytest.mark.parametrize("body", [pytest.param(b, id=name) for name, b in GOOD])
def test_good_bodies(body):
    data = load(body)
    assert data["task_id"] == body["task_id"]
    assert data["trigger"]["type"] == body["trigger"]["type"]
    assert data["action"]["type"] == body["action"]["type"]
