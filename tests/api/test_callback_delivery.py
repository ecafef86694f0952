"""Delivering the callback outbox (issue 10 items 3 and 4; DESIGN.md rule 10), in this process, against
the 天网 fake on SQLite and PostgreSQL: claims are owned, a flush's work fits inside its claim, posts go
out concurrently, and only a 2xx to the POST itself is delivery (redirects are not followed)."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import redis
from sqlalchemy import select

from app import create_app
from app.infra.db import session_scope
from app.infra.timeutil import utcnow
from app.models import CallbackOutbox, TaskEvent
from app.services import callbacks
from devkit import stores
from devkit.fakes.tianwang import FakeTianwang
from devkit.processes import API_KEY
from devkit.stores import wait_until
from tests.api.helpers import reply_body
from tests.conftest import make_settings, uid


@pytest.fixture
def tianwang():
    with FakeTianwang() as fake:
        yield fake


@pytest.fixture
def system(db_url, redis_base, tianwang):
    """`system(**settings)`: an app whose callbacks go to the fake; returns its test client."""
    def build(**overrides):
        redis_url = f"{redis_base}/8"
        stores.truncate(db_url)
        redis.Redis.from_url(redis_url).flushdb()
        app = create_app(make_settings(db_url, redis_url, callback_url=tianwang.url, **overrides))
        client = app.test_client()
        client.environ_base["HTTP_X_API_KEY"] = API_KEY
        return client
    return build


def owe_callbacks(client, n: int) -> list[str]:
    """n tasks received and cancelled: one `cancelled` callback owed for each."""
    ids = [uid("CB") for _ in range(n)]
    for task_id in ids:
        assert client.post("/api/task/receive", json=reply_body(task_id)).status_code == 200
        assert client.post("/api/task/cancel", json={"task_id": task_id}).status_code == 200
    return ids


def rows() -> list[CallbackOutbox]:
    with session_scope() as session:
        return session.scalars(select(CallbackOutbox).order_by(CallbackOutbox.event_id)).all()


def history(kind: str = "callback") -> list[dict]:
    with session_scope() as session:
        return [e.detail for e in session.scalars(select(TaskEvent).where(TaskEvent.kind == kind)
                                                  .order_by(TaskEvent.id))]


def delivered(outcomes) -> list[callbacks.Delivery]:
    return [callbacks.Delivery(o.event_id, o.task_id, o.status, o.attempts, "delivered") for o in outcomes]


def test_a_lapsed_claim_taken_by_another_flush_is_settled_by_that_flush_only(system):
    owe_callbacks(system(), 3)
    first = callbacks.claim_due(callbacks.BATCH, timedelta(0))  # lapses at once
    second = callbacks.claim_due(callbacks.BATCH, timedelta(seconds=60))
    assert len(first.rows) == len(second.rows) == 3 and first.token != second.token
    assert {r.attempts for r in second.rows} == {2}

    assert callbacks.settle(first, delivered(first.rows)) == []  # no longer the owner: nothing written
    assert {(r.state, r.attempts, r.next_attempt_at) for r in rows()} == {("pending", 2, second.token)}
    assert history() == []

    written = callbacks.settle(second, delivered(second.rows))
    assert len(written) == 3
    assert {(r.state, r.attempts) for r in rows()} == {("delivered", 2)}
    assert [(h["outcome"], h["attempts"]) for h in history()] == [("delivered", 2)] * 3


def test_senders_claiming_at_once_each_take_a_row_once_and_leave_none(system):
    owed = owe_callbacks(system(), 40)
    claimed: list[str] = []

    def sender() -> None:
        while claim := callbacks.claim_due(7, timedelta(seconds=60)).rows:
            claimed.extend(r.event_id for r in claim)

    threads = [threading.Thread(target=sender) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(claimed) == len(set(claimed)) == len(owed)
    assert {(r.state, r.attempts) for r in rows()} == {("pending", 1)}


def test_a_settled_row_is_not_settled_again_by_a_late_owner(system):
    owe_callbacks(system(), 1)
    late = callbacks.claim_due(callbacks.BATCH, timedelta(0))
    again = callbacks.claim_due(callbacks.BATCH, timedelta(seconds=60))
    callbacks.settle(again, delivered(again.rows))
    failed = [callbacks.Delivery(r.event_id, r.task_id, r.status, r.attempts, "failed", error="HTTP 400")
              for r in late.rows]
    assert callbacks.settle(late, failed) == []
    assert [(r.state, r.last_error) for r in rows()] == [("delivered", None)]


def test_the_claim_window_outlasts_the_longest_flush():
    limits = callbacks.Limits(budget=20, post_timeout=10, concurrency=8)
    assert limits.claim_window >= timedelta(seconds=limits.budget + limits.post_timeout)


def test_a_flush_stops_posting_at_its_budget_and_hands_the_rest_back_unattempted(system, tianwang):
    owe_callbacks(system(callback_flush_seconds=1.0, callback_timeout_seconds=5, callback_concurrency=2), 10)
    tianwang.hang(0.6)  # two posts at a time, 0.6 s each: at most two rounds start within 1 s
    first = callbacks.flush()
    assert first["more"] is True
    assert 1 <= first["delivered"] <= 4 and first["delivered"] + first["released"] == 10, first
    handed_back = [r for r in rows() if r.state == "pending"]
    assert len(handed_back) == first["released"]
    assert all(r.attempts == 0 and r.next_attempt_at <= utcnow() for r in handed_back)
    assert callbacks.due_count() == first["released"]

    while callbacks.flush():  # until a flush finds nothing due
        pass
    assert {(r.state, r.attempts) for r in rows()} == {("delivered", 1)}
    assert sorted(e["body"]["event_id"] for e in tianwang.received) == sorted(r.event_id for r in rows())
    assert tianwang.duplicates == 0


def test_posts_of_a_batch_go_out_concurrently_and_no_more_than_the_pool_at_once(system, tianwang):
    owe_callbacks(system(callback_concurrency=3), 9)
    tianwang.hang(0.5)
    assert callbacks.flush() == {"delivered": 9}
    arrivals = sorted(e["time"] for e in tianwang.received)
    under_way = max(sum(1 for t in arrivals if start <= t < start + 0.5) for start in arrivals)
    assert 2 <= under_way <= 3, arrivals


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_a_failed_attempt_and_the_retry_posts_again(system, tianwang, status):
    owe_callbacks(system(), 1)
    # Following it would turn the POST into a GET of the new location (301-303) or repeat it there
    # (307/308, answered 200 here): neither is delivery.
    tianwang.redirect(tianwang.url + "?moved=1", status=status, times=1)
    assert callbacks.flush() == {"retry": 1}
    (row,) = rows()
    assert (row.state, row.attempts, row.delivered_at) == ("pending", 1, None)
    assert f"HTTP {status} redirect to '{tianwang.url}?moved=1' not followed" == row.last_error
    assert [(h["outcome"], h["attempts"]) for h in history()] == [("retry", 1)]
    assert history()[0]["error"] == row.last_error

    wait_until(lambda: callbacks.due_count() == 1, 5, message="the retry due")
    assert callbacks.flush() == {"delivered": 1}
    assert _requests(tianwang) == [("POST", status), ("POST", 200)]
    assert [h["outcome"] for h in history()] == ["retry", "delivered"]


def test_a_post_without_an_answer_within_its_timeout_is_retried(system, tianwang):
    owe_callbacks(system(callback_timeout_seconds=0.5), 1)
    tianwang.hang(3, times=1)
    assert callbacks.flush() == {"retry": 1}
    (row,) = rows()
    assert row.state == "pending" and "Timeout" in row.last_error


def _requests(fake) -> list[tuple[str, int]]:
    """(method, status) of every request the fake received."""
    with fake._cond:
        return [(entry["method"], entry["status"]) for entry in fake.requests]


@pytest.fixture
def flushes_queued(monkeypatch) -> list:
    """The flushes the app asks Celery for (nothing runs them here)."""
    queued: list = []
    monkeypatch.setattr(callbacks.queueing, "enqueue_callback_flush", lambda: queued.append("flush"))
    return queued


def test_callbacks_committed_while_a_flush_runs_are_its_own_and_queue_no_other_flush(system, monkeypatch,
                                                                                       flushes_queued):
    """At a steady rate a flush per commit cost a Celery task per callback: the running flush takes them."""
    client = system()
    owe_callbacks(client, 2)
    del flushes_queued[:]
    more: list[str] = []
    post = callbacks.deliver

    def post_while_more_are_committed(claimed, deadline, limits):
        if not more:
            more.extend(owe_callbacks(client, 2))  # each commit wakes: the flag says a flush is running
        return post(claimed, deadline, limits)

    monkeypatch.setattr(callbacks, "deliver", post_while_more_are_committed)
    assert callbacks.flush() == {"delivered": 4}
    assert flushes_queued == []
    assert {r.state for r in rows()} == {"delivered"}
    owe_callbacks(client, 1)  # the flush has ended: the next commit wakes one
    assert flushes_queued == ["flush"]


def test_a_callback_committed_as_a_flush_finds_nothing_due_is_still_delivered_by_it(system, monkeypatch,
                                                                                  flushes_queued):
    client = system()
    owe_callbacks(client, 1)
    del flushes_queued[:]
    claim = callbacks.claim_due
    claimed: list[int] = []

    def a_commit_lands_after_the_empty_claim(limit, window):
        found = claim(limit, window)
        claimed.append(len(found.rows))
        if claimed == [1, 0]:  # nothing due, the flag not yet cleared: the commit's wake queues nothing
            owe_callbacks(client, 1)
        return found

    monkeypatch.setattr(callbacks, "claim_due", a_commit_lands_after_the_empty_claim)
    assert callbacks.flush() == {"delivered": 2}
    assert flushes_queued == [] and {r.state for r in rows()} == {"delivered"}
