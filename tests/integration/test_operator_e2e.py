"""The operator's moves end to end on the live system (issue 11.4; CONTRACTS.md §1 "retry"): a failed task
retried through POST /api/task/retry runs again from the first step 轻简 has not acknowledged; a timed-out
one waits again with a new deadline; a cancelled one received again unchanged listens again, from then.
"""
import time

import pytest

from devkit.stores import wait_until
from tests.conftest import uid
from tests.integration.firing_checks import FILE, delivered, history, post_reply_task, reported

pytestmark = pytest.mark.integration

TEXT = {"type": "send_message", "message": "在的"}


def retry(live, task_id: str, reason: str | None = "客户要求重发"):
    live.use()
    return live.client.post("/api/task/retry", json={"task_id": task_id, **({"reason": reason} if reason else {})})


def refused(live, customer: str) -> list[str]:
    return [f["req_id"] for f in list(live.qingjian.failed) if (f["data"] or {}).get("to_id") == customer]


def since_the_retry(live, task_id: str) -> list[dict]:
    """The history lines after the operator's retry (its own line first)."""
    lines = history(live, task_id)
    at = next(i for i, e in enumerate(lines) if (e.get("detail") or {}).get("retry"))
    return lines[at:]


def test_a_failed_task_retried_sends_only_what_was_not_acknowledged_and_completes(live):
    q, tw = live.qingjian, live.tianwang
    customer = uid("c")
    task_id = post_reply_task(live, customer, action=FILE, max_retry=0)
    q.hold()  # the text goes through; then the file is refused, and with max_retry 0 the task fails
    try:
        q.say(customer, "好的")
        wait_until(lambda: delivered(q, customer), 10, 0.05, "the text to be delivered")
        q.fail_next(1, error="busy")
    finally:
        q.release()
    failed = live.wait_status(task_id, "failed", "completed", timeout=20)
    assert failed["status"] == "failed", failed
    assert tw.wait_for(lambda t: reported(t, task_id) == {"running": 1, "failed": 1}, 15), reported(tw, task_id)

    answer = retry(live, task_id)
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["data"] == {"task_id": task_id, "status": "running"}
    done = live.wait_status(task_id, "completed", "failed", timeout=20)
    assert done["status"] == "completed", done
    assert delivered(q, customer) == [("send_text", f"{task_id}:0:0"), ("send_file", f"{task_id}:1:1")]
    assert refused(live, customer) == [f"{task_id}:1:0"]
    assert done["result"]["sent"] == [f"{task_id}:0:0", f"{task_id}:1:1"]
    # 天网 hears the task run and complete again, under new event ids (its dedupe keeps each).
    assert tw.wait_for(lambda t: reported(t, task_id) == {"running": 2, "failed": 1, "completed": 1}, 15), \
        reported(tw, task_id)
    line = since_the_retry(live, task_id)[0]
    assert (line["from_status"], line["to_status"]) == ("failed", "running")
    assert line["detail"]["by"] == "api" and line["detail"]["reason"] == "客户要求重发"


def test_a_timed_out_task_retried_waits_again_with_a_new_deadline_and_fires(live):
    customer = uid("c")
    task_id = post_reply_task(live, customer, action=TEXT, timeout_hours=0.002)  # 7.2 s
    timed_out = live.wait_status(task_id, "timeout", timeout=7.2 + 10)
    answer = retry(live, task_id, reason=None)
    assert answer.status_code == 200 and answer.get_json()["data"]["status"] == "waiting", answer.get_json()
    waiting = live.status(task_id)
    assert waiting["status"] == "waiting" and waiting["expires_at"] > timed_out["expires_at"]
    msg_id = live.qingjian.say(customer, "好的")
    done = live.wait_status(task_id, "completed", "failed", "timeout", timeout=10)
    assert done["status"] == "completed" and done["triggered_by"]["msg_id"] == msg_id, done
    assert delivered(live.qingjian, customer) == [("send_text", f"{task_id}:0:{done['retry_count']}")]
    assert since_the_retry(live, task_id)[0]["detail"]["by"] == "api"


def test_a_task_that_timed_out_while_running_gets_fresh_attempts_when_retried(live):
    """Its attempts were refused until its deadline passed (-> timeout). Retried and fired again, its
    send must be a new attempt: the earlier attempts' req_ids were queued once already and are done."""
    q = live.qingjian
    customer = uid("c")
    task_id = post_reply_task(live, customer, action=TEXT, timeout_hours=0.002, max_retry=10)
    q.fail_next(1000, error="busy")
    try:
        q.say(customer, "好的")
        timed_out = live.wait_status(task_id, "timeout", "failed", "completed", timeout=7.2 + 30)
    finally:
        q.fail_next(0)
    assert timed_out["status"] == "timeout", timed_out
    earlier = refused(live, customer)
    assert len(earlier) == timed_out["retry_count"] + 1

    assert retry(live, task_id).status_code == 200
    msg_id = q.say(customer, "好的")
    done = live.wait_status(task_id, "completed", "failed", "timeout", timeout=30)
    assert done["status"] == "completed" and done["triggered_by"]["msg_id"] == msg_id, done
    [(action, req_id)] = delivered(q, customer)
    assert req_id not in earlier, (req_id, earlier)
    kinds = [e["kind"] for e in since_the_retry(live, task_id)]
    assert "attempt_failed" not in kinds and "redrive" not in kinds, kinds


def test_retry_answers_404_for_an_unknown_task_and_409_from_other_statuses(live):
    q = live.qingjian
    assert retry(live, uid("nope")).status_code == 404
    customer = uid("c")
    waiting = post_reply_task(live, customer, action=TEXT)
    cancelled = post_reply_task(live, uid("c"), action=TEXT)
    live.client.post("/api/task/cancel", json={"task_id": cancelled})
    for task_id, status in ((waiting, "waiting"), (cancelled, "cancelled")):
        answer = retry(live, task_id)
        assert answer.status_code == 409 and answer.get_json()["data"] == {"task_id": task_id, "status": status}
    q.hold()  # running while its send waits for 轻简's answer
    try:
        q.say(customer, "好的")
        live.wait_status(waiting, "running")
        answer = retry(live, waiting)
        assert answer.status_code == 409 and answer.get_json()["data"]["status"] == "running"
    finally:
        q.release()
    live.wait_status(waiting, "completed")
    assert retry(live, waiting).status_code == 409
    assert [e["kind"] for e in history(live, waiting)].count("status") == 3  # nothing moved by the 409s


def test_a_cancelled_task_received_again_listens_from_the_re_arm_on(live):
    """Re-armed, the task fires on a later message, not on one that came while it was cancelled, even
    with lookback_seconds: the lookback counts back from the re-arm."""
    q = live.qingjian
    customer = uid("c")
    body = dict(task_id=uid(), type="drill", customer={"id": customer},
                trigger={"type": "customer_reply", "keyword": "好的", "lookback_seconds": 2}, action=TEXT)
    assert live.post_task(**body)["status"] == "waiting"
    assert live.client.post("/api/task/cancel", json={"task_id": body["task_id"]}).status_code == 200
    before = q.say(customer, "好的")
    said = time.time()
    wait_until(lambda: live.client.get(f"/api/task/{body['task_id']}/explain?msg_id={before}").status_code == 200,
               10, 0.1, "the listener to keep the message")
    wait_until(lambda: time.time() > said + 2 + 1, 5, 0.1, "the message to be older than the lookback")

    answer = live.client.post("/api/task/receive", json=body)
    assert answer.status_code == 200 and answer.get_json()["data"]["status"] == "waiting", answer.get_json()
    assert "重新" in answer.get_json()["message"]
    assert live.status(body["task_id"])["status"] == "waiting"  # the catch-up at re-arm did not take it

    after = q.say(customer, "好的")
    done = live.wait_status(body["task_id"], "completed", timeout=15)
    assert done["triggered_by"]["msg_id"] == after
    assert len(delivered(q, customer)) == 1
    rearm = rearm_line(live, body["task_id"])
    assert (rearm["from_status"], rearm["to_status"]) == ("cancelled", "waiting")


def rearm_line(live, task_id: str) -> dict:
    return next(e for e in history(live, task_id) if (e.get("detail") or {}).get("rearmed"))
