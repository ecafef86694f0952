"""A step leaves once however often its send is handed over, on the shared live system.

Two runs of the same attempt of an action (a lane's head started twice, a re-drive racing the run it
re-drives) both hand `<task>:<step>:<attempt>` to the listener; the hand-off queues a req_id once, so 轻简
gets the frame once. Run here by starting the task's action a second time, in this process, while the
first send's answer is held back (for less than QINGJIAN_SEND_TIMEOUT, so it is not a failed attempt).
"""
import pytest

from app import runtime
from app.services import actions
from devkit.stores import wait_until
from tests.conftest import uid
from tests.drill_checks import check_drill

pytestmark = pytest.mark.integration


def test_an_action_started_twice_while_its_send_is_in_flight_sends_the_step_once(live):
    q = live.qingjian
    customer = uid("c")
    task_id = live.post_task(task_id=uid(), type="once", customer={"id": customer},
                             trigger={"type": "customer_reply", "keyword": "好的"},
                             action={"type": "send_message", "message": "在的"})["task_id"]
    q.hold()
    try:
        q.say(customer, "好的")
        wait_until(lambda: len(q.frames_of(task_id)) == 1, 30, message="the text to be sent")
        live.use()
        rt = runtime.current()
        handed = rt.redis.xlen(rt.keys.send_stream)
        actions.start([task_id])  # the same attempt, started again: it hands the same req_id over
        assert rt.redis.xlen(rt.keys.send_stream) == handed  # ... which was not queued again
    finally:
        q.release()
    live.wait_status(task_id, "completed")
    assert [(f["req_id"], f["outcome"]) for f in q.frames_of(task_id)] == [(f"{task_id}:0:0", "delivered")]
    check_drill(live, {task_id: "completed"})
