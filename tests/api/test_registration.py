"""After intake the task is in the Redis index; `reconcile()` rebuilds the index from SQL alone."""
from __future__ import annotations

import json
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from app import runtime
from app.infra.db import session_scope
from app.models import Task
from app.services import registration
from tests.api.helpers import assert_envelope, index_snapshot, reply_body, task_body, tw_keys
from tests.conftest import uid


def receive(client, body) -> str:
    answer = assert_envelope(client.post("/api/task/receive", json=body), 200)
    assert answer["data"]["status"] == "waiting"
    return answer["data"]["task_id"]


def _seed(client) -> dict[str, str]:
    """One task of each indexing kind."""
    ids = {}
    ids["specified"] = receive(client, task_body(uid(), for_customer="cust_S"))
    ids["bound_reply"] = receive(client, reply_body(uid(), keyword="收到", customer="cust_R"))
    ids["bound_keyword"] = receive(client, reply_body(uid(), customer="cust_R", trigger={
        "type": "customer_keyword", "keywords": ["发货"]}))
    ids["any_keyword"] = receive(client, reply_body(uid(), trigger={
        "type": "customer_keyword", "keywords": ["ＡＢＣ", " Hello ", "好的", "发货"]}))
    ids["any_reply"] = receive(client, reply_body(uid(), keyword="ｑｕｅｓｔｉｏｎ"))
    ids["any_payment"] = receive(client, reply_body(uid(), trigger={"type": "customer_payment"}))
    ids["custom_event"] = receive(client, reply_body(uid(), customer="cust_E", trigger={
        "type": "custom_event", "event": "design_done", "match": {"order": "O-1"}}))
    ids["time_reach"] = receive(client, task_body(uid(), trigger={
        "type": "time_reach",
        "time": (datetime.now(ZoneInfo("Asia/Shanghai")) + timedelta(hours=2)).isoformat()}))
    return ids


def test_received_tasks_are_in_the_index(client, rdb):
    ids = _seed(client)
    specs = {k.decode(): json.loads(v) for k, v in rdb.hgetall("tw:spec").items()}
    # Every waiting message/event task has a spec (time_reach is driven by SQL's due_at: no index).
    message_ids = {v for k, v in ids.items() if k != "time_reach"}
    assert message_ids <= set(specs)
    # A customer-bound trigger is filed under its customer, and only there.
    assert rdb.smembers("tw:ix:cust:cust_S") == {ids["specified"].encode()}
    assert rdb.smembers("tw:ix:cust:cust_R") == {ids["bound_reply"].encode(), ids["bound_keyword"].encode()}
    assert not rdb.sismember("tw:ix:kw:发货", ids["bound_keyword"])
    # An any-customer keyword task is filed under each normalised keyword (NFKC, trimmed, lower case).
    for word in ("abc", "hello", "好的", "发货"):
        assert rdb.sismember(f"tw:ix:kw:{word}", ids["any_keyword"]), word
    assert not rdb.exists("tw:ix:kw:ＡＢＣ") and not rdb.exists("tw:ix:kw: Hello ")
    assert rdb.sismember("tw:ix:kw:question", ids["any_reply"])
    assert {b"abc", b"hello", b"\xe5\xa5\xbd\xe7\x9a\x84", "发货".encode(), b"question"} <= rdb.smembers("tw:ix:kws")
    assert {b"2", b"3", b"5", b"8"} <= rdb.smembers("tw:ix:kwlens")
    # Payment: by the payment event and by each default payment keyword.
    assert rdb.sismember("tw:ix:evt:payment", ids["any_payment"])
    for word in ("已付款", "已支付", "拍下了", "付过了"):
        assert rdb.sismember(f"tw:ix:kw:{word}", ids["any_payment"]), word
    assert rdb.sismember("tw:ix:ce:design_done", ids["custom_event"])
    assert specs[ids["specified"]]["c"] == "cust_S"
    assert specs[ids["any_keyword"]].get("c") is None


def test_reconcile_rebuilds_exactly_the_same_index(client, rdb):
    _seed(client)
    registration.reconcile()
    before = index_snapshot(rdb)
    assert before and rdb.exists("tw:ix:built")  # a whole pass marks the index complete
    rdb.flushdb()
    assert tw_keys(rdb) == []
    assert not runtime.current().registry.is_built()  # Redis lost its data: matching waits for the rebuild
    result = registration.reconcile()
    assert result["dropped"] == 0 and result["activated"] == 0
    assert result["registered"] == len(before["tw:spec"])
    assert index_snapshot(rdb) == before
    # A second pass finds nothing to do and changes nothing.
    assert registration.reconcile() == {"registered": 0, "refreshed": 0, "dropped": 0, "activated": 0}
    assert index_snapshot(rdb) == before


def test_full_reconcile_also_rebuilds_the_same_index(client, rdb):
    _seed(client)
    registration.reconcile()
    before = index_snapshot(rdb)
    registration.reconcile(full=True)
    assert index_snapshot(rdb) == before


def test_reconcile_drops_a_cancelled_task_added_back_by_hand(client, rdb):
    keep = receive(client, reply_body(uid(), customer="cust_K"))
    gone = receive(client, reply_body(uid(), customer="cust_K"))
    any_kw = receive(client, reply_body(uid(), trigger={"type": "customer_keyword", "keywords": ["退款"]}))
    for task_id in (gone, any_kw):
        assert_envelope(client.post("/api/task/cancel", json={"task_id": task_id}), 200)
    assert not rdb.hexists("tw:spec", gone) and not rdb.sismember("tw:ix:cust:cust_K", gone)
    assert not rdb.sismember("tw:ix:kw:退款", any_kw)
    # Put them back by hand, as a stale entry would be (e.g. a lost unregister).
    with session_scope() as session:
        stale = [registration.spec_of(session.get(Task, t)) for t in (gone, any_kw)]
    for spec in stale:
        runtime.current().registry.register(spec)
    assert rdb.hexists("tw:spec", gone) and rdb.sismember("tw:ix:cust:cust_K", gone)
    assert rdb.sismember("tw:ix:kw:退款", any_kw)
    result = registration.reconcile()
    assert result["dropped"] == 2
    assert not rdb.hexists("tw:spec", gone) and not rdb.hexists("tw:spec", any_kw)
    assert rdb.smembers("tw:ix:cust:cust_K") == {keep.encode()}
    assert not rdb.sismember("tw:ix:kw:退款", any_kw)
    assert rdb.hexists("tw:spec", keep)


def test_reconcile_registers_a_task_left_pending(client, rdb):
    """A task stored while Redis was unreachable stays pending; reconcile registers it and moves it on."""
    from sqlalchemy import update

    task_id = receive(client, reply_body(uid(), customer="cust_P"))
    with session_scope() as session:
        session.execute(update(Task).where(Task.task_id == task_id).values(status="pending"))
    rdb.flushdb()
    result = registration.reconcile()
    assert result["activated"] == 1
    assert rdb.sismember("tw:ix:cust:cust_P", task_id)
    status = assert_envelope(client.get(f"/api/task/status/{task_id}"), 200)["data"]["status"]
    assert status == "waiting"


def test_reconcile_refreshes_an_entry_compiled_by_an_older_matcher(client, rdb):
    """After an upgrade that changes what a spec holds (e.g. the shop of shop scoping), reconciling
    rewrites the waiting tasks' entries, instead of leaving them as the old version compiled them."""
    task_id = receive(client, reply_body(uid(), customer="cust_U", acc_id="shop_A"))
    current = json.loads(rdb.hget("tw:spec", task_id))
    assert current["a"] == "shop_A"
    old = {k: v for k, v in current.items() if k != "a"}  # what the version before shop scoping stored
    rdb.hset("tw:spec", task_id, json.dumps(old))
    result = registration.reconcile()
    assert result["refreshed"] == 1 and result["registered"] == 0
    assert json.loads(rdb.hget("tw:spec", task_id)) == current
    assert rdb.sismember("tw:ix:cust:cust_U", task_id)


def test_drift_between_index_and_sql_asks_for_a_rebuild_only_when_it_persists(client, rdb):
    """Beat's upkeep rebuilds the index when its count and SQL's count of waiting tasks disagree at two
    checks in a row: one look may fall between a claim's commit and its removal from the index."""
    ids = _seed(client)
    registration.reconcile()
    assert registration.index_drift() == 0
    assert registration.index_drift_persists(5) is False
    rdb.hdel("tw:spec", ids["specified"])  # an entry lost from the index
    assert registration.index_drift() == 1
    assert registration.index_drift_persists(5) is False  # first seen: maybe a claim under way
    assert registration.index_drift_persists(5) is True  # still there one check later: rebuild
    registration.reconcile()
    assert registration.index_drift_persists(5) is False
    rdb.hdel("tw:spec", ids["specified"])
    assert registration.index_drift_persists(5) is False  # a drift gone in between starts the count again
