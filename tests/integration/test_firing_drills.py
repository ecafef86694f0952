"""Drills of the rebuilt firing path's promises under outages (issue 10 items 2, 9, 10; DESIGN.md rules 8, 11):
the listener away while a task fires, Redis restarted empty as a customer speaks, the broker away.

Each builds a system of its own (processes are killed). Bounds are derived from the settings the
harness gives the processes (devkit.processes.base_env: QINGJIAN_SEND_TIMEOUT=3, ACTION_LEASE_SECONDS=6,
so the action lease is max(6, 3 + 5 + 1) = 9 s) and beat's schedule (tick every 0.5 s, upkeep every 5 s).
"""
import pytest

from beat_schedule import BEAT_SCHEDULE
from devkit.stores import wait_until
from tests.conftest import uid
from tests.integration.firing_checks import (
    api_event,
    delivered,
    frames_of,
    history,
    lease_seconds,
    post_event_task,
    reported,
    reported_once,
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
