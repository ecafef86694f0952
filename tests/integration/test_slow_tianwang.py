"""Drills of a slow or redirecting 天网 (issue 10, items 3 and 4), with the processes of the Procfile:
a worker for everything but callbacks, and a worker of the callbacks queue alone.

Each ends by checking the fake's record of every POST and the outbox in SQL: each callback posted once
(nothing re-claimed while its post was under way), delivered only by a 2xx to the POST itself.
"""
import time
from collections import Counter

import pytest
from sqlalchemy import select

from app.infra.db import session_scope
from app.models import CallbackOutbox
from celeryconfig import CALLBACK_QUEUES, WORKER_QUEUES
from devkit.stores import wait_until
from tests.conftest import uid

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SLOW_POST_SECONDS = 1.5
CALLBACKS = 60


def procfile_workers(live) -> None:
    """The Procfile's two worker lines: `worker` (every queue but callbacks) and `callbacks`."""
    live.system.worker("worker", queues=WORKER_QUEUES)
    live.system.worker("callbacks", queues=CALLBACK_QUEUES)


def reply_task(task_id: str, customer: str) -> dict:
    return dict(task_id=task_id, type="reply", customer={"id": customer},
                trigger={"type": "customer_reply", "keyword": "好的"},
                action={"type": "send_message", "message": "收到"})


def outbox(live, task_ids) -> list:
    live.use()
    with session_scope() as session:
        return session.scalars(select(CallbackOutbox).where(CallbackOutbox.task_id.in_(list(task_ids)))).all()


def posts_by_event(tianwang) -> Counter:
    """How many POSTs the fake received per event_id (whatever it answered)."""
    with tianwang._cond:
        return Counter(entry["body"].get("event_id") for entry in tianwang.received
                       if isinstance(entry["body"], dict))


def test_slow_tianwang_gets_each_callback_once_and_firing_goes_on(isolated):
    live = isolated(workers=0)
    procfile_workers(live)
    live.tianwang.hang(SLOW_POST_SECONDS)  # every POST answered after 1.5 s
    started = time.monotonic()
    cancelled = [uid("SLOW") for _ in range(CALLBACKS)]
    for task_id in cancelled:
        live.post_task(**reply_task(task_id, uid("c")))
        answer = live.client.post("/api/task/cancel", json={"task_id": task_id, "reason": "drill"})
        assert answer.status_code == 200, answer.get_json()

    # While 60 slow callbacks drain, a customer's message still fires its task at once: callbacks
    # have their own queue and worker, so matching and actions never wait behind them.
    fired, customer = uid("FIRE"), uid("c")
    live.post_task(**reply_task(fired, customer))
    live.qingjian.say(customer, "好的")
    live.wait_status(fired, "completed", timeout=60)
    assert len(live.tianwang.events) < CALLBACKS, "the backlog drained before the task fired"

    wait_until(lambda: {row.state for row in outbox(live, cancelled)} == {"delivered"}, 180, 0.5,
               "every cancelled callback delivered")
    took = time.monotonic() - started
    rows = outbox(live, cancelled)
    posts = posts_by_event(live.tianwang)
    print(f"\n{CALLBACKS} callbacks, 天网 answering each in {SLOW_POST_SECONDS}s: all delivered "
          f"{took:.1f}s after the first cancel; {sum(posts.values())} POSTs in all")
    assert len(rows) == CALLBACKS
    assert {row.event_id: posts[row.event_id] for row in rows if posts[row.event_id] != 1} == {}
    assert live.tianwang.duplicates == 0
    assert all(row.attempts == 1 for row in rows)


@pytest.mark.parametrize("status", [301, 307])  # all five 3xx: tests/api/test_callback_delivery.py
def test_a_redirect_is_a_failed_attempt_retried_until_the_post_itself_gets_a_2xx(isolated, status):
    live = isolated(workers=0, listeners=0)
    procfile_workers(live)
    # Where the redirect points answers a GET with 404 and a POST with 200: following it would turn
    # the POST into a GET (301/302/303) or re-POST it elsewhere (307/308); neither is delivery.
    live.tianwang.redirect(live.tianwang.url + "?moved=1", status=status, times=2)
    task_id = uid("REDIR")
    live.post_task(**reply_task(task_id, uid("c")))
    assert live.client.post("/api/task/cancel", json={"task_id": task_id}).status_code == 200

    wait_until(lambda: {row.state for row in outbox(live, [task_id])} == {"delivered"}, 30, 0.2,
               "the callback delivered by a POST answered 200")
    (row,) = outbox(live, [task_id])
    assert row.attempts == 3
    with live.tianwang._cond:
        requests = [(r["method"], r["status"]) for r in live.tianwang.requests]
    assert requests == [("POST", status), ("POST", status), ("POST", 200)]
    events = live.client.get(f"/api/task/{task_id}/events").get_json()["data"]["events"]
    attempts = [e["detail"] for e in events if e["kind"] == "callback"]
    assert [a["outcome"] for a in attempts] == ["retry", "retry", "delivered"]
    assert all(f"HTTP {status}" in a["error"] and "not followed" in a["error"] for a in attempts[:2])
