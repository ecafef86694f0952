"""Races between intake and beat's reconciliation of the Redis index (found by the chaos drill: a task
stayed `waiting` although its customer's message was recorded and matched).

Intake puts a new task into the index first and then stores it as `waiting` in one transaction; the
reconciliation drops index entries whose task is not listening in SQL. Run in between, it used to drop
the new task's entry, and the task waited outside the index, never to fire. An entry whose task is not
in SQL is now dropped only once it is older than a receive request can be.
"""
import time

import pytest

from app.services import registration
from app.state import tasks as task_states
from tests.conftest import uid

pytestmark = pytest.mark.integration


def body(customer: str) -> dict:
    return {"task_id": uid(), "type": "race", "customer": {"id": customer},
            "trigger": {"type": "customer_reply", "keyword": "好的"},
            "action": {"type": "send_message", "message": "在的"}}


def test_a_reconciliation_between_intakes_index_write_and_its_commit_leaves_the_task_listening(
        client, rdb, monkeypatch):
    store = task_states.store_new

    def store_after_a_reconciliation(session, task, *, listening):
        registration.reconcile()  # beat's upkeep, at the worst moment
        return store(session, task, listening=listening)

    monkeypatch.setattr(task_states, "store_new", store_after_a_reconciliation)
    sent = body(uid("c"))
    answer = client.post("/api/task/receive", json=sent)
    assert answer.status_code == 200 and answer.get_json()["data"]["status"] == "waiting", answer.get_json()
    assert rdb.hexists("tw:spec", sent["task_id"]), "stored as waiting, but not in the index"


def test_a_reconciliation_after_the_commit_keeps_the_task_listening(client, rdb):
    sent = body(uid("c"))
    assert client.post("/api/task/receive", json=sent).get_json()["data"]["status"] == "waiting"
    registration.reconcile()
    assert rdb.hexists("tw:spec", sent["task_id"])


def test_an_entry_whose_task_never_reached_sql_is_dropped_once_it_is_older_than_a_receive(client, rdb):
    from app import runtime
    from app.services.registration import INTAKE_GRACE_SECONDS

    registry = runtime.current().registry
    orphan, in_flight = uid("orphan"), uid("inflight")  # a request died between its index write and its commit
    for task_id, age in ((orphan, INTAKE_GRACE_SECONDS + 1), (in_flight, 0)):
        registry.register({"id": task_id, "t": "customer_reply", "p": 2, "ts": time.time() - age, "c": uid("c"),
                           "k": ["好的"]})
    registration.reconcile()
    assert not rdb.hexists("tw:spec", orphan)
    assert rdb.hexists("tw:spec", in_flight)
