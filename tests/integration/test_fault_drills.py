"""Fault drills: kill -9 a listener or a worker at the worst moment, drop the connection, run two listeners.

Each drill builds a system of its own (`isolated`: own SQLite file, own Redis DB 10-15 flushed first,
own 轻简 and 天网 fakes), because it kills processes the shared live system needs, and ends with the
four checks of tests/drill_checks.py: no task lost, no step sent twice, no callback lost, no callback
event posted twice.
"""
import time

import pytest

from app import runtime
from devkit.stores import wait_until
from tests.conftest import uid
from tests.drill_checks import check_drill, no_callback_lost

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FILE = {"type": "send_file", "file_url": "https://example.com/a.zip", "file_name": "a.zip",
        "message": "这是您要的文件"}


def post(system, customer: str, action: dict | None = None, **extra) -> str:
    task_id = uid()
    data = system.post_task(task_id=task_id, type="drill", customer={"id": customer},
                            trigger={"type": "customer_reply", "keyword": "好的"},
                            action=action or FILE, **extra)
    assert data["status"] == "waiting", data
    return task_id


def procs(system, prefix: str) -> list:
    return [p for p in system.system.procs if p.name.startswith(prefix) and p.alive()]


def active_listener(system):
    """The listener process holding the leadership lock (its token is host:pid:nonce)."""
    system.use()
    rt = runtime.current()
    token = rt.redis.get(f"{rt.settings.redis_prefix}lock:listener:{system.qingjian.url}")
    assert token, "no listener holds the lock"
    pid = int(token.decode().split(":")[1])
    return next(p for p in procs(system, "listener") if p.p.pid == pid)


def delivered(system, customer: str) -> list[tuple[str, str]]:
    return [(s["action"], s["req_id"]) for s in system.qingjian.sent_to(customer)]


def repeated(system, step: str) -> bool:
    return any(f["step"] == step for f in system.qingjian.repeats())


def test_listener_killed_mid_send_sends_each_step_once(isolated):
    # The take-over (the dead leader's lock lapses) outlasts the 3 s send timeout, so the worker counts
    # the unanswered text as failed and retries it: the documented exception, an answer lost with a dying
    # listener; 轻简 recognises the repeat by the step part of its req_id (CONTRACTS.md §2) and does not
    # deliver it twice. max_retry leaves room.
    system = isolated()
    q = system.qingjian
    customer = uid("c")
    task_id = post(system, customer, max_retry=6)
    q.hold()
    try:
        q.say(customer, "好的")
        wait_until(lambda: len(q.sent_to(customer)) == 1, 15, message="the text to be delivered")
        active_listener(system).kill9()  # delivered, unanswered
        wait_until(lambda: q.client_count == 0, 5, message="the dead listener's connection to close")
        system.system.listener("listener-new")
        wait_until(lambda: q.client_count == 1, 20, message="the new listener to connect")
        wait_until(lambda: repeated(system, f"{task_id}:0"), 20, message="the unanswered text to be sent again")
    finally:
        q.release()
    done = system.wait_status(task_id, "completed", "failed", timeout=30)
    assert done["status"] == "completed", done
    sends = delivered(system, customer)
    assert [action for action, _ in sends] == ["send_text", "send_file"]  # each step reached him once
    assert sends[0][1] == f"{task_id}:0:0"
    assert q.failed == []
    check_drill(system, {task_id: "completed"},
                repeats_allowed={f"{task_id}:0": "its answer was lost with the killed listener"})


def test_connection_dropped_mid_send_sends_each_step_once(isolated):
    """轻简 drops the socket after taking the text but before answering: the listener reconnects,
    re-sends what is unanswered under the same req_id, and the task completes with each step once."""
    system = isolated()
    q = system.qingjian
    customer = uid("c")
    task_id = post(system, customer)
    q.hold()
    q.say(customer, "好的")
    assert q.wait_for_sends(1, 15), system.system.dump_logs()
    connects = len(q.connect_times)
    assert q.drop_connections() == 1
    wait_until(lambda: q.client_count == 0, 5, message="the dropped connection to close")
    q.release()  # the held answer goes to a dead socket: lost
    wait_until(lambda: len(q.connect_times) > connects, 30, 0.1, "the listener to reconnect")
    done = system.wait_status(task_id, "completed", timeout=45)
    kinds = [s["action"] for s in q.sent_to(customer)]
    assert kinds == ["send_text", "send_file"], q.sent_to(customer)
    text = [f for f in q.frames_of(task_id) if f["step"] == f"{task_id}:0"]
    assert text[0]["answer"] == "lost" and len(text) == 2  # the unanswered text went again, was recognised
    assert done["result"]["sent"][1:] == [f"{task_id}:1:{done['retry_count']}"]
    check_drill(system, {task_id: "completed"},
                repeats_allowed={f"{task_id}:0": "its answer was lost with the dropped connection"})


def test_worker_killed_while_its_send_is_unanswered(isolated):
    system = isolated()
    q = system.qingjian
    customer = uid("c")
    task_id = post(system, customer)
    q.hold()
    try:
        q.say(customer, "好的")
        wait_until(lambda: len(q.sent_to(customer)) == 1, 15, message="the text to be delivered")
        # The `running` callback settled first: a worker killed between 天网's 2xx and recording it would
        # post it again (at-least-once allows that; this drill is about the action, not that window).
        no_callback_lost(system, [task_id])
        for worker in procs(system, "worker"):
            worker.kill9()  # mid-action: the text is out, its send_result not yet back
    finally:
        q.release()
    system.system.worker("worker-new")
    # No worker waits for 轻简's answer: the listener hands it to whichever worker runs (the new one),
    # which sends the file. Nothing had to be re-driven.
    done = system.wait_status(task_id, "completed", "failed", timeout=60)
    assert done["status"] == "completed", done
    sends = delivered(system, customer)
    assert [action for action, _ in sends] == ["send_text", "send_file"]
    assert sends[0][1] == f"{task_id}:0:0"
    system.use()
    events = system.client.get(f"/api/task/{task_id}/events").get_json()["data"]["events"]
    assert not any(e["kind"] == "redrive" for e in events), events
    check_drill(system, {task_id: "completed"})  # the text's answer reached the listener: no repeat


def test_two_listeners_one_connects_and_the_standby_takes_over(isolated):
    system = isolated(listeners=2)
    q = system.qingjian
    # Exactly one of the two holds the 轻简 connection, and keeps it while the other stands by.
    wait_until(lambda: all("standing by" in p.output() for p in procs(system, "listener")), 20,
               message="both listeners to start")
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        assert q.client_count == 1 and len(q.connect_times) == 1
        time.sleep(0.1)
    customer = uid("c")
    before = post(system, customer, {"type": "send_message", "message": "在的"})
    q.say(customer, "好的")
    system.wait_status(before, "completed", timeout=20)
    leader = active_listener(system)
    leader.kill9()
    wait_until(lambda: q.client_count == 0, 5, message="the dead leader's connection to close")
    # The standby takes the lock once the dead leader's lapses (5 s, workers/listener/__init__.py LOCK_TTL_MS) and
    # it next polls (every second): README's "within 5-6 s". How fast is bench.scale_out's to measure;
    # here a bound three times that, for a loaded machine.
    takeover = 3 * (5 + 1)
    wait_until(lambda: q.client_count == 1, takeover, message=f"the standby to connect within {takeover:g} s")
    assert active_listener(system) is not leader
    task_id = post(system, customer, {"type": "send_message", "message": "又在了"})
    msg_id = q.say(customer, "好的")
    done = system.wait_status(task_id, "completed", timeout=20)
    assert done["triggered_by"]["msg_id"] == msg_id
    assert delivered(system, customer) == [("send_text", f"{before}:0:0"), ("send_text", f"{task_id}:0:0")]
    check_drill(system, {before: "completed", task_id: "completed"})
