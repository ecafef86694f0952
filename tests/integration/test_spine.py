"""The spine end to end: intake -> listener -> fire -> send -> callback, all real processes."""
import pytest

from devkit.stores import wait_until
from tests.conftest import uid
from tests.drill_checks import check_drill

pytestmark = pytest.mark.integration


def firing_latency_count(live) -> float:
    live.use()
    metrics = live.client.get("/metrics").get_data(as_text=True)
    return next(float(line.split()[-1]) for line in metrics.splitlines()
                if line.startswith("tianwang_firing_latency_seconds_count"))


def test_customer_reply_sends_the_file_and_calls_back(live):
    task_id, customer = uid(), uid("c")
    observed_before = firing_latency_count(live)
    data = live.post_task(
        task_id=task_id, type="send_file_after_reply", customer={"id": customer, "name": "小明"},
        trigger={"type": "specified_customer_reply", "customer_id": customer, "customer_name": "小明",
                 "keyword": "好的"},
        action={"type": "send_file", "file_url": "https://example.com/a.zip", "file_name": "a.zip",
                "message": "这是您要的文件"},
    )
    assert data["status"] == "waiting"
    live.qingjian.say(customer, "好的谢谢", from_name="小明")
    done = live.wait_status(task_id, "completed")
    sends = live.qingjian.frames_for(customer)  # every frame our side sent him
    assert [s["action"] for s in sends] == ["send_text", "send_file"]
    assert sends[0]["data"]["content"] == "这是您要的文件"
    assert sends[1]["data"]["file_url"] == "https://example.com/a.zip"
    assert [s["req_id"] for s in sends] == [f"{task_id}:0:0", f"{task_id}:1:0"]
    assert done["triggered_by"]["customer_id"] == customer
    wait_until(lambda: sorted(live.tianwang.statuses(task_id)) == ["completed", "running"], 15,
               message="callbacks running and completed")
    assert live.tianwang.bad_signatures == 0
    check_drill(live, {task_id: "completed"})
    assert "tianwang_listener_connected 1.0" in live.client.get("/metrics").get_data(as_text=True)
    assert firing_latency_count(live) == observed_before + 1  # this firing's latency was observed
