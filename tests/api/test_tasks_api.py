"""CONTRACTS.md §1: the intake API's happy paths, answers and shapes, on SQLite and PostgreSQL."""
from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest

from tests.api.helpers import (
    assert_envelope,
    counts,
    parse_iso,
    reply_body,
    task_body,
)
from tests.conftest import uid

SHANGHAI = ZoneInfo("Asia/Shanghai")
STATUS_FIELDS = {
    "task_id", "type", "customer", "acc_id", "trigger", "action", "priority", "timeout_hours",
    "max_retry", "created_by", "status", "retry_count", "created_at", "triggered_at", "completed_at",
    "expires_at", "error_message", "result", "triggered_by",
}


def receive(client, body) -> dict:
    return assert_envelope(client.post("/api/task/receive", json=body), 200, errors=False)


def status(client, task_id) -> dict:
    return assert_envelope(client.get(f"/api/task/status/{task_id}"), 200)["data"]


# -- receive -----------------------------------------------------------------------------------

def test_receive_answers_in_the_contract_shape(client):
    task_id = uid("TASK_20260227")
    answer = receive(client, task_body(task_id))
    assert answer == {"code": 200, "message": "任务接收成功", "data": {"task_id": task_id, "status": "waiting"}}
    assert counts() == {"tasks": 1, "task_events": 2, "callback_outbox": 0}


def test_task_id_of_128_allowed_chars_is_accepted(client):
    task_id = ("Az09_.:-" * 16)[:128]
    answer = receive(client, task_body(task_id))
    assert answer["data"] == {"task_id": task_id, "status": "waiting"}
    assert status(client, task_id)["task_id"] == task_id


def test_same_id_same_body_is_200_with_current_status_and_nothing_twice(client, rdb):
    task_id = uid()
    body = task_body(task_id)
    receive(client, body)
    before, spec = counts(), rdb.hget("tw:spec", task_id)
    again = receive(client, body)
    assert again["data"] == {"task_id": task_id, "status": "waiting"}
    # The same body with its keys in another order is still the same body.
    reordered = json.loads(json.dumps(dict(reversed(list(body.items())))))
    assert receive(client, reordered)["data"] == {"task_id": task_id, "status": "waiting"}
    assert counts() == before == {"tasks": 1, "task_events": 2, "callback_outbox": 0}
    assert rdb.hget("tw:spec", task_id) == spec
    # After a cancel, the same body again re-arms the task (the legacy manual retry, 取消任务后重新下发):
    # it listens again, its history kept and one line longer; the answer says so.
    assert_envelope(client.post("/api/task/cancel", json={"task_id": task_id}), 200)
    assert not rdb.hexists("tw:spec", task_id)
    after_cancel = counts()
    rearmed = receive(client, body)
    assert rearmed["data"] == {"task_id": task_id, "status": "waiting"}
    assert "重新" in rearmed["message"] and rearmed["message"] != again_message(client, body)
    assert counts() == {**after_cancel, "task_events": after_cancel["task_events"] + 1}
    assert rdb.hget("tw:spec", task_id) is not None
    moves = [(e["from_status"], e["to_status"]) for e in client.get(f"/api/task/{task_id}/events").get_json()
             ["data"]["events"] if e["kind"] == "status"]
    assert moves == [("pending", "waiting"), ("waiting", "cancelled"), ("cancelled", "waiting")]
    # And then a repeat is a repeat again: nothing done twice.
    assert receive(client, body)["data"] == {"task_id": task_id, "status": "waiting"}
    assert counts() == {**after_cancel, "task_events": after_cancel["task_events"] + 1}


def again_message(client, body) -> str:
    """The message of a plain repeat's answer."""
    return client.post("/api/task/receive", json=body).get_json()["message"]


@pytest.mark.parametrize("change", [
    pytest.param({"priority": "urgent"}, id="priority"),
    pytest.param({"timeout_hours": 12}, id="timeout_hours"),
    pytest.param({"created_by": "someone else"}, id="created_by"),
    pytest.param({"x_extra": 1}, id="extra-field"),
])
def test_same_id_other_body_is_409_and_changes_nothing(client, rdb, change):
    task_id = uid()
    body = task_body(task_id)
    receive(client, body)
    before, spec = counts(), rdb.hget("tw:spec", task_id)
    answer = assert_envelope(client.post("/api/task/receive", json={**body, **change}), 409)
    assert answer["data"]["status"] == "waiting"
    assert counts() == before
    assert rdb.hget("tw:spec", task_id) == spec
    data = status(client, task_id)
    assert data["priority"] == "normal" and data["timeout_hours"] == 24 and data["created_by"] == "设计师 lz"


def test_same_id_with_other_trigger_is_409(client):
    task_id = uid()
    receive(client, task_body(task_id))
    other = task_body(task_id)
    other["trigger"]["keyword"] = "不好"
    assert_envelope(client.post("/api/task/receive", json=other), 409)


def test_defaults_are_applied(client):
    task_id = uid()
    receive(client, reply_body(task_id))
    data = status(client, task_id)
    assert data["priority"] == "normal"
    assert data["timeout_hours"] == 24
    assert data["max_retry"] == 3
    assert data["retry_count"] == 0
    assert data["trigger"]["type"] == "customer_reply"


@pytest.mark.parametrize("change", [
    pytest.param({"timeout_hours": 720}, id="timeout_hours-720"),
    pytest.param({"timeout_hours": 0.01}, id="timeout_hours-0.01"),
    pytest.param({"max_retry": 0}, id="max_retry-0"),
    pytest.param({"max_retry": 10}, id="max_retry-10"),
    pytest.param({"priority": "urgent"}, id="priority-urgent"),
    pytest.param({"priority": "low"}, id="priority-low"),
    pytest.param({"type": "t" * 64}, id="type-64"),
    pytest.param({"action": {"type": "send_link", "link_url": "HTTP://example.com/x"}}, id="send_link"),
    pytest.param({"action": {"type": "transfer_to_designer"}}, id="transfer_to_designer"),
    pytest.param({"trigger": {"type": "customer_keyword", "keywords": [f"k{i}" for i in range(50)]}},
                 id="keywords-50"),
    pytest.param({"trigger": {"type": "customer_reply", "keyword": "好", "lookback_seconds": 3600}},
                 id="lookback-3600"),
    pytest.param({"trigger": {"type": "customer_order"}}, id="customer_order"),
    pytest.param({"trigger": {"type": "custom_event", "event": "paid", "match": {"x": 1}}}, id="custom_event"),
])
def test_boundary_values_are_accepted(client, change):
    task_id = uid()
    body = task_body(task_id, **change)
    assert receive(client, body)["data"] == {"task_id": task_id, "status": "waiting"}
    data = status(client, task_id)
    for key, value in change.items():
        assert data[key] == value, key


def test_repeat_of_a_body_that_was_valid_when_first_received_is_still_200(client):
    """A time_reach time that has since gone more than 5 minutes past: a repeat is still a repeat."""
    from sqlalchemy import update

    from app.infra.db import session_scope
    from app.models import Task
    from app.services import intake

    task_id = uid()
    receive(client, task_body(task_id, trigger={
        "type": "time_reach", "time": (datetime.now(SHANGHAI) + timedelta(hours=1)).isoformat()}))
    # As if it had been received an hour ago with a time now 10 minutes past.
    old = task_body(task_id, trigger={
        "type": "time_reach", "time": (datetime.now(SHANGHAI) - timedelta(minutes=10)).isoformat()})
    with session_scope() as session:
        session.execute(update(Task).where(Task.task_id == task_id).values(
            raw=old, trigger=old["trigger"], body_hash=intake.body_hash(old)))
    before = counts()
    assert receive(client, old)["data"] == {"task_id": task_id, "status": "waiting"}
    assert counts() == before


# -- status --------------------------------------------------------------------------------------

def test_status_returns_every_field(client):
    task_id = uid()
    body = task_body(task_id, timeout_hours=1.5, max_retry=5, priority="high")
    receive(client, body)
    data = status(client, task_id)
    assert STATUS_FIELDS <= set(data), STATUS_FIELDS - set(data)
    assert data["task_id"] == task_id
    assert data["type"] == "send_file_after_reply"
    assert data["customer"] == {"id": "customer_123", "name": "小明"}
    assert data["acc_id"] == "shop_001"
    assert data["trigger"] == body["trigger"]
    assert data["action"] == body["action"]
    assert data["priority"] == "high"
    assert data["timeout_hours"] == 1.5
    assert data["max_retry"] == 5
    assert data["created_by"] == "设计师 lz"
    assert data["status"] == "waiting"
    assert data["retry_count"] == 0
    for name in ("triggered_at", "completed_at", "error_message", "result", "triggered_by"):
        assert data[name] is None, name
    created, expires = parse_iso(data["created_at"]), parse_iso(data["expires_at"])
    assert created.utcoffset() == timedelta(hours=8)  # APP_TIMEZONE defaults to Asia/Shanghai
    assert abs((datetime.now(timezone.utc) - created).total_seconds()) < 60
    assert abs((expires - created) - timedelta(hours=1.5)) <= timedelta(seconds=1)


def test_status_of_a_minimal_task_still_has_every_field(client):
    task_id = uid()
    receive(client, reply_body(task_id))  # no customer, acc_id, priority, ... , created_by
    data = status(client, task_id)
    assert STATUS_FIELDS <= set(data), sorted(STATUS_FIELDS - set(data))


def test_cancelled_task_shows_completed_at_and_reason(client):
    task_id = uid()
    receive(client, task_body(task_id))
    answer = assert_envelope(client.post("/api/task/cancel", json={"task_id": task_id, "reason": "客户不要了"}), 200)
    assert answer["data"] == {"task_id": task_id, "status": "cancelled"}
    data = status(client, task_id)
    assert data["status"] == "cancelled"
    done = parse_iso(data["completed_at"])
    assert parse_iso(data["created_at"]) <= done + timedelta(seconds=1)
    assert "客户不要了" in (data["error_message"] or "")


def test_time_reach_expires_timeout_hours_after_the_trigger_time(client):
    task_id = uid()
    when = (datetime.now(SHANGHAI) + timedelta(hours=3)).replace(microsecond=0)
    body = task_body(task_id, timeout_hours=2, trigger={"type": "time_reach", "time": when.isoformat()})
    assert receive(client, body)["data"]["status"] == "waiting"  # Redis answers: registered at once
    data = status(client, task_id)
    assert parse_iso(data["expires_at"]) == when + timedelta(hours=2)


def test_time_reach_with_utc_offset_and_z(client):
    when = (datetime.now(timezone.utc) + timedelta(hours=1)).replace(microsecond=0)
    first, second = uid(), uid()
    receive(client, task_body(first, timeout_hours=1, trigger={"type": "time_reach", "time": when.isoformat()}))
    receive(client, task_body(second, timeout_hours=1, trigger={
        "type": "time_reach", "time": when.strftime("%Y-%m-%dT%H:%M:%SZ")}))
    for task_id in (first, second):
        expires = parse_iso(status(client, task_id)["expires_at"])
        assert expires == when + timedelta(hours=1)
        assert expires.utcoffset() == timedelta(hours=8)


def test_naive_time_reach_time_is_read_in_asia_shanghai(client):
    task_id = uid()
    when = (datetime.now(SHANGHAI) + timedelta(hours=2)).replace(microsecond=0)
    body = task_body(task_id, timeout_hours=1, trigger={"type": "time_reach",
                                                         "time": when.strftime("%Y-%m-%d %H:%M:%S")})
    receive(client, body)
    data = status(client, task_id)
    assert parse_iso(data["expires_at"]) == when + timedelta(hours=1)
    assert data["trigger"]["time"] == when.strftime("%Y-%m-%d %H:%M:%S")  # kept as sent


def test_time_reach_a_few_minutes_ago_is_still_accepted(client):
    """Only *more than* 5 minutes in the past is refused."""
    task_id = uid()
    when = (datetime.now(SHANGHAI) - timedelta(minutes=2)).replace(microsecond=0)
    body = task_body(task_id, trigger={"type": "time_reach", "time": when.isoformat()})
    assert_envelope(client.post("/api/task/receive", json=body), 200)


# -- list and stats -------------------------------------------------------------------------------

def _seed(client) -> dict[str, str]:
    ids = {name: uid(name.upper()) for name in ("a1", "a2", "b1", "kw", "cx")}
    receive(client, task_body(ids["a1"], for_customer="cust_A"))
    receive(client, task_body(ids["a2"], for_customer="cust_A", type="other_type"))
    receive(client, reply_body(ids["b1"], customer="cust_B"))
    receive(client, reply_body(ids["kw"], type="other_type",
                               trigger={"type": "customer_keyword", "keywords": ["发货"]}))
    receive(client, reply_body(ids["cx"], customer="cust_B"))
    assert_envelope(client.post("/api/task/cancel", json={"task_id": ids["cx"]}), 200)
    return ids


def _list(client, query="") -> dict:
    data = assert_envelope(client.get(f"/api/task/list{query}"), 200)["data"]
    assert set(data) == {"items", "page", "page_size", "total"}
    return data


def test_list_filters(client):
    ids = _seed(client)
    everything = _list(client)
    assert everything["total"] == 5 and everything["page"] == 1 and everything["page_size"] == 20
    assert {t["task_id"] for t in everything["items"]} == set(ids.values())
    for item in everything["items"]:
        assert {"task_id", "status", "trigger", "action", "created_at"} <= set(item)

    def ids_of(query):
        return {t["task_id"] for t in _list(client, query)["items"]}

    assert ids_of("?customer_id=cust_A") == {ids["a1"], ids["a2"]}
    assert ids_of("?customer_id=cust_B") == {ids["b1"], ids["cx"]}
    assert ids_of("?status=cancelled") == {ids["cx"]}
    assert ids_of("?status=waiting") == {ids["a1"], ids["a2"], ids["b1"], ids["kw"]}
    assert ids_of("?status=running") == set()
    assert ids_of("?type=other_type") == {ids["a2"], ids["kw"]}
    assert ids_of("?trigger_type=customer_keyword") == {ids["kw"]}
    assert ids_of("?trigger_type=specified_customer_reply") == {ids["a1"], ids["a2"]}
    assert ids_of("?customer_id=cust_B&status=waiting&trigger_type=customer_reply") == {ids["b1"]}
    assert _list(client, "?customer_id=nobody")["total"] == 0


def test_task_customer_is_trigger_customer_id_without_customer(client):
    task_id = uid()
    body = task_body(task_id, for_customer="cust_T")
    del body["customer"]
    receive(client, body)
    items = _list(client, "?customer_id=cust_T")["items"]
    assert [t["task_id"] for t in items] == [task_id]


def test_list_pagination(client):
    ids = {uid() for _ in range(5)}
    for task_id in ids:
        receive(client, reply_body(task_id))
    seen = []
    for page in (1, 2, 3):
        data = _list(client, f"?page={page}&page_size=2")
        assert data["total"] == 5 and data["page"] == page and data["page_size"] == 2
        assert len(data["items"]) == (2 if page < 3 else 1)
        seen += [t["task_id"] for t in data["items"]]
    assert sorted(seen) == sorted(ids)  # every task exactly once across the pages
    beyond = _list(client, "?page=4&page_size=2")
    assert beyond["items"] == [] and beyond["total"] == 5
    assert _list(client, "?page_size=100")["page_size"] == 100


def test_stats_counts(client):
    _seed(client)
    data = assert_envelope(client.get("/api/task/stats"), 200)["data"]
    assert data["total"] == 5
    assert data["by_status"]["waiting"] == 4
    assert data["by_status"]["cancelled"] == 1
    assert data["by_status"]["running"] == 0 and data["by_status"]["completed"] == 0
    assert set(data["by_status"]) >= {"pending", "waiting", "running", "completed", "failed", "cancelled",
                                      "timeout"}
    assert sum(data["by_status"].values()) == 5
    assert data["by_trigger_type"]["specified_customer_reply"] == 2
    assert data["by_trigger_type"]["customer_reply"] == 2
    assert data["by_trigger_type"]["customer_keyword"] == 1
    assert data["by_trigger_type"]["time_reach"] == 0
    assert sum(data["by_trigger_type"].values()) == 5


def test_stats_of_an_empty_database(client):
    data = assert_envelope(client.get("/api/task/stats"), 200)["data"]
    assert data["total"] == 0
    assert all(v == 0 for v in data["by_status"].values())


# -- events and cancel ----------------------------------------------------------------------------

def test_events_show_received_and_pending_to_waiting(client):
    task_id = uid()
    receive(client, task_body(task_id))
    data = assert_envelope(client.get(f"/api/task/{task_id}/events"), 200)["data"]
    events = data["events"]
    assert [e["kind"] for e in events] == ["received", "status"]
    assert (events[1]["from_status"], events[1]["to_status"]) == ("pending", "waiting")
    for event in events:
        parse_iso(event["at"])
    assert parse_iso(events[0]["at"]) <= parse_iso(events[1]["at"])


def test_cancel_moves_to_cancelled_and_leaves_the_index(client, rdb):
    task_id = uid()
    receive(client, task_body(task_id, for_customer="cust_C"))
    assert rdb.hexists("tw:spec", task_id)
    assert rdb.sismember("tw:ix:cust:cust_C", task_id)
    answer = assert_envelope(client.post("/api/task/cancel", json={"task_id": task_id, "reason": "r"}), 200)
    assert answer["data"]["status"] == "cancelled"
    assert not rdb.hexists("tw:spec", task_id)
    assert not rdb.sismember("tw:ix:cust:cust_C", task_id)
    assert status(client, task_id)["status"] == "cancelled"
    events = assert_envelope(client.get(f"/api/task/{task_id}/events"), 200)["data"]["events"]
    moves = [(e["from_status"], e["to_status"]) for e in events if e["kind"] == "status"]
    assert moves == [("pending", "waiting"), ("waiting", "cancelled")]
    # A terminal move owes 天网 a callback: recorded (not sent: no TIANWANG_CALLBACK_URL here).
    assert counts()["callback_outbox"] == 1


def test_cancel_of_a_running_task_is_409_with_its_status(client, rdb):
    from app.infra.db import session_scope
    from app.state import tasks as task_states

    task_id = uid()
    receive(client, task_body(task_id))
    with session_scope() as session:
        assert task_states.move(session, task_id, "running").won
    before = counts()
    answer = assert_envelope(client.post("/api/task/cancel", json={"task_id": task_id}), 409)
    assert answer["data"]["status"] == "running"
    assert counts() == before
    assert status(client, task_id)["status"] == "running"


def test_cancel_of_any_customer_keyword_task_leaves_the_keyword_index(client, rdb):
    task_id = uid()
    receive(client, reply_body(task_id, trigger={"type": "customer_keyword", "keywords": ["发货", "地址"]}))
    assert rdb.sismember("tw:ix:kw:发货", task_id) and rdb.sismember("tw:ix:kw:地址", task_id)
    assert_envelope(client.post("/api/task/cancel", json={"task_id": task_id}), 200)
    assert not rdb.sismember("tw:ix:kw:发货", task_id) and not rdb.sismember("tw:ix:kw:地址", task_id)


# -- system endpoints -----------------------------------------------------------------------------

def test_health_needs_no_key(app):
    answer = assert_envelope(app.test_client().get("/api/health"), 200)
    assert answer["message"] == "OK"
    data = answer["data"]
    assert data["service"] == "tianwang-bridge"
    assert isinstance(data["version"], str) and data["version"]
    assert abs((datetime.now(timezone.utc) - parse_iso(data["time"])).total_seconds()) < 60


def test_ready_is_503_without_listener_and_beat_heartbeats_and_names_each_check(app):
    answer = assert_envelope(app.test_client().get("/api/ready"), 503)  # no key needed; nothing beats here
    checks = answer["data"]["checks"]
    assert {name: check["ok"] for name, check in checks.items()} == {
        "database": True, "redis": True, "broker": True, "listener": False, "beat": False}
    assert "listener heartbeat" in checks["listener"]["error"] and "beat heartbeat" in checks["beat"]["error"]


def test_ready_is_200_once_listener_and_beat_beat(app, rdb):
    from app import runtime
    from app.infra import heartbeat

    keys = runtime.current().keys
    for process in ("listener", "beat"):
        heartbeat.beat(rdb, keys, process)
    answer = assert_envelope(app.test_client().get("/api/ready"), 200)
    assert all(check["ok"] for check in answer["data"]["checks"].values()), answer


def test_openapi_needs_no_key_and_lists_the_paths(app):
    response = app.test_client().get("/api/openapi.json")
    assert response.status_code == 200
    doc = response.get_json()
    assert doc["openapi"].startswith("3.")
    paths = set(doc["paths"])
    assert {"/api/task/receive", "/api/task/status/{task_id}", "/api/task/cancel", "/api/task/list",
            "/api/task/stats", "/api/task/{task_id}/events", "/api/health", "/api/ready",
            "/api/event"} <= paths, paths
    assert "post" in doc["paths"]["/api/task/receive"]
    assert "requestBody" in doc["paths"]["/api/task/receive"]["post"]


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs: list[str] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.refs.append(value)


def _is_local(ref: str) -> bool:
    parts = urlsplit(ref)
    return not parts.scheme and not parts.netloc or parts.hostname in ("localhost", "127.0.0.1")


def test_docs_page_loads_nothing_from_the_internet(app):
    anonymous = app.test_client()
    response = anonymous.get("/api/docs")
    if response.status_code in (301, 302, 308):
        response = anonymous.get(response.headers["Location"])
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    parser = _Refs()
    parser.feed(html)
    assert parser.refs, html[:500]
    assert all(_is_local(ref) for ref in parser.refs), parser.refs
    for banned in ("cdn", "unpkg", "jsdelivr", "cdnjs", "googleapis", "swagger.io"):
        assert banned not in html.lower(), banned
    # Nothing referenced with an absolute URL, in markup or script, to another host.
    for url in re.findall(r"https?://[^\s\"'<>)]+", html):
        assert urlsplit(url).hostname in ("localhost", "127.0.0.1"), url
    # The page's scripts and styles are served by us.
    for ref in parser.refs:
        if ref.endswith((".js", ".css")):
            asset = anonymous.get(urlsplit(ref).path)
            assert asset.status_code == 200, ref
    assert "/api/openapi.json" in html


def test_docs_page_switches_off_the_online_validator_badge(app):
    html = app.test_client().get("/api/docs", base_url="http://bridge.example.internal").get_data(as_text=True)
    match = re.search(r"var user_config = (\{.*?\});", html)
    assert match, html[:800]
    config = json.loads(match.group(1))
    assert "validatorUrl" in config and config["validatorUrl"] in (None, "none"), config


@pytest.mark.parametrize("method,path", [
    ("GET", "/api/nope"),
    ("GET", "/nope"),
    ("POST", "/api/nope"),
    ("GET", "/api/task/receive"),
    ("DELETE", "/api/task/receive"),
    ("PUT", "/api/task/cancel"),
    ("POST", "/api/task/list"),
    ("GET", "/api/task/status/"),
])
def test_every_error_is_json_never_html(client, method, path):
    kwargs = {"json": {}} if method in ("POST", "PUT") else {}
    response = client.open(path, method=method, **kwargs)
    assert 400 <= response.status_code < 500, response.status_code
    assert response.mimetype == "application/json", response.data[:200]
    assert b"<html" not in response.data.lower() and b"<!doctype" not in response.data.lower()
    assert_envelope(response, response.status_code)


def test_not_found_and_method_not_allowed_codes(client):
    assert_envelope(client.get("/api/nope"), 404)
    assert_envelope(client.get("/api/task/receive"), 405)
