"""Drills of the rebuilt firing path's promises under outages (issue 10 items 2, 9, 10; DESIGN.md rules 8, 11):
the listener away while a task fires, Redis restarted empty as a customer speaks, the broker away.

Each builds a system of its own (processes are killed). Bounds are derived from the settings the
harness gives the processes (devkit.processes.base_env: QINGJIAN_SEND_TIMEOUT=3, ACTION_LEASE_SECONDS=6,
so the action lease is max(6, 3 + 5 + 1) = 9 s) and beat's schedule (tick every 0.5 s, upkeep every 5 s).
"""
import time

import pytest
import redis

from app import runtime
from app.domain.events import InboundEvent
from app.services import actions, firing
from app.services.maintenance import MATCH_REDRIVE_SECONDS
from beat_schedule import BEAT_SCHEDULE
from devkit.stores import wait_until
from tests.conftest import uid
from tests.integration.firing_checks import (
    OwnRedis,
    api_event,
    delivered,
    frames_of,
    history,
    inbound_row,
    lease_seconds,
    post_event_task,
    post_reply_task,
    reported,
    reported_once,
    restart_dead,
    system_on,
)
from tests.integration.test_fault_drills import active_listener

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TICK = BEAT_SCHEDULE["maintenance.tick"]["schedule"].total_seconds()
UPKEEP = BEAT_SCHEDULE["maintenance.upkeep"]["schedule"].total_seconds()
SLACK = 15.0  # process start-up and a loaded 2-core machine


def attempts_bound(system, attempts: int) -> float:
    """How long `attempts` attempts whose sends never leave take at most: each ends when its lease lapses
    and beat's next tick re-drives it; between two, the retry backoff (2 s, 4 s, ... for attempt 0, 1, ...)."""
    lease = lease_seconds(system)
    return attempts * (lease + TICK) + sum(2.0 * 2 ** k for k in range(attempts - 1))


def stop_listener(system) -> None:
    active_listener(system).kill9()
    wait_until(lambda: system.qingjian.client_count == 0, 5, message="the listener's connection to close")


def start_listener(system, name: str = "listener-back") -> None:
    connects = len(system.qingjian.connect_times)
    system.system.listener(name)
    wait_until(lambda: len(system.qingjian.connect_times) > connects, 30, 0.1, "the listener to connect")


def fire_canary(system) -> str:
    """Fire a one-step task after everything else and wait for its send: the listener reads the send
    stream in order, so by then it has taken (or refused) every send queued before."""
    customer = uid("canary")
    event = uid("evt")
    task_id = post_event_task(system, customer, event, {"type": "send_message", "message": "在的"})
    api_event(system, event, customer)
    wait_until(lambda: delivered(system.qingjian, customer), 30, 0.1, "the canary's send")
    return task_id


def test_listener_down_until_a_task_fails_none_of_its_sends_ever_leaves(isolated):
    """Issue 10.2: the listener is away while a task fires; each attempt's send waits in the stream until
    the attempt's lease lapses and beat gives it up; the task fails, 天网 is told once; then the listener
    starts and must send none of those queued attempts."""
    system = isolated()
    q, tw = system.qingjian, system.tianwang
    stop_listener(system)
    customer, event = uid("c"), uid("evt")
    task_id = post_event_task(system, customer, event, max_retry=1)  # two attempts
    api_event(system, event, customer)

    done = system.wait_status(task_id, "failed", "timeout", timeout=attempts_bound(system, 2) + SLACK)
    assert done["retry_count"] == 1, done
    failures = [e["detail"] for e in history(system, task_id) if e["kind"] == "attempt_failed"]
    assert [f["attempt"] for f in failures] == [0, 1], failures
    assert all(f["error"].startswith("not sent") for f in failures), failures
    assert tw.wait_for(lambda t: reported_once(t, task_id, "running", done["status"]), 15), reported(tw, task_id)

    start_listener(system)
    canary = fire_canary(system)
    assert frames_of(q, task_id) == []  # neither delivered nor refused: 轻简 never saw them
    assert q.duplicates_ignored == 0
    assert tw.wait_for(lambda t: reported_once(t, canary, "running", "completed"), 15)
    assert reported_once(tw, task_id, "running", done["status"]), reported(tw, task_id)


def test_listener_back_before_the_attempts_run_out_each_step_goes_once(isolated):
    """The listener returns after the first attempt was given up: a later attempt delivers each step
    once, and nothing of the given-up attempt leaves."""
    system = isolated()
    q, tw = system.qingjian, system.tianwang
    stop_listener(system)
    customer, event = uid("c"), uid("evt")
    task_id = post_event_task(system, customer, event, max_retry=4)
    api_event(system, event, customer)
    wait_until(lambda: any(e["kind"] == "attempt_failed" for e in history(system, task_id)),
               attempts_bound(system, 1) + SLACK, 0.2, "the first attempt to be given up")
    start_listener(system)

    # From here: a send queued while the listener started may still expire (3 s deadline), costing one
    # more attempt; the next goes out.
    done = system.wait_status(task_id, "completed", "failed", timeout=attempts_bound(system, 3) + SLACK)
    assert done["status"] == "completed", done
    attempt = done["retry_count"]
    assert attempt >= 1
    assert delivered(q, customer) == [("send_text", f"{task_id}:0:{attempt}"), ("send_file", f"{task_id}:1:{attempt}")]
    assert [f["req_id"] for f in q.failed] == [] and q.duplicates_ignored == 0
    assert tw.wait_for(lambda t: reported_once(t, task_id, "running", "completed"), 15), reported(tw, task_id)


def logged(system, kind: str, event: str) -> bool:
    """Whether a `kind` process (worker, listener) logged a line with this `event`."""
    return any(f'"event": "{event}"' in p.output() for p in system.system.procs if p.name.startswith(kind))


def test_redis_restarted_empty_a_message_at_once_fires_its_task_once_after_the_rebuild(tmp_path):
    """Issue 10.9: Redis restarts empty; the customer speaks as soon as the listener is back, before the
    index is rebuilt. The message waits in SQL and fires its task once the reconciliation completes the
    index. Beat is stopped across the restart so that the message surely comes first."""
    own = OwnRedis()
    system = system_on(tmp_path, f"{own.url}/0")
    q, tw = system.qingjian, system.tianwang
    try:
        customer = uid("c")
        task_id = post_reply_task(system, customer)
        next(p for p in system.system.procs if p.name.startswith("beat")).stop()
        connects = len(q.connect_times)
        own.kill()
        own.start_empty()  # same address, nothing in it
        restarted = time.monotonic()
        fresh = redis.Redis.from_url(f"{own.url}/0")
        # The listener leaves 轻简 while Redis is away and comes back within a second or two of it.
        wait_until(lambda: len(q.connect_times) > connects and q.client_count == 1, 30, 0.05,
                   "the listener back on 轻简")
        msg_id = q.say(customer, "好的")
        print(f"the customer spoke {time.monotonic() - restarted:.1f}s after Redis restarted")
        wait_until(lambda: inbound_row(system, msg_id), 10, 0.1, "the message recorded in SQL")
        assert not fresh.exists("tw:ix:built")

        def matched_against_an_incomplete_index():
            restart_dead(system, "worker")  # kombu can end a worker when its broker restarts
            return logged(system, "worker", "index_incomplete")

        wait_until(matched_against_an_incomplete_index, 60, 0.2, "matching to find the index incomplete")
        assert system.status(task_id)["status"] == "waiting"
        assert inbound_row(system, msg_id).matched_at is None

        system.system.beat("beat-back")
        # Bound: beat's first upkeep (every 5 s) sees the index incomplete, rebuilds it and hands the
        # unmatched message over again at once.
        done = system.wait_status(task_id, "completed", "failed", timeout=2 * UPKEEP + SLACK)
        assert done["status"] == "completed", done
        assert done["triggered_by"]["msg_id"] == msg_id
        assert fresh.exists("tw:ix:built")
        assert delivered(q, customer) == [("send_text", f"{task_id}:0:0"), ("send_file", f"{task_id}:1:0")]
        assert q.duplicates_ignored == 0
        assert inbound_row(system, msg_id).fired == [task_id]
        assert tw.wait_for(lambda t: reported_once(t, task_id, "running", "completed"), 15), reported(tw, task_id)
    finally:
        system.stop()
        own.kill()


def test_listener_outlives_its_separate_broker_and_the_message_fires_once_it_is_back(isolated):
    """Issue 10.10: CELERY_BROKER_URL is a Redis of its own, and it goes down. The listener keeps running
    (same process, heartbeat beating, still on 轻简), records the customer's message in SQL and leaves it in
    the match inbox; once the broker is back, beat wakes a drain (or hands the unmatched message over
    again from SQL) and the task fires once."""
    broker = OwnRedis()
    try:
        system = isolated(CELERY_BROKER_URL=f"{broker.url}/0")
        q, tw = system.qingjian, system.tianwang
        listener = active_listener(system)
        connects = len(q.connect_times)
        customer = uid("c")
        task_id = post_reply_task(system, customer)
        broker.kill()

        msg_id = q.say(customer, "好的")
        wait_until(lambda: inbound_row(system, msg_id), 15, 0.1, "the message recorded in SQL")
        # The message waits in the match inbox (the app's Redis is up); the drain's wake could not be queued.
        wait_until(lambda: logged(system, "listener", "inbox_wake_failed"), 15, 0.1, "the failed wake logged")
        rt = system.use() and runtime.current()
        first = float(rt.redis.get(rt.keys.heartbeat("listener")))
        # The listener beats every 2 s while it serves: two more beats show it still serving.
        wait_until(lambda: float(rt.redis.get(rt.keys.heartbeat("listener")) or 0) > first + 2, 15, 0.2,
                   "the listener's heartbeat to go on")
        assert listener.alive() and q.client_count == 1 and len(q.connect_times) == connects
        assert system.status(task_id)["status"] == "waiting"

        broker.start_empty()  # back

        def fired():
            for kind in ("worker", "beat"):
                restart_dead(system, kind)
            return system.status(task_id)["status"] != "waiting"

        # Bound: a message not matched MATCH_REDRIVE_SECONDS after it was handed over is handed over again
        # by the next upkeep (every 5 s).
        wait_until(fired, MATCH_REDRIVE_SECONDS + 2 * UPKEEP + SLACK, 0.2, "the task to fire")
        done = system.wait_status(task_id, "completed", "failed", timeout=20)
        assert done["status"] == "completed", done
        assert done["triggered_by"]["msg_id"] == msg_id
        assert listener.alive()
        assert delivered(q, customer) == [("send_text", f"{task_id}:0:0"), ("send_file", f"{task_id}:1:0")]
        assert tw.wait_for(lambda t: reported_once(t, task_id, "running", "completed"), 30), reported(tw, task_id)
    finally:
        broker.kill()


class WorkerKilled(BaseException):
    """kill -9 as seen from inside the worker: nothing after this point runs."""


def test_a_task_whose_starter_died_at_the_head_of_its_lane_is_re_driven_within_its_lease(live, monkeypatch):
    """Matching claimed the task and its lane made it the head; the worker died before queuing its first
    send. Beat re-drives it when the claim's lease lapses: it must then go, within lease + one tick (before
    the fix its lane kept it waiting until the head was dropped, ACTION_HOLD_SECONDS = 60 s)."""
    customer = uid("c")
    task_id = post_reply_task(live, customer)
    live.use()
    event = InboundEvent.from_wire("message", {"msg_id": f"m-{uid()}", "acc_id": "shop_001", "from_id": customer,
                                               "msg_type": "text", "content": "好的"}, received_at=time.time())

    def killed(*_args, **_kwargs):
        raise WorkerKilled()

    with monkeypatch.context() as patch:
        patch.setattr(actions, "start", killed)
        with pytest.raises(WorkerKilled):
            firing.process_batch([{"event": event.as_dict(), "lane": ["shop_001", customer], "mark": "gone"}])
    assert live.status(task_id)["status"] == "running"
    done = live.wait_status(task_id, "completed", "failed", timeout=lease_seconds(live) + TICK + SLACK)
    assert done["status"] == "completed", done
    assert delivered(live.qingjian, customer) == [("send_text", f"{task_id}:0:0"), ("send_file", f"{task_id}:1:0")]
