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


# -- length caps: every string field (item 7) ---------------------------------------------------------

def with_trigger(**fields):
    return lambda value: task_body(uid(), trigger={**fields, **value})


def with_action(**fields):
    return lambda value: task_body(uid(), action={**fields, **value})


SCR = {"type": "specified_customer_reply", "customer_id": "customer_123", "keyword": "好的"}
URL = "https://example.com/"
# (field path, cap, body from {field: value}, a value of `cap` characters built from a filler)
CAPS = [
    ("trigger.customer_name", 128, lambda v: with_trigger(**SCR)({"customer_name": v}), lambda n: "名" * n),
    ("trigger.keyword", 32, lambda v: with_trigger(type="customer_reply")({"keyword": v}), lambda n: "好" * n),
    ("trigger.keywords.1", 32, lambda v: with_trigger(type="customer_keyword")({"keywords": ["好的", v]}),
     lambda n: "k" * n),
    ("trigger.event", 128, lambda v: with_trigger(type="custom_event")({"event": v}), lambda n: "e" * n),
    ("action.message", 4096, lambda v: with_action(type="send_message")({"message": v}), lambda n: "字" * n),
    ("action.file_url", 2048, lambda v: with_action(type="send_file")({"file_url": v}),
     lambda n: URL + "a" * (n - len(URL))),
    ("action.file_name", 255, lambda v: with_action(type="send_file", file_url=URL)({"file_name": v}),
     lambda n: "f" * n),
    ("action.link_url", 2048, lambda v: with_action(type="send_link")({"link_url": v}),
     lambda n: URL + "a" * (n - len(URL))),
    ("action.title", 256, lambda v: with_action(type="send_link", link_url=URL)({"title": v}), lambda n: "t" * n),
    ("action.desc", 1000, lambda v: with_action(type="send_link", link_url=URL)({"desc": v}), lambda n: "d" * n),
    ("action.reason", 1000, lambda v: with_action(type="transfer_to_designer")({"reason": v}), lambda n: "r" * n),
    ("action.image_url", 2048, lambda v: with_action(type="transfer_to_designer")({"image_url": v}),
     lambda n: URL + "a" * (n - len(URL))),
]


@pytest.mark.parametrize("path,cap,build,filler", [pytest.param(*c, id=c[0]) for c in CAPS])
def test_a_string_at_its_cap_is_stored_and_one_past_it_is_422(client, rdb, path, cap, build, filler):
    over = client.post("/api/task/receive", json=build(filler(cap + 1)))
    answer = assert_envelope(over, 422, errors=True)
    assert list(answer["errors"]) == [path], answer
    assert_nothing_written(rdb)
    at_cap = assert_envelope(client.post("/api/task/receive", json=build(filler(cap))), 200)
    stored = client.get(f"/api/task/status/{at_cap['data']['task_id']}").get_json()["data"]
    section, field = path.split(".")[:2]
    value = stored[section][field]
    assert len(value[-1] if isinstance(value, list) else value) == cap


def test_a_customer_name_of_10000_characters_is_422_not_a_database_error(client, rdb):
    body = task_body(uid(), trigger={**SCR, "customer_name": "x" * 10_000})
    answer = assert_envelope(client.post("/api/task/receive", json=body), 422, errors=True)
    assert answer["errors"] == {"trigger.customer_name": ["Longer than maximum length 128."]}
    assert_nothing_written(rdb)


@pytest.mark.parametrize("keyword", ["\ufdfa\ufdfa", "\u3300" * 9], ids=["arabic-ligature", "squared-katakana"])
def test_a_keyword_that_normalises_past_the_cap_is_422(client, rdb, keyword):
    body = task_body(uid(), trigger={"type": "customer_reply", "keyword": keyword})
    answer = assert_envelope(client.post("/api/task/receive", json=body), 422, errors=True)
    assert answer["errors"] == {"trigger.keyword": ["longer than 32 characters once normalised"]}
    assert_nothing_written(rdb)


@pytest.mark.parametrize("query,path", [("customer_id=" + "c" * 129, "customer_id"), ("type=" + "t" * 65, "type")])
def test_list_filters_past_their_cap_are_422(client, query, path):
    answer = assert_envelope(client.get(f"/api/task/list?{query}"), 422, errors=True)
    assert list(answer["errors"]) == [path]


def test_every_string_a_request_may_carry_has_a_documented_cap(app):
    doc = app.test_client().get("/api/openapi.json").get_json()
    schemas = doc["components"]["schemas"]
    uncapped = []

    def walk(schema: dict, where: str) -> None:
        if "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[-1]
            walk(schemas[name], name)
        elif schema.get("type") == "string":
            if "maxLength" not in schema and "enum" not in schema:
                uncapped.append(where)
        elif schema.get("type") == "array":
            walk(schema["items"], where + "[]")
        for name, prop in schema.get("properties", {}).items():
            walk(prop, f"{where}.{name}")

    for path, item in doc["paths"].items():
        for parameter in item.get("parameters", []):  # in the path
            walk(parameter["schema"], f"{path} {parameter['name']}")
        for method, operation in item.items():
            if method == "parameters":
                continue
            for parameter in operation.get("parameters", []):
                walk(parameter["schema"], f"{method.upper()} {path} ?{parameter['name']}")
            body = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
            if body:
                walk(body["schema"], f"{method.upper()} {path}")
    assert uncapped == []
    assert schemas["Trigger"]["properties"]["customer_name"]["maxLength"] == 128  # VARCHAR(128)


# -- image_url: an http(s) URL (item 10) -------------------------------------------------------------

NOT_HTTP = ["javascript:alert(1)", "file:///etc/passwd", "JAVASCRIPT://%0aalert(1)", "data:text/html,x",
            "ftp://example.com/a.png", "//example.com/a.png", ""]


@pytest.mark.parametrize("image_url", NOT_HTTP)
def test_a_transfer_image_url_that_is_not_http_is_422(client, rdb, image_url):
    answer = assert_envelope(client.post("/api/dispatch/transfer", json={
        "customer_id": "c1", "acc_id": "shop_001", "image_url": image_url}), 422, errors=True)
    assert answer["errors"] == {"image_url": ["must be an http or https URL"]}
    body = task_body(uid(), action={"type": "transfer_to_designer", "image_url": image_url})
    answer = assert_envelope(client.post("/api/task/receive", json=body), 422, errors=True)
    assert answer["errors"] == {"action.image_url": ["must be an http or https URL"]}
    assert_nothing_written(rdb)


@pytest.mark.parametrize("image_url", ["https://example.com/a.jpg", "HTTP://example.com/a.png?x=1", None])
def test_a_transfer_with_an_http_image_url_or_none_is_taken(client, image_url):
    answer = assert_envelope(client.post("/api/dispatch/transfer", json={
        "customer_id": "c1", "acc_id": "shop_001", "image_url": image_url}), 202)
    record = client.get(f"/api/dispatch/{answer['data']['dispatch_id']}").get_json()["data"]
    assert record["image_url"] == image_url
    body = task_body(uid(), action={"type": "transfer_to_designer", "image_url": image_url})
    assert_envelope(client.post("/api/task/receive", json=body), 200)
