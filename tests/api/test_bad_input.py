"""CONTRACTS.md §1: every bad input gets the right 4xx in the envelope, and nothing is written.

"Nothing written" means: the tasks, task_events and callback_outbox tables stay empty and Redis
(DB 8, flushed before each test) holds no key at all.
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from devkit.processes import API_KEY
from tests.api.helpers import assert_envelope, assert_nothing_written, counts, task_body
from tests.conftest import uid

SHANGHAI = ZoneInfo("Asia/Shanghai")
MiB = 1024 * 1024


# -- body builders: each takes a fresh task_id and returns the JSON body -----------------------------

def without(*path):
    def build(task_id):
        body = task_body(task_id)
        node = body
        for part in path[:-1]:
            node = node[part]
        del node[path[-1]]
        return body
    return build


def top(**fields):
    return lambda task_id: task_body(task_id, **fields)


def trig(**fields):
    """The example body with its trigger replaced by `fields`."""
    return lambda task_id: task_body(task_id, trigger=fields)


def act(**fields):
    return lambda task_id: task_body(task_id, action=fields)


def time_reach(when):
    """A time_reach task; `when()` gives the trigger time string (computed at request time)."""
    return lambda task_id: task_body(task_id, trigger={"type": "time_reach", "time": when()})


def _iso_minutes_ago(minutes):
    return lambda: (datetime.now(SHANGHAI) - timedelta(minutes=minutes)).isoformat(timespec="seconds")


def _naive_shanghai_minutes_ago(minutes):
    return lambda: (datetime.now(SHANGHAI) - timedelta(minutes=minutes)).strftime("%Y-%m-%d %H:%M:%S")


def _naive_utc_wall_clock_in(hours):
    # UTC wall clock + 1 h: read in UTC it would be in the future; read in Asia/Shanghai (as the
    # contract says) it is 7 hours in the past, so it must be refused.
    return lambda: (datetime.now(timezone.utc) + timedelta(hours=hours)).strftime("%Y-%m-%d %H:%M:%S")


# (id, body builder, expected field path; a path ending in ".*" means "this path or below it")
INVALID_FIELDS = [
    ("task_id-missing", without("task_id"), "task_id"),
    ("task_id-empty", top(task_id=""), "task_id"),
    ("task_id-129-chars", top(task_id="A" * 129), "task_id"),
    ("task_id-space", top(task_id="TASK 1"), "task_id"),
    ("task_id-slash", top(task_id="TASK/1"), "task_id"),
    ("task_id-number", top(task_id=12345), "task_id"),
    ("task_id-non-ascii", top(task_id="任务1"), "task_id"),
    ("type-missing", without("type"), "type"),
    ("type-empty", top(type=""), "type"),
    ("type-65-chars", top(type="t" * 65), "type"),
    ("trigger-missing", without("trigger"), "trigger"),
    ("trigger-not-object", top(trigger="customer_reply"), "trigger"),
    ("trigger-type-unknown", trig(type="customer_smiles", keyword="好的"), "trigger.type"),
    ("trigger-type-missing", trig(keyword="好的"), "trigger.type"),
    ("keyword-missing", trig(type="specified_customer_reply", customer_id="customer_123"), "trigger.keyword"),
    ("keyword-empty", trig(type="specified_customer_reply", customer_id="customer_123", keyword=""),
     "trigger.keyword"),
    ("keyword-whitespace", trig(type="specified_customer_reply", customer_id="customer_123", keyword="   "),
     "trigger.keyword"),
    ("reply-keyword-missing", trig(type="customer_reply"), "trigger.keyword"),
    ("reply-keyword-fullwidth-space", trig(type="customer_reply", keyword="\u3000 "), "trigger.keyword"),
    ("specified-customer_id-missing", trig(type="specified_customer_reply", keyword="好的"),
     "trigger.customer_id"),
    ("specified-customer-differs", lambda t: task_body(t, customer={"id": "someone_else"}), "customer.id"),
    ("keywords-missing", trig(type="customer_keyword"), "trigger.keywords"),
    ("keywords-not-list", trig(type="customer_keyword", keywords="好的"), "trigger.keywords"),
    ("keywords-object", trig(type="customer_keyword", keywords={"a": "好的"}), "trigger.keywords"),
    ("keywords-empty-list", trig(type="customer_keyword", keywords=[]), "trigger.keywords"),
    ("keywords-empty-string", trig(type="customer_keyword", keywords=["好的", ""]), "trigger.keywords.*"),
    ("keywords-whitespace-string", trig(type="customer_keyword", keywords=[" "]), "trigger.keywords.*"),
    ("keywords-51", trig(type="customer_keyword", keywords=[f"k{i}" for i in range(51)]), "trigger.keywords"),
    ("lookback-3601", trig(type="customer_reply", keyword="好的", lookback_seconds=3601),
     "trigger.lookback_seconds"),
    ("time-missing", trig(type="time_reach"), "trigger.time"),
    ("time-unparsable", time_reach(lambda: "tomorrow morning"), "trigger.time"),
    ("time-bad-date", time_reach(lambda: "2026-02-30 10:00:00"), "trigger.time"),
    ("time-iso-10-minutes-ago", time_reach(_iso_minutes_ago(10)), "trigger.time"),
    ("time-naive-shanghai-10-minutes-ago", time_reach(_naive_shanghai_minutes_ago(10)), "trigger.time"),
    ("time-naive-is-shanghai-not-utc", time_reach(_naive_utc_wall_clock_in(1)), "trigger.time"),
    ("time_reach-without-customer", lambda t: _drop_customer(task_body(t, trigger={
        "type": "time_reach", "time": (datetime.now(SHANGHAI) + timedelta(hours=1)).isoformat()})),
     "customer.id"),
    ("custom_event-without-event", trig(type="custom_event"), "trigger.event"),
    ("timeout_hours-0", top(timeout_hours=0), "timeout_hours"),
    ("timeout_hours-negative", top(timeout_hours=-1), "timeout_hours"),
    ("timeout_hours-721", top(timeout_hours=721), "timeout_hours"),
    ("timeout_hours-720.5", top(timeout_hours=720.5), "timeout_hours"),
    ("timeout_hours-not-numeric", top(timeout_hours="24h"), "timeout_hours"),
    ("timeout_hours-bool", top(timeout_hours=True), "timeout_hours"),
    ("max_retry-11", top(max_retry=11), "max_retry"),
    ("max_retry-negative", top(max_retry=-1), "max_retry"),
    ("max_retry-string", top(max_retry="3"), "max_retry"),
    ("max_retry-fraction", top(max_retry=2.5), "max_retry"),
    ("priority-asap", top(priority="asap"), "priority"),
    ("priority-uppercase", top(priority="HIGH"), "priority"),
    ("priority-null", top(priority=None), "priority"),
    ("action-missing", without("action"), "action"),
    ("action-type-unknown", act(type="send_email", message="hi"), "action.type"),
    ("send_file-without-file_url", act(type="send_file", file_name="a.zip"), "action.file_url"),
    ("send_file-ftp", act(type="send_file", file_url="ftp://example.com/a.zip"), "action.file_url"),
    ("send_file-javascript", act(type="send_file", file_url="javascript:alert(1)"), "action.file_url"),
    ("send_message-without-message", act(type="send_message"), "action.message"),
    ("send_message-blank-message", act(type="send_message", message="  "), "action.message"),
    ("send_link-without-link_url", act(type="send_link", title="t"), "action.link_url"),
    ("customer-not-object", top(customer="customer_123"), "customer"),
]


def test_task_id_with_trailing_newline_is_422(client, rdb):
    """A regex ending in "$" lets "TASK_1\\n" through; the contract allows only A-Z a-z 0-9 _ . : -."""
    answer = assert_envelope(client.post("/api/task/receive", json=task_body("TASK_1\n")), 422, errors=True)
    assert "task_id" in answer["errors"]
    assert_nothing_written(rdb)


def test_time_reach_without_any_acc_id_is_422(db_url, redis_base, rdb):
    """No acc_id in the task and no QINGJIAN_DEFAULT_ACC_ID configured: a time_reach task cannot send."""
    from app import create_app
    from tests.conftest import make_settings

    bare = create_app(make_settings(db_url, f"{redis_base}/8", qingjian_default_acc_id=None))
    body = _drop_key(task_body(uid(), trigger={
        "type": "time_reach", "time": (datetime.now(SHANGHAI) + timedelta(hours=1)).isoformat()}), "acc_id")
    response = bare.test_client().post("/api/task/receive", json=body, headers={"X-API-Key": API_KEY})
    answer = assert_envelope(response, 422, errors=True)
    assert "acc_id" in answer["errors"], answer
    assert_nothing_written(rdb)
    # With an acc_id in the task it is accepted by the same app.
    body["acc_id"] = "shop_009"
    response = bare.test_client().post("/api/task/receive", json=body, headers={"X-API-Key": API_KEY})
    assert_envelope(response, 200)


def _drop_key(body, key):
    body.pop(key, None)
    return body


def _drop_customer(body):
    body.pop("customer", None)
    return body


def _has_path(errors: dict, expected: str) -> bool:
    if expected.endswith(".*"):
        base = expected[:-2]
        return any(p == base or p.startswith(base + ".") for p in errors)
    return expected in errors


@pytest.mark.parametrize("build,path", [pytest.param(b, p, id=i) for i, b, p in INVALID_FIELDS])
def test_invalid_field_is_422_with_its_path_and_nothing_is_written(client, rdb, build, path):
    body = build(uid())
    response = client.post("/api/task/receive", json=body)
    answer = assert_envelope(response, 422, errors=True)
    assert answer["data"] is None
    assert _has_path(answer["errors"], path), answer["errors"]
    assert_nothing_written(rdb)


# -- malformed bodies: 400 / 413 ----------------------------------------------------------------

MALFORMED = [
    ("not-json", b"{task_id: TASK_1", "application/json"),
    ("truncated-json", json.dumps(task_body("TASK_X"))[:-5].encode(), "application/json"),
    ("json-array", json.dumps([task_body("TASK_X")]).encode(), "application/json"),
    ("json-string", b'"TASK_X"', "application/json"),
    ("json-number", b"42", "application/json"),
    ("json-null", b"null", "application/json"),
    ("empty-body", b"", "application/json"),
    ("not-utf8", b'{"task_id": "\xff\xfe"}', "application/json"),
    ("form-encoded", b"task_id=TASK_X&type=t", "application/x-www-form-urlencoded"),
]


@pytest.mark.parametrize("raw,content_type", [pytest.param(r, c, id=i) for i, r, c in MALFORMED])
def test_malformed_body_is_400_and_nothing_is_written(client, rdb, raw, content_type):
    response = client.post("/api/task/receive", data=raw, content_type=content_type)
    answer = assert_envelope(response, 400)
    assert answer["data"] is None
    assert_nothing_written(rdb)


@pytest.mark.parametrize("constant", ["Infinity", "-Infinity", "NaN"])
def test_json_with_non_standard_numbers_is_400_and_nothing_is_written(client, rdb, constant):
    """`NaN`/`Infinity` are not JSON (RFC 8259 §6), and CONTRACTS.md §1 answers a body that is not JSON
    with 400."""
    raw = json.dumps(task_body(uid())).replace('"timeout_hours": 24', f'"timeout_hours": {constant}')
    assert constant in raw
    response = client.post("/api/task/receive", data=raw, content_type="application/json")
    assert_envelope(response, 400)
    assert_nothing_written(rdb)


@pytest.mark.parametrize("size", [MiB + 1, int(1.1 * MiB)])
def test_body_over_1_mib_is_413_and_nothing_is_written(client, rdb, size):
    body = task_body(uid(), padding="")
    raw = json.dumps(body)
    raw = raw[:-1] + ', "pad2": "' + "x" * (size - len(raw) - 11) + '"}'
    assert len(raw.encode()) >= size > MiB
    json.loads(raw)  # valid JSON: only its size is wrong
    response = client.post("/api/task/receive", data=raw, content_type="application/json")
    answer = assert_envelope(response, 413)
    assert answer["data"] is None
    assert_nothing_written(rdb)


def test_body_of_almost_1_mib_is_accepted(client, rdb):
    body = task_body(uid())
    raw = json.dumps(body)
    raw = raw[:-1] + ', "pad": "' + "x" * (MiB - len(raw) - 20) + '"}'
    assert MiB - 100 < len(raw.encode()) <= MiB
    response = client.post("/api/task/receive", data=raw, content_type="application/json")
    assert_envelope(response, 200)


# -- authentication ------------------------------------------------------------------------------

@pytest.mark.parametrize("headers", [
    pytest.param({}, id="no-key"),
    pytest.param({"X-API-Key": "wrong-key"}, id="wrong-key"),
    pytest.param({"X-API-Key": API_KEY + "x"}, id="key-with-suffix"),
    pytest.param({"X-API-Key": API_KEY[:-1]}, id="key-prefix"),
    pytest.param({"Authorization": "Bearer wrong-key"}, id="wrong-bearer"),
    pytest.param({"Authorization": API_KEY}, id="authorization-without-bearer"),
    pytest.param({"Authorization": f"Basic {API_KEY}"}, id="basic-scheme"),
])
def test_missing_or_wrong_key_is_401_and_nothing_is_written(app, rdb, headers):
    anonymous = app.test_client()
    response = anonymous.post("/api/task/receive", json=task_body(uid()), headers=headers)
    answer = assert_envelope(response, 401)
    assert answer["data"] is None
    assert_nothing_written(rdb)


@pytest.mark.parametrize("path", ["/api/task/list", "/api/task/stats", "/api/task/status/X",
                                  "/api/task/X/events"])
def test_reading_endpoints_need_the_key(app, path):
    assert_envelope(app.test_client().get(path), 401)


def test_malformed_body_without_key_is_401_not_400(app, rdb):
    response = app.test_client().post("/api/task/receive", data=b"not json", content_type="application/json")
    assert_envelope(response, 401)
    assert_nothing_written(rdb)


def test_key_as_bearer_token_is_accepted(app, rdb):
    task_id = uid()
    response = app.test_client().post("/api/task/receive", json=task_body(task_id),
                                      headers={"Authorization": f"Bearer {API_KEY}"})
    answer = assert_envelope(response, 200)
    assert answer["data"] == {"task_id": task_id, "status": "waiting"}
    assert counts()["tasks"] == 1


# -- unknown fields are kept and ignored -------------------------------------------------------

def test_unknown_fields_are_kept_and_ignored(client, rdb):
    task_id = uid()
    body = task_body(task_id, x_future={"nested": [1, "二"]}, x_flag=True)
    body["trigger"]["x_trigger_extra"] = "t"
    body["action"]["x_action_extra"] = 5
    body["customer"]["level"] = "vip"
    answer = assert_envelope(client.post("/api/task/receive", json=body), 200)
    assert answer["data"]["status"] == "waiting"
    data = assert_envelope(client.get(f"/api/task/status/{task_id}"), 200)["data"]
    assert data["x_future"] == {"nested": [1, "二"]}
    assert data["x_flag"] is True
    assert data["trigger"]["x_trigger_extra"] == "t"
    assert data["action"]["x_action_extra"] == 5
    assert data["customer"]["level"] == "vip"
    # ... and ignored: the task is indexed by its customer as usual.
    assert rdb.hexists("tw:spec", task_id)
    assert rdb.sismember("tw:ix:cust:customer_123", task_id)
    # The same body again is the same task (unknown fields are part of "the same body").
    again = assert_envelope(client.post("/api/task/receive", json=body), 200)
    assert again["data"] == {"task_id": task_id, "status": "waiting"}
    assert counts()["tasks"] == 1


# -- other endpoints -----------------------------------------------------------------------------

def test_status_of_unknown_task_is_404(client, rdb):
    answer = assert_envelope(client.get("/api/task/status/NO_SUCH_TASK"), 404)
    assert answer["data"] is None
    assert_envelope(client.get("/api/task/NO_SUCH_TASK/events"), 404)
    assert_nothing_written(rdb)


def test_cancel_of_unknown_task_is_404(client, rdb):
    answer = assert_envelope(client.post("/api/task/cancel", json={"task_id": "NO_SUCH_TASK", "reason": "x"}), 404)
    assert answer["data"] is None
    assert_nothing_written(rdb)


@pytest.mark.parametrize("body,path", [
    pytest.param({"reason": "x"}, "task_id", id="task_id-missing"),
    pytest.param({"task_id": "", "reason": "x"}, "task_id", id="task_id-empty"),
    pytest.param({"task_id": 5}, "task_id", id="task_id-number"),
])
def test_cancel_with_bad_body_is_422(client, rdb, body, path):
    answer = assert_envelope(client.post("/api/task/cancel", json=body), 422, errors=True)
    assert path in answer["errors"], answer
    assert_nothing_written(rdb)


def test_cancel_with_malformed_body_is_400(client, rdb):
    assert_envelope(client.post("/api/task/cancel", data=b"[1,2", content_type="application/json"), 400)
    assert_envelope(client.post("/api/task/cancel", json=["T"]), 400)
    assert_nothing_written(rdb)


def test_cancel_twice_is_409_with_the_current_status(client):
    task_id = uid()
    assert_envelope(client.post("/api/task/receive", json=task_body(task_id)), 200)
    first = assert_envelope(client.post("/api/task/cancel", json={"task_id": task_id, "reason": "不要了"}), 200)
    assert first["data"]["status"] == "cancelled"
    before = counts()
    second = assert_envelope(client.post("/api/task/cancel", json={"task_id": task_id, "reason": "again"}), 409)
    assert second["data"]["status"] == "cancelled"
    assert counts() == before  # the refused cancel wrote nothing (no event, no callback)


@pytest.mark.parametrize("query,path", [
    pytest.param("page_size=1000", "page_size", id="page_size-1000"),
    pytest.param("page_size=101", "page_size", id="page_size-101"),
    pytest.param("page_size=0", "page_size", id="page_size-0"),
    pytest.param("page_size=ten", "page_size", id="page_size-text"),
    pytest.param("page=0", "page", id="page-0"),
    pytest.param("page=-1", "page", id="page-negative"),
    pytest.param("status=done", "status", id="status-unknown"),
    pytest.param("status=WAITING", "status", id="status-uppercase"),
    pytest.param("trigger_type=smile", "trigger_type", id="trigger_type-unknown"),
])
def test_list_with_bad_query_is_422(client, rdb, query, path):
    answer = assert_envelope(client.get(f"/api/task/list?{query}"), 422, errors=True)
    assert path in answer["errors"], answer
    assert_nothing_written(rdb)
