"""Retention (app.services.retention, beat's maintenance.retention): old finished tasks go with their
history and settled callbacks, in small batches; a task that still owes 天网 a callback stays; inbound
messages follow MESSAGE_RETENTION_DAYS; 0 keeps everything; a status move or a redelivery racing a
purge wins."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import redis
from sqlalchemy import func, select, text, update

from app import create_app
from app.domain import states
from app.infra.db import session_scope
from app.infra.timeutil import utcnow
from app.models import CallbackOutbox, InboundMessage, Task, TaskEvent
from app.services import callbacks, retention
from app.state import tasks as task_states
from devkit import processes, stores
from devkit.fakes.tianwang import FakeTianwang
from tests.api.helpers import reply_body
from tests.conftest import make_settings, uid

OLD = timedelta(days=91)


@pytest.fixture
def tianwang():
    fake = FakeTianwang().start()
    yield fake
    fake.stop()


@pytest.fixture
def client(db_url, redis_base, tianwang):
    """The API with callbacks on (to the 天网 fake), so finished tasks owe callbacks until delivered."""
    redis_url = f"{redis_base}/8"
    stores.truncate(db_url)
    redis.Redis.from_url(redis_url).flushdb()
    app = create_app(make_settings(db_url, redis_url, callback_url=tianwang.url))
    test_client = app.test_client()
    test_client.environ_base["HTTP_X_API_KEY"] = processes.API_KEY
    return test_client


def finished(client, status=states.COMPLETED, age=OLD) -> str:
    """A task received, fired and ended `age` ago."""
    task_id = uid("F")
    assert client.post("/api/task/receive", json=reply_body(task_id)).status_code == 200
    with session_scope() as session:
        if status == states.CANCELLED:
            assert task_states.move(session, task_id, status).won
        else:
            assert task_states.move(session, task_id, states.RUNNING).won
            assert task_states.move(session, task_id, status, only_from={states.RUNNING}).won
    age_task(task_id, age)
    return task_id


def age_task(task_id, age):
    with session_scope() as session:
        session.execute(update(Task).where(Task.task_id == task_id).values(updated_at=utcnow() - age))


def deliver_callbacks():
    while callbacks.flush().get("more"):
        pass


def rows_of(task_id) -> tuple[int, int, int]:
    with session_scope() as session:
        return (session.scalar(select(func.count()).select_from(Task).where(Task.task_id == task_id)),
                session.scalar(select(func.count()).select_from(TaskEvent).where(TaskEvent.task_id == task_id)),
                session.scalar(select(func.count()).select_from(CallbackOutbox).where(CallbackOutbox.task_id == task_id)))


def test_old_finished_tasks_go_with_their_history_and_callbacks_and_nothing_else(client):
    old = [finished(client, status) for status in (states.COMPLETED, states.FAILED, states.CANCELLED)]
    young = finished(client, age=timedelta(days=89))
    waiting_long = uid("W")  # an old task that still listens is never a finished one
    assert client.post("/api/task/receive", json=reply_body(waiting_long)).status_code == 200
    age_task(waiting_long, timedelta(days=400))
    deliver_callbacks()
    assert all(rows_of(task_id)[1] > 0 and rows_of(task_id)[2] > 0 for task_id in old)

    done = retention.sweep(90, 0)

    assert done == {"tasks_purged": 3, "messages_purged": 0}
    for task_id in old:
        assert rows_of(task_id) == (0, 0, 0)
    assert rows_of(young)[0] == 1 and rows_of(waiting_long)[0] == 1
    assert client.get(f"/api/task/status/{old[0]}").status_code == 404


def test_a_task_that_still_owes_a_callback_stays_until_it_is_delivered(client, tianwang):
    tianwang.answer_with(503)  # 天网 down: the callbacks stay pending
    owed = finished(client)
    callbacks.flush()
    with session_scope() as session:
        assert session.scalar(select(CallbackOutbox.state).where(CallbackOutbox.task_id == owed)
                              .order_by(CallbackOutbox.created_at.desc()).limit(1)) == "pending"
    assert retention.sweep(90, 0)["tasks_purged"] == 0
    assert rows_of(owed)[0] == 1

    tianwang.reset_controls()
    with session_scope() as session:  # due now, not after the backoff
        session.execute(update(CallbackOutbox).values(next_attempt_at=utcnow()))
    deliver_callbacks()
    assert tianwang.wait_for_status(owed, states.COMPLETED)
    assert retention.sweep(90, 0)["tasks_purged"] == 1
    assert rows_of(owed) == (0, 0, 0)


def test_a_backlog_goes_in_small_batches(client):
    ids = [finished(client, status) for status in (states.COMPLETED, states.FAILED) * 4]
    deliver_callbacks()
    assert retention.purge_tasks(states.COMPLETED, utcnow() - timedelta(days=90), batch=3) == 3
    done = retention.sweep(90, 0, batch=3)
    assert done["tasks_purged"] == 5
    assert all(rows_of(task_id)[0] == 0 for task_id in ids)


def test_zero_days_keeps_everything(client):
    task_id = finished(client, age=timedelta(days=3650))
    deliver_callbacks()
    add_message(days_old=3650)
    assert retention.sweep(0, 0) == {"tasks_purged": 0, "messages_purged": 0}
    assert rows_of(task_id)[0] == 1


def add_message(days_old: float) -> int:
    with session_scope() as session:
        row = InboundMessage(source="test", msg_id=uid("m"), kind="message", from_id="c1", content="好的",
                             received_at=utcnow() - timedelta(days=days_old))
        session.add(row)
        session.flush()
        return row.id


def test_inbound_messages_go_after_their_own_retention(client):
    old, young = add_message(days_old=8), add_message(days_old=6)
    assert retention.sweep(90, 7)["messages_purged"] == 1
    with session_scope() as session:
        assert set(session.scalars(select(InboundMessage.id))) == {young}
    assert old != young


# -- races (PostgreSQL: row locks; SQLite serialises writers, so the purge simply waits at BEGIN) -----

def purge_is_waiting_on_a_lock() -> bool:
    with session_scope() as session:  # a transaction per look: pg_stat_activity is a snapshot per transaction
        return bool(session.scalar(text("SELECT count(*) FROM pg_stat_activity "
                                        "WHERE datname = current_database() AND wait_event_type = 'Lock'")))


def purge_while(db_url, hold) -> int:
    """Run a purge while another transaction, `hold(session)`, has moved a row and not committed yet."""
    if not db_url.startswith("postgresql"):
        pytest.skip("row locks: SQLite lets one writer in at a time, so there is no race to lose")
    result = {}
    with session_scope() as held:
        hold(held)
        purge = threading.Thread(target=lambda: result.update(n=retention.sweep(90, 0)["tasks_purged"]))
        purge.start()
        stores.wait_until(lambda: purge_is_waiting_on_a_lock() or "n" in result, 10,
                          message="the purge to wait for the lock")
        assert "n" not in result, f"the purge went ahead without waiting: {result}"
    purge.join(30)
    return result["n"]


def test_an_operator_retry_racing_the_purge_wins(client, db_url):
    task_id = finished(client, states.FAILED)
    deliver_callbacks()

    def retry(session):
        assert task_states.move(session, task_id, states.RUNNING, only_from={states.FAILED}, operator=True).won

    assert purge_while(db_url, retry) == 0
    with session_scope() as session:
        assert session.get(Task, task_id).status == states.RUNNING


def test_a_redelivery_racing_the_purge_wins(client, db_url):
    task_id = finished(client)
    deliver_callbacks()

    def redeliver(session):  # what operator.redeliver_callback writes
        session.execute(update(CallbackOutbox).where(CallbackOutbox.task_id == task_id)
                        .values(state="pending", next_attempt_at=utcnow()))

    assert purge_while(db_url, redeliver) == 0
    assert rows_of(task_id)[0] == 1
