"""Order per customer (issue 13; firing design point 4): sends to one customer leave in the order their
triggering messages arrived, however many workers match and act in parallel; and the tasks one message
fires run in priority order.

Two workers (each -c 2). Every action sends two frames (a text, then a file), so an interleaving of two
actions shows as well as a swap.
"""
import pytest

from devkit.stores import wait_until
from tests.conftest import uid
from tests.integration.firing_checks import FILE, delivered, post_reply_task, reported_once, steps_sent_twice

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CUSTOMERS = 200


def steps_in_order(task_ids: list[str]) -> list[str]:
    """The step names (`<task>:<step>`) the customer must receive, in this order."""
    return [f"{task_id}:{step}" for task_id in task_ids for step in (0, 1)]


def received_steps(qingjian, customer: str) -> list[str]:
    return [req_id.rsplit(":", 1)[0] for _, req_id in delivered(qingjian, customer)]


def wait_all_delivered(system, expected: dict[str, list[str]], timeout: float) -> None:
    q = system.qingjian
    wait_until(lambda: all(len(q.sent_to(c)) >= len(steps) for c, steps in expected.items()), timeout, 0.5,
               f"every send of {len(expected)} customers")


def test_two_messages_in_quick_succession_fire_two_tasks_whose_sends_keep_their_order(isolated):
    system = isolated(workers=2)
    q, tw = system.qingjian, system.tianwang
    customers = [uid("c") for _ in range(CUSTOMERS)]
    fired = {c: [post_reply_task(system, c, "甲", FILE), post_reply_task(system, c, "乙", FILE)] for c in customers}
    for c in customers:  # all customers at once, each one's two messages back to back
        q.say(c, "甲")
        q.say(c, "乙")
    expected = {c: steps_in_order(ids) for c, ids in fired.items()}
    # Bound: 800 sends at the ~50 fired messages/s this 2-core machine sustains (README), with room.
    wait_all_delivered(system, expected, 120)
    out_of_order = {c: received_steps(q, c) for c in customers if received_steps(q, c) != expected[c]}
    assert not out_of_order, f"{len(out_of_order)} of {CUSTOMERS} customers: {list(out_of_order.items())[:3]}"
    assert steps_sent_twice(q) == {} and q.duplicates_ignored == 0 and q.failed == []
    for task_id in (t for ids in fired.values() for t in ids):
        assert system.wait_status(task_id, "completed")["status"] == "completed"
    all_ids = [t for ids in fired.values() for t in ids]
    assert tw.wait_for(lambda t: all(reported_once(t, i, "running", "completed") for i in all_ids), 60)


def test_one_message_firing_two_tasks_runs_the_urgent_one_first(isolated):
    system = isolated(workers=2)
    q, tw = system.qingjian, system.tianwang
    customers = [uid("c") for _ in range(CUSTOMERS // 4)]
    # The normal task is the older one: without priority, oldest first would send it first.
    fired = {c: [post_reply_task(system, c, "好的", FILE, priority="normal"),
                 post_reply_task(system, c, "好的", FILE, priority="urgent")] for c in customers}
    for c in customers:
        q.say(c, "好的")
    expected = {c: steps_in_order([urgent, normal]) for c, (normal, urgent) in fired.items()}
    wait_all_delivered(system, expected, 60)
    out_of_order = {c: received_steps(q, c) for c in customers if received_steps(q, c) != expected[c]}
    assert not out_of_order, f"{len(out_of_order)} of {len(customers)} customers: {list(out_of_order.items())[:3]}"
    all_ids = [t for ids in fired.values() for t in ids]
    for task_id in all_ids:
        assert system.wait_status(task_id, "completed")["status"] == "completed"
    assert tw.wait_for(lambda t: all(reported_once(t, i, "running", "completed") for i in all_ids), 60)
