"""The maintained task counts (app.state.counts) against a GROUP BY over the tables, after every kind of
move, creations by every path, retention purges, folds and a recount; and under concurrent moves."""
from __future__ import annotations

import threading
from datetime import timedelta

from sqlalchemy import func, select, update

from app.domain import states
from app.domain.triggers import TRIGGER_TYPES
from app.infra.db import session_scope
from app.infra.timeutil import utcnow
from app.models import CallbackOutbox, Task, TaskCountDelta, TaskEvent
from app.services import intake, operator, retention
from app.state import counts
from app.state import tasks as task_states
from tests.api.helpers import reply_body, task_body
from tests.conftest import uid


def counted() -> counts.Counts:
    with session_scope() as session:
        return counts.read(session)


def grouped() -> dict:
    """What the tables say, the slow way."""
    with session_scope() as session:
        by_status = dict(session.execute(select(Task.status, func.count()).group_by(Task.status)).all())
        by_trigger = dict(session.execute(select(Task.trigger_type, func.count()).group_by(Task.trigger_type)).all())
        outbox = session.scalar(select(func.count()).select_from(CallbackOutbox))
        moves = dict(session.execute(
            select(TaskEvent.to_status, func.count()).where(TaskEvent.kind == "status",
                                                             TaskEvent.from_status.is_not(None))
            .group_by(TaskEvent.to_status)).all())
    return {"by_status": {s: by_status.get(s, 0) for s in states.STATUSES},
            "by_trigger_type": {t: by_trigger.get(t, 0) for t in TRIGGER_TYPES},
            "callbacks": outbox, "moves": moves}


def assert_exact(client) -> counts.Counts:
    now, truth = counted(), grouped()
    assert now.by_status == truth["by_status"]
    assert now.by_trigger_type == truth["by_trigger_type"]
    assert now.callbacks == truth["callbacks"]
    stats = client.get("/api/task/stats").get_json()["data"]
    assert stats == {"total": sum(truth["by_status"].values()), "by_status": truth["by_status"],
                     "by_trigger_type": truth["by_trigger_type"]}
    return now


def receive(client, body) -> str:
    answer = client.post("/api/task/receive", json=body)
    assert answer.status_code == 200, answer.get_json()
    return body["task_id"]


def move(task_id, target, **kwargs):
    with session_scope() as session:
        assert task_states.move(session, task_id, target, **kwargs).won


def test_every_move_creation_and_purge_keeps_the_counts_exact(client):
    assert counted().total == 0 and counted().received == 0
    replies = [receive(client, reply_body(uid("R"))) for _ in range(12)]
    specified = [receive(client, task_body(uid("S"), for_customer=f"c{i}")) for i in range(4)]
    assert_exact(client)
    with session_scope() as session:  # matching claims a batch in one statement
        claimed = task_states.move_many(session, replies[:8], states.WAITING, states.RUNNING)
    assert len(claimed) == 8
    for task_id in replies[:3]:
        move(task_id, states.COMPLETED, only_from={states.RUNNING})
    for task_id in replies[3:5]:
        move(task_id, states.FAILED, only_from={states.RUNNING}, error="轻简 refused")
    intake.cancel(replies[8], "customer left")
    with session_scope() as session:  # beat's deadline sweep
        assert len(task_states.move_many(session, specified[:2], states.WAITING, states.TIMEOUT)) == 2
    assert_exact(client)
    # The operator's moves out of an end, and 天网 sending a cancelled task again.
    assert operator.retry(replies[3], "try again", actor="test") == states.RUNNING
    assert operator.retry(specified[0], None, actor="test") == states.WAITING
    assert client.post("/api/task/receive", json=reply_body(replies[8])).status_code == 200
    # A task stored another way than intake's (the legacy import adds finished rows itself).
    with session_scope() as session:
        template = session.get(Task, replies[0])
        columns = {c.name: getattr(template, c.name) for c in Task.__table__.columns}
        session.add(Task(**{**columns, "task_id": uid("L"), "status": states.COMPLETED}))
    before_fold = assert_exact(client)
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(TaskCountDelta)) > 0
    assert counts.fold(batch=3) > 0  # several small batches
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(TaskCountDelta)) == 0
    assert assert_exact(client) == before_fold
    truth = grouped()["moves"]
    for status in (states.RUNNING, *states.TERMINAL):  # every move the history recorded, and no other
        assert before_fold.entered[status] == truth.get(status, 0), status
    assert before_fold.received == 17

    # Retention: the finished tasks, made old, go; the counts follow; the counters that only grow stay.
    with session_scope() as session:
        session.execute(update(Task).where(Task.status.in_(states.TERMINAL))
                        .values(updated_at=utcnow() - timedelta(days=91)))
    finished = sum(grouped()["by_status"][s] for s in states.TERMINAL)
    assert finished >= 5
    assert retention.sweep(90, 0)["tasks_purged"] == finished
    after = assert_exact(client)
    assert after.entered == before_fold.entered and after.received == before_fold.received
    assert sum(after.by_status[s] for s in states.TERMINAL) == 0
    counts.fold()
    assert assert_exact(client) == after


def test_a_recount_rebuilds_what_a_lost_delta_would_break(client):
    for _ in range(5):
        receive(client, reply_body(uid("R")))
    with session_scope() as session:  # a delta lost: say, rows written by a process of an older version
        session.execute(TaskCountDelta.__table__.delete())
    assert counted().total == 0
    received_before = counted().received
    recounted = counts.recount()
    assert recounted.by_status[states.WAITING] == 5
    assert recounted.received == max(received_before, 5)
    assert_exact(client)


def test_concurrent_claims_finishes_and_folds_stay_exact(client):
    ids = [receive(client, reply_body(uid("C"))) for _ in range(60)]
    stop = threading.Event()
    errors = []

    def folder():
        while not stop.is_set():
            try:
                counts.fold(batch=7)
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

    def worker(mine):
        try:
            for task_id in mine:
                with session_scope() as session:
                    task_states.move_many(session, [task_id], states.WAITING, states.RUNNING)
                move(task_id, states.COMPLETED if hash(task_id) % 3 else states.FAILED, only_from={states.RUNNING})
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    folding = threading.Thread(target=folder)
    workers = [threading.Thread(target=worker, args=(ids[i::3],)) for i in range(3)]
    folding.start()
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(60)
    stop.set()
    folding.join(60)
    assert not errors, errors
    now = assert_exact(client)
    assert now.by_status[states.COMPLETED] + now.by_status[states.FAILED] == 60
    assert now.entered[states.RUNNING] == 60
    counts.fold()
    assert assert_exact(client) == now
