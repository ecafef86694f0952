"""What Flower sees: the live worker's task events, captured with Celery's own event receiver.

Beat's sweeps (maintenance.tick twice a second, maintenance.upkeep, dispatch.sweep) send no task
events, so they no longer bury the actions in Flower's task list; an action still sends its events.
"""
from __future__ import annotations

import threading

import pytest

from app import runtime
from devkit.stores import wait_until
from tests.conftest import uid

pytestmark = pytest.mark.integration
SWEEPS = {"maintenance.tick", "maintenance.upkeep", "dispatch.sweep"}


class Captured:
    """Every event on the broker's event exchange while open (what Flower consumes)."""

    def __init__(self, celery_app):
        self.app, self.events = celery_app, []
        self._receiver = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self.app.connection_for_read() as conn:
            self._receiver = self.app.events.Receiver(conn, handlers={"*": self.events.append})
            self._receiver.capture(limit=None, timeout=None, wakeup=False)

    def __enter__(self) -> "Captured":
        self._thread.start()
        # Subscribed once the worker's heartbeat (every 2 s) comes through.
        wait_until(lambda: self.of_type("worker-heartbeat"), 15, 0.1, "a worker-heartbeat event")
        return self

    def __exit__(self, *exc) -> None:
        if self._receiver is not None:
            self._receiver.should_stop = True
        self._thread.join(10)

    def of_type(self, kind: str) -> list[dict]:
        return [e for e in list(self.events) if e.get("type") == kind]

    def received_names(self) -> dict[str, str]:
        """uuid -> task name, from the task-received events."""
        return {e["uuid"]: e["name"] for e in self.of_type("task-received")}


def sweep_runs_after_now(rdb, key: str, timeout: float) -> None:
    """Wait for a sweep's own trace: `key` (a lock or heartbeat only that sweep sets) deleted now,
    then written again by its next run."""
    rdb.delete(key)
    wait_until(lambda: rdb.exists(key), timeout, 0.05, f"a sweep to set {key} again")


def test_sweeps_send_no_task_events_while_an_action_does(live):
    live.use()
    rdb, keys = runtime.current().redis, runtime.current().keys
    with Captured(live.app.extensions["celery"]) as captured:
        for _ in range(3):  # three ticks at least
            sweep_runs_after_now(rdb, keys.heartbeat("beat"), 10)
        sweep_runs_after_now(rdb, keys.lock("upkeep"), 15)
        sweep_runs_after_now(rdb, keys.lock("dispatch-sweep"), 25)
        # Then an action: its events come after any the sweeps above would have sent (one dispatcher).
        customer, task_id = uid("c"), uid("EV")
        live.post_task(task_id=task_id, type="events", customer={"id": customer},
                       trigger={"type": "customer_reply", "keyword": "好的"},
                       action={"type": "send_message", "message": "收到"})
        live.qingjian.say(customer, "好的")
        live.wait_status(task_id, "completed")

        def action_succeeded():
            names = captured.received_names()
            return any(names.get(e["uuid"]) == "actions.drain" for e in captured.of_type("task-succeeded"))

        wait_until(action_succeeded, 15, 0.1, "the action's task-succeeded event")
    names = set(captured.received_names().values())
    assert {"messages.drain", "actions.drain"} <= names, names
    assert not names & SWEEPS, names
    task_events = [e for e in captured.events if e["type"].startswith("task-")]
    known = captured.received_names()
    assert all(e["uuid"] in known for e in task_events), "a task event without its task-received"
