"""Refused sends on the shared live system: retried under max_retry, resumed at the first step 轻简
has not acknowledged, and failed (with 天网 told) when the retries run out. Each test asserts every
frame our side sent (the 轻简 fake records them all), and ends with the drill checks."""
import pytest

from devkit.stores import wait_until
from tests.conftest import uid
from tests.drill_checks import check_drill

pytestmark = pytest.mark.integration


def post(live, customer: str, action: dict, **extra) -> str:
    task_id = uid()
    data = live.post_task(task_id=task_id, type="e2e", customer={"id": customer},
                          trigger={"type": "customer_reply", "keyword": "好的"}, action=action, **extra)
    assert data["status"] == "waiting", data
    return task_id


def frames(live, customer: str) -> list[tuple[str, str, str]]:
    """Every send frame our side addressed to `customer`: (action, req_id, what 轻简 made of it)."""
    return [(f["action"], f["req_id"], f["outcome"]) for f in live.qingjian.frames_for(customer)]


def history(live, task_id: str) -> list[dict]:
    live.use()
    return live.client.get(f"/api/task/{task_id}/events").get_json()["data"]["events"]


def text_delivered_then_file_refused_twice(live, max_retry: int, error: str) -> tuple[str, str, dict]:
    """A text-and-file task fires; 轻简 takes the text, then refuses the next two sends (the file, twice).
    Returns (customer, task_id, the task once it has ended)."""
    q = live.qingjian
    customer = uid("c")
    task_id = post(live, customer, {"type": "send_file", "file_url": "https://example.com/a.zip",
                                    "file_name": "a.zip", "message": "文件如下"}, max_retry=max_retry)
    q.hold()
    try:
        q.say(customer, "好的")
        wait_until(lambda: len(q.sent_to(customer)) == 1, 10, message="the text to be delivered")
        q.fail_next(2, error=error)
    finally:
        q.release()
    return customer, task_id, live.wait_status(task_id, "completed", "failed", timeout=30)


def test_two_refusals_then_success_completes_without_resending_the_acknowledged_text(live):
    customer, task_id, done = text_delivered_then_file_refused_twice(live, max_retry=3, error="busy")
    assert done["status"] == "completed", done
    assert done["retry_count"] == 2
    assert frames(live, customer) == [  # the text once; the file until 轻简 took it
        ("send_text", f"{task_id}:0:0", "delivered"), ("send_file", f"{task_id}:1:0", "refused"),
        ("send_file", f"{task_id}:1:1", "refused"), ("send_file", f"{task_id}:1:2", "delivered")]
    assert done["result"]["sent"] == [f"{task_id}:0:0", f"{task_id}:1:2"]
    failures = [e["detail"] for e in history(live, task_id) if e["kind"] == "attempt_failed"]
    assert [f["attempt"] for f in failures] == [0, 1]
    assert all("busy" in f["error"] for f in failures)
    check_drill(live, {task_id: "completed"})


def test_a_refused_file_after_a_delivered_text_fails_without_sending_the_text_again(live):
    customer, task_id, done = text_delivered_then_file_refused_twice(live, max_retry=1, error="file too large")
    assert done["status"] == "failed" and "file too large" in done["error_message"], done
    assert frames(live, customer) == [
        ("send_text", f"{task_id}:0:0", "delivered"), ("send_file", f"{task_id}:1:0", "refused"),
        ("send_file", f"{task_id}:1:1", "refused")]
    check_drill(live, {task_id: "failed"})  # nothing sent after it failed, 天网 heard running and failed


def test_refused_every_time_fails_after_max_retry_and_tianwang_hears_it(live):
    q = live.qingjian
    customer = uid("c")
    task_id = post(live, customer, {"type": "send_message", "message": "您好"}, max_retry=1)
    q.fail_next(2, error="account banned")
    try:
        q.say(customer, "好的")
        done = live.wait_status(task_id, "failed", "completed", timeout=30)
    finally:
        q.fail_next(0)
    assert done["status"] == "failed", done
    assert done["retry_count"] == 1
    assert "account banned" in done["error_message"]
    assert done["completed_at"] is not None
    assert frames(live, customer) == [("send_text", f"{task_id}:0:0", "refused"),
                                      ("send_text", f"{task_id}:0:1", "refused")]
    check_drill(live, {task_id: "failed"})
    callback = next(e for e in live.tianwang.accepted(task_id).values()
                    if e["task_id"] == task_id and e["status"] == "failed")
    assert "account banned" in callback["error"]


def test_max_retry_zero_fails_on_the_first_refusal(live):
    q = live.qingjian
    customer = uid("c")
    task_id = post(live, customer, {"type": "send_message", "message": "您好"}, max_retry=0)
    q.fail_next(1)
    try:
        q.say(customer, "好的")
        done = live.wait_status(task_id, "failed", "completed", timeout=20)
    finally:
        q.fail_next(0)
    assert done["status"] == "failed" and done["retry_count"] == 0
    assert frames(live, customer) == [("send_text", f"{task_id}:0:0", "refused")]
    check_drill(live, {task_id: "failed"})
