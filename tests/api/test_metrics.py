"""/metrics: Prometheus text, no key needed, figures read from SQL and Redis."""
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import uid


def samples(client) -> dict:
    answer = client.get("/metrics", headers={"X-API-Key": ""})
    assert answer.status_code == 200
    assert answer.content_type.startswith("text/plain")
    found = {}
    for family in text_string_to_metric_families(answer.get_data(as_text=True)):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_metrics_count_tasks_by_status_and_expose_every_family(client):
    before = samples(client)
    assert before[("tianwang_tasks", (("status", "waiting"),))] == 0
    for _ in range(3):
        client.post("/api/task/receive", json={
            "task_id": uid(), "type": "t", "trigger": {"type": "customer_reply", "keyword": "好"},
            "action": {"type": "send_message", "message": "m"}})
    after = samples(client)
    assert after[("tianwang_tasks", (("status", "waiting"),))] == 3
    assert after[("tianwang_tasks_received_total", ())] == 3
    names = {name for name, _ in after}
    for family in ("tianwang_firing_latency_seconds_count", "tianwang_queue_depth", "tianwang_listener_connected",
                   "tianwang_listener_events_total", "tianwang_send_results_total", "tianwang_callbacks",
                   "tianwang_callback_attempts_total", "tianwang_callback_failures_total",
                   "tianwang_callback_oldest_undelivered_age_seconds", "tianwang_events_matched_total"):
        assert family in names, family
    assert after[("tianwang_queue_depth", (("queue", "maintenance"),))] == 0  # intake enqueues no upkeep
    assert after[("tianwang_listener_connected", ())] == 0  # no listener runs in the API suite
