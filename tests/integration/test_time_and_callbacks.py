"""Beat's work end to end: time_reach timers, deadlines, reconciliation, and 天网 callbacks.

How late a timer fires is the benchmark's to measure (bench/b_timers.py); here a timer must fire, not
before its time, and once. "Nothing more happens" is checked after beat has swept again (waiting for
its sweeps, not for time). Controls set on the shared fakes are undone after each test (conftest).
"""
import time
from datetime import datetime, timedelta, timezone

import pytest
import redis
from sqlalchemy import select

from app.infra.db import session_scope
from app.models import CallbackOutbox
from devkit.stores import wait_until
from tests.conftest import uid
from tests.drill_checks import check_drill, no_callback_posted_twice

pytestmark = pytest.mark.integration


def at(seconds_from_now: float) -> str:
    return (datetime.now(timezone.utc) + timedelta(seconds=seconds_from_now)).isoformat(timespec="milliseconds")


def timer_task(task_id, customer, when, **extra):
    return dict(task_id=task_id, type="greet", customer={"id": customer}, acc_id="shop_001",
                trigger={"type": "time_reach", "time": when},
                action={"type": "send_message", "message": f"早上好 {task_id}"}, **extra)


def parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts)


@pytest.mark.slow
def test_time_reach_fires_on_time_and_once_with_two_beats(isolated):
    live = isolated(workers=1, beats=2)
    task_id, customer = uid(), uid("c")
    due = datetime.now(timezone.utc) + timedelta(seconds=4)
    live.post_task(**timer_task(task_id, customer, due.isoformat()))
    done = live.wait_status(task_id, "completed", timeout=20)
    # Not before its time (triggered_at is shown to the millisecond, cut, not rounded).
    assert parse(done["triggered_at"]) >= due.replace(microsecond=due.microsecond // 1000 * 1000), done
    live.wait_for_sweeps(after=time.time())  # both beats keep sweeping; nothing may fire again
    assert len(live.qingjian.frames_for(customer)) == 1
    check_drill(live, {task_id: "completed"})


def test_a_thousand_timers_due_in_the_same_second_fire_once_each(live):
    customer = uid("c")
    when = at(6)
    ids = [uid("TM") for _ in range(1000)]
    for task_id in ids:
        live.post_task(**timer_task(task_id, customer, when))
    # One customer: his lane sends them one at a time (about 30 s alone on 2 cores); the bound is for a
    # machine busy with other work too, not a measure (bench/b_timers.py measures).
    wait_until(lambda: len(live.qingjian.sent_to(customer)) >= 1000, 300, 0.5, "1,000 timer sends")
    sends = live.qingjian.frames_for(customer)  # every frame, a repeat included
    assert len(sends) == 1000 and {s["outcome"] for s in sends} == {"delivered"}
    # Each task's message once. Its req_id is attempt 0's unless a send waited in the listener's queue past
    # the lease (6 s here) on a loaded machine: beat then abandons it unsent, and the retry sends it once as
    # attempt 1 (seen once in a CI run); it never leaves twice.
    assert sorted(s["req_id"].rsplit(":", 2)[0] for s in sends) == sorted(ids)
    assert all(s["req_id"].rsplit(":", 2)[1] == "0" for s in sends)
    # 天网 hears each of them complete, once (and the shared system is idle again for the next test).
    wanted = set(ids)
    wait_until(lambda: wanted <= {b["task_id"] for b in live.tianwang.accepted().values() if b["status"] == "completed"},
               300, 0.5, "1,000 completed callbacks")
    completed = [b["task_id"] for b in live.tianwang.accepted().values() if b["status"] == "completed"]
    assert len([t for t in completed if t in wanted]) == 1000


def test_deadline_turns_a_waiting_task_to_timeout_and_tianwang_hears_it(live):
    task_id = uid()
    live.post_task(task_id=task_id, type="t", trigger={"type": "customer_reply", "keyword": uid("kw")},
                   action={"type": "send_message", "message": "x"}, timeout_hours=0.0005)  # 1.8 s
    done = live.wait_status(task_id, "timeout", timeout=15)
    assert "deadline" in done["error_message"]
    wait_until(lambda: "timeout" in live.tianwang.statuses(task_id), 10, message="timeout callback")


def test_cancel_stops_a_timer(live):
    task_id, customer = uid(), uid("c")
    due = datetime.now(timezone.utc) + timedelta(seconds=3)  # the cancel, one call away, comes first
    live.post_task(**timer_task(task_id, customer, due.isoformat()))
    answer = live.client.post("/api/task/cancel", json={"task_id": task_id, "reason": "no longer needed"})
    assert answer.get_json()["data"]["status"] == "cancelled"
    live.wait_for_sweeps(after=due.timestamp())  # beat has swept past the timer's time
    assert live.status(task_id)["status"] == "cancelled"
    assert live.qingjian.frames_for(customer) == []
    wait_until(lambda: live.tianwang.statuses(task_id) == ["cancelled"], 10, message="cancel callback")


@pytest.mark.slow
def test_flushdb_then_reconcile_every_waiting_task_fires_as_before(isolated):
    live = isolated()
    customers = [uid("c") for _ in range(5)]
    keyword = uid("kw")
    bound = [live.post_task(task_id=uid(), type="t", customer={"id": c},
                            trigger={"type": "customer_reply", "keyword": "好的"},
                            action={"type": "send_message", "message": "bound"})["task_id"] for c in customers]
    anyone = live.post_task(task_id=uid(), type="t", trigger={"type": "customer_keyword", "keywords": [keyword]},
                            action={"type": "send_message", "message": "any"})["task_id"]
    settings = live.app.config["SETTINGS"]
    client = redis.Redis.from_url(settings.redis_url)
    client.flushdb()
    assert client.hlen("tw:spec") == 0
    # upkeep (every 5 s) sees the drift and rebuilds the index from SQL
    wait_until(lambda: client.hlen("tw:spec") == 6, 30, 0.2, "the index rebuilt")
    for c in customers:
        live.qingjian.say(c, "好的")
    live.qingjian.say(uid("someone"), f"我要{keyword}")
    for task_id in bound + [anyone]:
        live.wait_status(task_id, "completed", timeout=30)
    assert len(live.qingjian.frames) == 6
    check_drill(live, {task_id: "completed" for task_id in bound + [anyone]})


def _outbox(live, task_id):
    live.use()
    with session_scope() as session:
        return session.scalars(select(CallbackOutbox).where(CallbackOutbox.task_id == task_id)
                               .order_by(CallbackOutbox.created_at)).all()


def _fire_one(live, task_id: str | None = None):
    task_id, customer = task_id or uid(), uid("c")
    live.post_task(task_id=task_id, type="t", customer={"id": customer},
                   trigger={"type": "customer_reply", "keyword": "好"}, action={"type": "send_message", "message": "m"})
    live.qingjian.say(customer, "好")
    live.wait_status(task_id, "completed")
    return task_id


@pytest.mark.slow
def test_tianwang_down_then_up_every_callback_arrives_once_after_dedupe(isolated):
    live = isolated()
    live.tianwang.down()
    ids = [_fire_one(live) for _ in range(5)]

    def refused_twice() -> bool:  # every callback refused twice: its third attempt is claimed
        rows = [row for t in ids for row in _outbox(live, t)]
        return len(rows) == 10 and all(r.state == "pending" and r.attempts >= 3 and r.last_error for r in rows)

    wait_until(refused_twice, 30, 0.2, "every callback refused twice while 天网 is down")
    live.tianwang.up()
    check_drill(live, {t: "completed" for t in ids})
    rows = [row for t in ids for row in _outbox(live, t)]
    assert {row.state for row in rows} == {"delivered"} and min(row.attempts for row in rows) >= 3
    # The attempts while it was down never reached it: it got each event once, signed.
    assert sorted(p["event_id"] for p in live.tianwang.received) == sorted(row.event_id for row in rows)
    assert live.tianwang.bad_signatures == 0


def test_500_is_retried_and_400_is_recorded_not_retried(live):
    retried, rejected = uid(), uid()  # the forced answers are theirs alone: other callbacks may be in flight
    live.tianwang.answer_with(500, times=2, task_id=retried)
    _fire_one(live, retried)
    wait_until(lambda: sorted(live.tianwang.statuses(retried)) == ["completed", "running"], 30, 0.2, "retried callbacks")
    assert max(row.attempts for row in _outbox(live, retried)) >= 2
    answers = [p["status"] for p in live.tianwang.posts(task_id=retried)]
    assert sorted(answers) == [200, 200, 500, 500], answers
    no_callback_posted_twice(live.tianwang, [retried])  # each again only after its 500

    live.tianwang.answer_with(400, times=2, task_id=rejected)
    _fire_one(live, rejected)
    wait_until(lambda: all(row.state != "pending" for row in _outbox(live, rejected)), 20, 0.2, "settled")
    rows = _outbox(live, rejected)
    assert [row.state for row in rows] == ["failed", "failed"]
    assert all(row.attempts == 1 and "400" in row.last_error for row in rows)
    assert [p["status"] for p in live.tianwang.posts(task_id=rejected)] == [400, 400]  # not posted again
    events = live.client.get(f"/api/task/{rejected}/events").get_json()["data"]["events"]
    assert [e["detail"]["outcome"] for e in events if e["kind"] == "callback"] == ["failed", "failed"]


@pytest.mark.slow
def test_a_wrong_secret_fails_the_signature_check(isolated):
    live = isolated(TIANWANG_CALLBACK_SECRET="not-the-receivers-secret")
    task_id = _fire_one(live)
    wait_until(lambda: live.tianwang.bad_signatures >= 2, 20, 0.2, "rejected signatures")
    assert live.tianwang.accepted(task_id) == {}
    wait_until(lambda: all(row.state != "pending" for row in _outbox(live, task_id)), 10, 0.2, "settled")
    rows = _outbox(live, task_id)
    assert len(rows) == 2 and all(row.state == "failed" and "401" in row.last_error for row in rows)
