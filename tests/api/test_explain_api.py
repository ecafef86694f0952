"""GET/POST /api/task/{task_id}/explain (CONTRACTS.md §1, issue 11): why a task fired or did not.

Messages are remembered the way the listener remembers them (Registry.remember); no worker runs, so a
message remembered after a task arrived is one the matcher never saw, which is what explain is for.
"""
from __future__ import annotations

import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import update

from app import runtime
from app.api.answers import ExplanationSchema
from app.domain.events import InboundEvent
from app.infra.db import session_scope
from app.models import Task
from app.services import firing, inbound, maintenance
from tests.api.helpers import assert_envelope, parse_iso, reply_body, task_body
from tests.conftest import uid


def receive(client, body) -> str:
    assert_envelope(client.post("/api/task/receive", json=body), 200)
    return body["task_id"]


def say(customer: str, content: str, *, msg_id: str | None = None, from_name="小明", acc_id="shop_001",
        msg_type="text", ago: float = 0.0, remember: bool = True) -> InboundEvent:
    """A customer message as the listener receives it: remembered for lookback, recorded for explain."""
    event = InboundEvent.from_wire("message", {
        "msg_id": msg_id or uid("m"), "acc_id": acc_id, "from_id": customer, "from_name": from_name,
        "msg_type": msg_type, "content": content}, received_at=time.time() - ago)
    if remember:
        assert runtime.current().registry.remember_many([(event, None, None, "")]) == [True]
        assert inbound.record([inbound.Arrival(event, content=content)], "test-qingjian") != [None]
    return event


def explained(response) -> dict:
    data = assert_envelope(response, 200, errors=False)["data"]
    assert ExplanationSchema().validate(data) == {}, data  # the documented shape, no field more or less
    return data


def conditions(evaluation: dict) -> dict:
    return {c["name"]: (c["verdict"], c["expected"], c["actual"]) for c in evaluation["conditions"]}


def note(evaluation: dict, name: str) -> str:
    return next(c["note"] for c in evaluation["conditions"] if c["name"] == name)


def scr(customer: str, **overrides) -> dict:
    """specified_customer_reply: customer `customer` named 小明 says 好的 (shop_001)."""
    return task_body(uid(), for_customer=customer, **overrides)


# -- against recent messages ------------------------------------------------------------------------

def test_each_recent_message_newest_first_with_its_verdict(client):
    customer = uid("c")
    task_id = receive(client, scr(customer))
    say(customer, "好的", msg_id="m-red", from_name="小红")
    say(customer, "ＯＫ，好的谢谢", msg_id="m-ming")  # the matcher never saw it: no worker runs here
    data = explained(client.get(f"/api/task/{task_id}/explain"))
    assert (data["task_id"], data["status"], data["trigger_type"], data["source"]) == (
        task_id, "waiting", "specified_customer_reply", "recent")
    newest, older = data["evaluations"]
    assert newest["message"]["msg_id"] == "m-ming" and older["message"]["msg_id"] == "m-red"
    assert (newest["outcome"], newest["conclusion"]) == ("would_fire", "would fire")
    assert conditions(newest)["keyword"] == ("pass", {"keywords": ["好的"], "match": "contains"}, "ok,好的谢谢")
    assert (older["outcome"], older["conclusion"]) == (
        "would_not_fire", "did not: the name was 小红, the task wants 小明")
    assert data["conclusion"] == "would fire on message m-ming"
    assert [c["name"] for c in newest["conditions"]] == [
        "status", "message_type", "shop", "customer_id", "customer_name", "keyword", "lookback", "deadline"]
    message = newest["message"]
    assert (message["kind"], message["msg_type"], message["acc_id"], message["from_id"], message["text"]) == (
        "message", "text", "shop_001", customer, "ok,好的谢谢")
    parse_iso(message["received_at"])


def test_the_name_is_why_it_did_not_fire(client):
    customer = uid("c")
    task_id = receive(client, scr(customer))
    say(customer, "好的", from_name="小红")
    data = explained(client.get(f"/api/task/{task_id}/explain"))
    assert data["conclusion"] == "the only recent message did not: the name was 小红, the task wants 小明"
    assert conditions(data["evaluations"][0])["customer_name"] == ("fail", "小明", "小红")


def test_another_shop_is_why_it_did_not_fire(client):
    customer = uid("c")
    task_id = receive(client, scr(customer, acc_id="shop_A"))
    say(customer, "好的", acc_id="shop_B")
    evaluation = explained(client.get(f"/api/task/{task_id}/explain"))["evaluations"][0]
    assert evaluation["conclusion"] == "did not: the shop was shop_B, the task wants shop_A"
    assert conditions(evaluation)["shop"] == ("fail", "shop_A", "shop_B")


def test_keyword_exact_and_message_type(client):
    customer = uid("c")
    task_id = receive(client, reply_body(uid(), customer=customer, trigger={
        "type": "customer_reply", "keyword": "ＯＫ", "exact_match": True}))
    say(customer, "ok好的", msg_id="m-text")
    say(customer, "https://img.example.com/ok.png", msg_id="m-image", msg_type="image")
    image, text = explained(client.get(f"/api/task/{task_id}/explain"))["evaluations"]
    assert conditions(text)["keyword"] == ("fail", {"keywords": ["ok"], "match": "exact"}, "ok好的")
    assert text["conclusion"] == ('did not: the text "ok好的" is not exactly "ok" '
                                  "(it contains one, but exact_match wants the whole text)")
    assert conditions(image)["message_type"] == ("fail", ["text"], "image")
    assert image["message"]["msg_type"] == "image" and image["message"]["text"] is None


def test_a_message_before_the_task_and_lookback(client):
    customer = uid("c")
    say(customer, "好的", msg_id="m-early", ago=120)
    task_id = receive(client, scr(customer, trigger={
        "type": "specified_customer_reply", "customer_id": customer, "keyword": "好的", "lookback_seconds": 30}))
    evaluation = explained(client.get(f"/api/task/{task_id}/explain"))["evaluations"][0]
    verdict, expected, before = conditions(evaluation)["lookback"]
    assert (verdict, expected) == ("fail", 30.0) and 119 < before < 130
    assert note(evaluation, "lookback").startswith("arrived 2 min") and "more than its lookback_seconds 30" in \
        evaluation["conclusion"]


def test_any_customer_task_reads_anyones_recent_messages_of_its_shop_bounded(client):
    keyword = uid("kw")
    task_id = receive(client, reply_body(uid(), acc_id="shop_A", trigger={
        "type": "customer_keyword", "keywords": [keyword]}))
    for i in range(4):
        say(uid("c"), f"hello {i}", msg_id=f"m-{task_id}-{i}", acc_id="shop_A")
    say(uid("c"), keyword, msg_id=f"m-{task_id}-other-shop", acc_id="shop_B")
    data = explained(client.get(f"/api/task/{task_id}/explain?limit=3"))
    assert [e["message"]["msg_id"] for e in data["evaluations"]] == [f"m-{task_id}-{i}" for i in (3, 2, 1)]
    assert data["conclusion"].startswith(f'none of the 3 recent messages fires it; the newest did not: '
                                         f'the text "hello 3" does not contain "{keyword}"')


def test_no_recent_message(client):
    task_id = receive(client, scr(uid("c")))
    data = explained(client.get(f"/api/task/{task_id}/explain"))
    assert data["conclusion"] == "waiting for a matching message; no recent message to explain it against"
    (alone,) = data["evaluations"]
    assert alone["message"] is None and alone["outcome"] == "waiting"
    assert [c["name"] for c in alone["conditions"]] == ["status", "deadline"]


# -- the task's state ---------------------------------------------------------------------------------

def test_a_task_that_already_fired(client):
    customer = uid("c")
    early = say(customer, "好的", msg_id=uid("m-early"), ago=5)
    task_id = receive(client, scr(customer, trigger={
        "type": "specified_customer_reply", "customer_id": customer, "keyword": "好的", "lookback_seconds": 60}))
    status = assert_envelope(client.get(f"/api/task/status/{task_id}"), 200)["data"]
    assert status["status"] == "running" and status["triggered_by"]["msg_id"] == early.msg_id  # catch-up fired it
    later = say(customer, "好的", msg_id=uid("m-later"))
    fired = f"did fire at {status['triggered_at']} (message {early.msg_id})"
    data = explained(client.get(f"/api/task/{task_id}/explain"))
    assert data["conclusion"] == fired
    after, firing_message = data["evaluations"]
    assert (firing_message["outcome"], firing_message["conclusion"]) == ("fired", fired)
    assert after["message"]["msg_id"] == later.msg_id
    assert (after["outcome"], after["conclusion"]) == ("would_not_fire", f"{fired}, before this message")
    assert conditions(after)["status"] == ("fail", "waiting", "running")
    one = explained(client.get(f"/api/task/{task_id}/explain", query_string={"msg_id": early.msg_id}))
    assert (one["source"], one["conclusion"], len(one["evaluations"])) == ("msg_id", fired, 1)


def test_a_task_fired_by_a_message_the_listener_passed_on(client):
    customer = uid("c")
    task_id = receive(client, scr(customer))
    message = say(customer, "好的呀")
    assert firing.process_batch([{"event": message.as_dict()}]) == [task_id]
    data = explained(client.get(f"/api/task/{task_id}/explain"))
    assert data["evaluations"][0]["outcome"] == "fired" and data["conclusion"].startswith("did fire at ")


def test_a_task_past_its_deadline(client):
    customer = uid("c")
    task_id = receive(client, scr(customer, timeout_hours=1))
    with session_scope() as session:  # as if the hour had passed a minute ago
        session.execute(update(Task).where(Task.task_id == task_id).values(
            expires_at=datetime.utcnow() - timedelta(minutes=1)))
    say(customer, "好的")
    evaluation = explained(client.get(f"/api/task/{task_id}/explain"))["evaluations"][0]
    assert evaluation["conclusion"] == "did not: the deadline passed 1 min before"  # beat had not swept yet
    assert conditions(evaluation)["deadline"][0] == "fail"
    assert maintenance.expire_deadlines() >= 1
    data = explained(client.get(f"/api/task/{task_id}/explain"))
    assert data["status"] == "timeout"
    evaluation = data["evaluations"][0]
    assert conditions(evaluation)["status"][0] == "pass"  # it still waited (past its time) when the message came
    assert note(evaluation, "status").startswith("still waiting when this message came (timed out later, at ")
    later = explained(client.post(f"/api/task/{task_id}/explain", json={"from_id": customer, "from_name": "小明",
                                                                        "acc_id": "shop_001", "content": "好的"}))
    assert later["conclusion"].startswith("would not: timed out at ")
    assert "(deadline passed before the trigger fired); the deadline passed 1 min" in later["conclusion"]


def test_a_cancelled_task(client):
    customer = uid("c")
    task_id = receive(client, scr(customer))
    assert_envelope(client.post("/api/task/cancel", json={"task_id": task_id, "reason": "客户取消"}), 200)
    say(customer, "好的")
    evaluation = explained(client.get(f"/api/task/{task_id}/explain"))["evaluations"][0]
    assert conditions(evaluation)["status"] == ("fail", "waiting", "cancelled")
    assert evaluation["conclusion"].startswith("did not: cancelled at ")
    assert evaluation["conclusion"].endswith("(cancelled: 客户取消)")


def test_time_reach_not_yet_due(client):
    due = datetime.now(ZoneInfo("Asia/Shanghai")).replace(microsecond=0) + timedelta(hours=2)
    task_id = receive(client, task_body(uid(), trigger={"type": "time_reach", "time": due.isoformat()}))
    data = explained(client.get(f"/api/task/{task_id}/explain"))
    assert data["source"] == "task"
    (alone,) = data["evaluations"]
    assert [c["name"] for c in alone["conditions"]] == ["status", "deadline", "time"]
    verdict, expected, _now = conditions(alone)["time"]
    assert verdict == "fail" and parse_iso(expected) == due
    assert note(alone, "time") in (f"not yet reached: due at {expected}, in {left}" for left in ("2 h", "1 h 59 min"))
    assert (alone["outcome"], data["conclusion"]) == ("waiting", f"will fire at {expected}")


# -- a posted message or event, as if it arrived now ------------------------------------------------

def test_posted_messages_would_or_would_not_fire(client):
    customer = uid("c")
    task_id = receive(client, scr(customer))
    url = f"/api/task/{task_id}/explain"
    good = {"from_id": customer, "from_name": "小明", "acc_id": "shop_001", "msg_type": "text", "content": "好的"}
    data = explained(client.post(url, json=good))
    assert (data["source"], data["conclusion"]) == ("body", "would fire")
    assert data["evaluations"][0]["outcome"] == "would_fire"
    assert data["evaluations"][0]["message"]["msg_id"] is None
    data = explained(client.post(url, json={**good, "from_name": "小红"}))
    assert data["conclusion"] == "would not: the name was 小红, the task wants 小明"
    image = explained(client.post(url, json={**good, "msg_type": "image", "content": None}))
    assert conditions(image["evaluations"][0])["message_type"] == ("fail", ["text"], "image")
    assert assert_envelope(client.get(f"/api/task/status/{task_id}"), 200)["data"]["status"] == "waiting"


def test_posted_payment_event(client):
    task_id = receive(client, reply_body(uid(), trigger={"type": "customer_payment"}))
    data = explained(client.post(f"/api/task/{task_id}/explain", json={"kind": "payment", "from_id": uid("c")}))
    assert data["conclusion"] == "would fire"
    assert note(data["evaluations"][0], "keyword") == "the payment event fires it by itself (keywords are for texts)"


def test_posted_custom_events(client):
    task_id = receive(client, reply_body(uid(), acc_id="shop_A", trigger={
        "type": "custom_event", "event": "design_done", "match": {"level": "vip"}}))
    url = f"/api/task/{task_id}/explain"
    data = explained(client.get(url))
    assert (data["source"], data["conclusion"]) == ("task", "waiting for a matching event")
    event = {"event": "design_done", "customer_id": "c1", "acc_id": "shop_A", "data": {"level": "vip", "x": 1}}
    assert explained(client.post(url, json=event))["conclusion"] == "would fire"
    assert explained(client.post(url, json={**event, "data": {"level": "normal"}}))["conclusion"] == \
        'would not: data.level was "normal", the task wants "vip"'
    assert explained(client.post(url, json={**event, "acc_id": "shop_B"}))["conclusion"] == \
        "would not: the shop was shop_B, the task wants shop_A"
    assert explained(client.post(url, json={**event, "event": "other"}))["conclusion"] == \
        "would not: the event was other, the task wants design_done"


@pytest.mark.parametrize("body,field", [
    ({"from_name": "小明", "content": "好的"}, "from_id"),
    ({"from_id": "c1", "msg_type": "text"}, "content"),
    ({"kind": "custom", "data": {}}, "event"),
    ({"kind": "voice", "from_id": "c1", "content": "x"}, "kind"),
    ({"from_id": "c1", "content": 42}, "content"),
    ({"from_id": "", "content": "好的"}, "from_id"),
    ({"event": "e", "data": []}, "data"),
])
def test_bad_bodies_are_422(client, body, field):
    task_id = receive(client, scr(uid("c")))
    answer = assert_envelope(client.post(f"/api/task/{task_id}/explain", json=body), 422, errors=True)
    assert field in answer["errors"], answer


# -- not found, and the document --------------------------------------------------------------------

def test_unknown_task_or_msg_id_is_404(client):
    assert_envelope(client.get("/api/task/NOPE_1/explain"), 404)
    assert_envelope(client.post("/api/task/NOPE_1/explain", json={"from_id": "c", "content": "好的"}), 404)
    customer = uid("c")
    task_id = receive(client, scr(customer))
    say(customer, "好的", msg_id="m-[1]*?\\x")  # glob characters in the id are taken literally
    say(customer, "好的", msg_id="m-11")
    say("m-1", "好的 m-1", msg_id="m-12")  # the id elsewhere in a remembered message is not that message
    answer = assert_envelope(client.get(f"/api/task/{task_id}/explain?msg_id=m-1"), 404)
    assert "m-1" in answer["message"]
    found = explained(client.get(f"/api/task/{task_id}/explain", query_string={"msg_id": "m-[1]*?\\x"}))
    assert [e["message"]["msg_id"] for e in found["evaluations"]] == ["m-[1]*?\\x"]


def test_msg_id_of_another_customer_is_found_among_everybodys(client):
    customer = uid("c")
    task_id = receive(client, scr(customer))
    other = say(uid("c"), "好的")
    data = explained(client.get(f"/api/task/{task_id}/explain", query_string={"msg_id": other.msg_id}))
    assert data["evaluations"][0]["conclusion"] == \
        f"did not: the customer was {other.from_id}, the task wants {customer}"


def test_the_answer_is_documented_with_its_schema(client):
    doc = client.get("/api/openapi.json").get_json()
    operations = doc["paths"]["/api/task/{task_id}/explain"]
    schemas = doc["components"]["schemas"]
    for method in ("get", "post"):
        ok = operations[method]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
        envelope = schemas[ok.rsplit("/", 1)[-1]]
        assert set(envelope["properties"]) == {"code", "message", "data", "errors"}
        data = schemas[envelope["properties"]["data"]["$ref"].rsplit("/", 1)[-1]]
        assert set(data["properties"]) == {"task_id", "status", "trigger_type", "source", "conclusion", "evaluations"}
        assert "404" in operations[method]["responses"]
    condition = schemas["ExplainCondition"]
    assert set(condition["properties"]) == {"name", "verdict", "expected", "actual", "note"}
    assert condition["properties"]["verdict"]["enum"] == ["pass", "fail", "not_applicable"]
    assert set(schemas["ExplainEvaluation"]["properties"]) == {"message", "outcome", "conclusion", "conditions"}
    assert operations["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("ExplainEvent")
