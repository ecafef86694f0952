"""A task fires at most once: racing claims through the state machine's compare-and-set."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select

from app import runtime
from app.infra.db import session_scope
from app.models import CallbackOutbox, Task, TaskEvent
from app.state import tasks as task_states
from devkit.processes import API_KEY
from tests.api.helpers import assert_envelope, reply_body, task_body
from tests.conftest import uid

THREADS = 20


@pytest.fixture(autouse=True)
def callbacks_owed(app):
    """These races check the callback each winner owes 天网, as with TIANWANG_CALLBACK_URL set."""
    task_states.configure(task_states.CallbackPolicy(enabled=True))
    yield
    runtime.configure(app.config["SETTINGS"])


def _race(n: int, work):
    """Run `work(i)` in `n` threads released together; returns the results (exceptions re-raised)."""
    barrier = threading.Barrier(n, timeout=30)

    def run(i):
        barrier.wait()
        return work(i)

    with ThreadPoolExecutor(n) as pool:
        futures = [pool.submit(run, i) for i in range(n)]
        return [f.result(timeout=60) for f in futures]


def _history(task_id):
    with session_scope() as session:
        moves = [(e.from_status, e.to_status) for e in session.scalars(
            select(TaskEvent).where(TaskEvent.task_id == task_id, TaskEvent.kind == "status")
            .order_by(TaskEvent.id))]
        outbox = [(o.status, o.state) for o in session.scalars(
            select(CallbackOutbox).where(CallbackOutbox.task_id == task_id))]
        status = session.get(Task, task_id).status
    return status, moves, outbox


def test_twenty_threads_claim_one_task_exactly_one_wins(app, client):
    task_id = uid()
    answer = assert_envelope(client.post("/api/task/receive", json=task_body(task_id)), 200)
    assert answer["data"]["status"] == "waiting"

    def claim(_):
        with session_scope() as session:
            return task_states.move(session, task_id, "running")

    results = _race(THREADS, claim)
    winners = [r for r in results if r.won]
    assert len(winners) == 1, results
    assert winners[0].previous == "waiting" and winners[0].callback_event_id
    assert all(r.previous == "running" for r in results if not r.won), results
    status, moves, outbox = _history(task_id)
    assert status == "running"
    assert moves == [("pending", "waiting"), ("waiting", "running")]
    assert outbox == [("running", "pending")]
    with session_scope() as session:
        row = session.get(CallbackOutbox, winners[0].callback_event_id)
        assert row is not None and row.task_id == task_id


def test_claims_racing_a_cancel_have_exactly_one_winner(app, client):
    task_id = uid()
    assert_envelope(client.post("/api/task/receive", json=task_body(task_id)), 200)

    def claim_or_cancel(i):
        target = "running" if i % 2 else "cancelled"
        with session_scope() as session:
            return target, task_states.move(session, task_id, target)

    results = _race(THREADS, claim_or_cancel)
    winners = [(target, moved) for target, moved in results if moved.won]
    assert len(winners) == 1, results
    target = winners[0][0]
    status, moves, outbox = _history(task_id)
    assert status == target
    assert moves == [("pending", "waiting"), ("waiting", target)]
    assert outbox == [(target, "pending")]


def test_twenty_batch_claims_of_one_task_exactly_one_wins(app, client):
    """Matching and beat's timers claim in batches (`move_many`: one UPDATE … WHERE status = 'waiting')."""
    task_id = uid()
    assert_envelope(client.post("/api/task/receive", json=task_body(task_id)), 200)

    def claim(_):
        with session_scope() as session:
            return task_states.move_many(session, [task_id, uid("absent")], "waiting", "running")

    results = _race(THREADS, claim)
    assert sorted(results) == [[]] * (THREADS - 1) + [[task_id]], results
    status, moves, outbox = _history(task_id)
    assert status == "running"
    assert moves == [("pending", "waiting"), ("waiting", "running")]
    assert outbox == [("running", "pending")]


def test_a_batch_claim_passes_over_a_task_that_no_longer_waits(app, client):
    claimed, cancelled, waiting = uid(), uid(), uid()
    for task_id in (claimed, cancelled, waiting):
        assert_envelope(client.post("/api/task/receive", json=task_body(task_id)), 200)
    with session_scope() as session:
        assert task_states.move_many(session, [claimed], "waiting", "running") == [claimed]
    assert_envelope(client.post("/api/task/cancel", json={"task_id": cancelled}), 200)
    with session_scope() as session:  # a later batch (a message matched again, a second beat) names all three
        assert task_states.move_many(session, [claimed, cancelled, waiting], "waiting", "running") == [waiting]
    assert _history(claimed)[:2] == ("running", [("pending", "waiting"), ("waiting", "running")])
    assert _history(cancelled)[:2] == ("cancelled", [("pending", "waiting"), ("waiting", "cancelled")])


def test_the_same_task_received_twenty_times_at_once_is_stored_once(app):
    task_id = uid()
    body = task_body(task_id)

    def post(_):
        response = app.test_client().post("/api/task/receive", json=body, headers={"X-API-Key": API_KEY})
        return response.status_code, response.get_json()

    results = _race(THREADS, post)
    assert all(code == 200 for code, _ in results), results
    assert {answer["data"]["status"] for _, answer in results} <= {"pending", "waiting"}
    status, moves, outbox = _history(task_id)
    assert status == "waiting"
    assert moves == [("pending", "waiting")]
    assert outbox == []
    with session_scope() as session:
        received = session.scalars(select(TaskEvent).where(TaskEvent.task_id == task_id,
                                                           TaskEvent.kind == "received")).all()
        assert len(received) == 1


def test_one_task_id_with_twenty_different_bodies_at_once_one_is_stored(app):
    task_id = uid()

    def post(i):
        body = reply_body(task_id, keyword=f"关键词{i}")
        response = app.test_client().post("/api/task/receive", json=body, headers={"X-API-Key": API_KEY})
        return i, response.status_code, response.get_json()

    results = _race(THREADS, post)
    accepted = [i for i, code, _ in results if code == 200]
    assert len(accepted) == 1, [(i, code) for i, code, _ in results]
    assert all(code == 409 for _, code, _ in results if code != 200)
    assert all(answer["code"] == code for _, code, answer in results)
    with session_scope() as session:
        task = session.get(Task, task_id)
        assert task.trigger["keyword"] == f"关键词{accepted[0]}"
    _, moves, _ = _history(task_id)
    assert moves == [("pending", "waiting")]
