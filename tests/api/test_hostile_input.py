"""Input an attacker would send (issue 10, items 6, 7 and 10): deep nesting, over-long strings, URLs
that are not http(s). Each gets a 4xx in the envelope and nothing is written (CONTRACTS.md §1)."""
from __future__ import annotations

import json

import pytest

from app.api.guard import MAX_DEPTH
from tests.api.helpers import assert_envelope, assert_nothing_written, task_body
from tests.conftest import uid


def nested(depth: int, kind: str = "array") -> str:
    """A JSON value `depth` levels deep: [[[…]]] or {"a": {"a": …}}."""
    if kind == "array":
        return "[" * depth + "]" * depth
    return '{"a":' * (depth - 1) + "{}" + "}" * (depth - 1)


def receive_with_match(match: str) -> str:
    """The example body with a custom_event trigger whose `match` is the raw JSON given."""
    raw = json.dumps(task_body(uid(), trigger={"type": "custom_event", "event": "paid", "match": {}}))
    return raw.replace('"match": {}', f'"match": {match}', 1)


DEEP = [
    ("array-10000-in-unknown-field", "/api/task/receive",
     lambda: json.dumps(task_body(uid()))[:-1] + f', "x": {nested(10_000)}}}'),
    ("object-10000-in-unknown-field", "/api/task/receive",
     lambda: json.dumps(task_body(uid()))[:-1] + f', "x": {nested(10_000, "object")}}}'),
    ("array-10000-in-trigger.match", "/api/task/receive", lambda: receive_with_match(f'{{"k": {nested(10_000)}}}')),
    ("object-10000-in-trigger.match", "/api/task/receive",
     lambda: receive_with_match(f'{{"k": {nested(10_000, "object")}}}')),
    ("array-500-in-trigger.match", "/api/task/receive", lambda: receive_with_match(f'{{"k": {nested(500)}}}')),
    ("object-just-past-the-limit-in-trigger.match", "/api/task/receive",
     lambda: receive_with_match(nested(MAX_DEPTH - 1, "object"))),
    ("body-is-10000-arrays", "/api/task/receive", lambda: nested(10_000)),
    ("event-data", "/api/event", lambda: f'{{"event": "paid", "data": {{"k": {nested(10_000)}}}}}'),
    ("cancel", "/api/task/cancel", lambda: f'{{"task_id": "T1", "reason": {nested(10_000, "object")}}}'),
    ("dispatch", "/api/dispatch/transfer", lambda: f'{{"customer_id": "c1", "x": {nested(10_000)}}}'),
]


@pytest.mark.parametrize("path,raw", [pytest.param(p, r, id=i) for i, p, r in DEEP])
def test_deep_nesting_is_400_in_the_envelope_and_nothing_is_written(client, rdb, path, raw):
    response = client.post(path, data=raw(), content_type="application/json")
    answer = assert_envelope(response, 400)
    assert answer["data"] is None and "nested deeper" in answer["message"], answer
    assert_nothing_written(rdb)


def test_nesting_up_to_the_limit_is_accepted_and_kept(client):
    # body (1) > trigger (2) > match (3) > …: a match object whose innermost level is level MAX_DEPTH
    raw = receive_with_match(nested(MAX_DEPTH - 2, "object"))
    response = client.post("/api/task/receive", data=raw, content_type="application/json")
    answer = assert_envelope(response, 200)
    stored = client.get(f"/api/task/status/{answer['data']['task_id']}").get_json()["data"]
    assert stored["trigger"]["match"] == json.loads(raw)["trigger"]["match"]


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json(client, rdb, constant):
    raw = json.dumps(task_body(uid()))[:-1] + f', "x_note": {constant}}}'
    answer = assert_envelope(client.post("/api/task/receive", data=raw, content_type="application/json"), 400)
    assert answer["message"] == "body is not valid JSON"
    assert_nothing_written(rdb)
