"""/metrics: Prometheus text, no key needed, figures read from SQL and Redis."""
import math
import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from prometheus_client.parser import text_string_to_metric_families

from app import create_app, runtime, stats
from app.domain import dispatch as dispatch_domain
from app.domain import states
from app.infra import heartbeat
from celeryconfig import QUEUE_ORDER
from devkit import stores
from tests.conftest import make_settings, uid


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


# -- the families the alerts (deploy/prometheus/alerts.yml) read -----------------------------------


def test_every_family_is_there_with_zeros_before_its_first_sample(client):
    found = samples(client)
    for status in states.STATUSES:
        assert found[("tianwang_tasks", (("status", status),))] == 0
    for status in dispatch_domain.STATUSES:
        assert found[("tianwang_dispatches", (("status", status),))] == 0
    for queue in QUEUE_ORDER:
        assert found[("tianwang_queue_depth", (("queue", queue),))] == 0
        assert found[("tianwang_queue_lag_seconds", (("queue", queue),))] == 0
    for inbox in ("inbox:match", "inbox:answers"):
        assert found[("tianwang_queue_depth", (("queue", inbox),))] == 0
    for state in ("pending", "delivered", "failed", "unsent"):
        assert found[("tianwang_callbacks", (("state", state),))] == 0
    assert found[("tianwang_timers_overdue", ())] == 0 and found[("tianwang_timers_overdue_seconds", ())] == 0
    assert found[("tianwang_callback_oldest_undelivered_age_seconds", ())] == 0
    assert found[("tianwang_firing_latency_seconds_count", ())] == 0
    for dependency in ("database", "redis", "broker"):
        assert found[("tianwang_dependency_up", (("dependency", dependency),))] == 1
    for process in ("beat", "listener"):  # nothing beats in the API suite
        assert math.isinf(found[("tianwang_heartbeat_age_seconds", (("process", process),))])


def test_a_timer_past_its_time_shows_how_late_it_is(client):
    late_by = 60  # seconds; no beat runs in the API suite, so nobody fires it
    due = datetime.now(ZoneInfo("Asia/Shanghai")) - timedelta(seconds=late_by)
    before = time.time()
    answer = client.post("/api/task/receive", json={
        "task_id": uid(), "type": "greet", "customer": {"id": "789"}, "acc_id": "shop_001",
        "trigger": {"type": "time_reach", "time": due.strftime("%Y-%m-%d %H:%M:%S")},
        "action": {"type": "send_message", "message": "早上好"}})
    assert answer.status_code == 200, answer.get_json()
    found = samples(client)
    assert found[("tianwang_timers_overdue", ())] == 1
    # the time has whole seconds: the task is late_by s, up to 1 s more, plus the time since `before`
    assert late_by <= found[("tianwang_timers_overdue_seconds", ())] <= late_by + 1 + (time.time() - before)


def test_queue_lag_is_the_wait_of_the_oldest_message(app, client):
    celery_app = app.extensions["celery"]
    sent_after = time.time()
    celery_app.send_task("callbacks.flush", args=[], queue="callbacks", ignore_result=True)
    celery_app.send_task("callbacks.flush", args=[], queue="callbacks", ignore_result=True)
    sent_before = time.time()
    lag = stats.queue_lag(["callbacks", "match"], now=sent_before + 100)
    assert 100 <= lag["callbacks"] <= 100 + (sent_before - sent_after)  # the older of the two
    assert lag["match"] == 0
    found = samples(client)
    assert found[("tianwang_queue_depth", (("queue", "callbacks"),))] == 2
    assert 0 < found[("tianwang_queue_lag_seconds", (("queue", "callbacks"),))] <= time.time() - sent_after


def test_heartbeat_age_is_the_time_since_the_last_beat(client, rdb):
    before = time.time()
    heartbeat.beat(rdb, runtime.current().keys, "beat")
    found = samples(client)
    assert 0 <= found[("tianwang_heartbeat_age_seconds", (("process", "beat"),))] <= time.time() - before
    assert math.isinf(found[("tianwang_heartbeat_age_seconds", (("process", "listener"),))])


def test_with_redis_down_the_scrape_says_so_and_keeps_the_database_figures(db_url):
    stores.truncate(db_url)
    down = create_app(make_settings(db_url, f"redis://127.0.0.1:{stores.free_port()}/0"))
    found = samples(down.test_client())
    assert found[("tianwang_dependency_up", (("dependency", "redis"),))] == 0
    assert found[("tianwang_dependency_up", (("dependency", "broker"),))] == 0
    assert found[("tianwang_dependency_up", (("dependency", "database"),))] == 1
    assert found[("tianwang_tasks", (("status", "waiting"),))] == 0
    assert not any(name == "tianwang_queue_depth" for name, _ in found)


def test_with_the_database_down_the_scrape_says_so_and_keeps_the_redis_figures(redis_base, tmp_path):
    down = create_app(make_settings(f"sqlite:///{tmp_path}/no/such/folder/x.db", f"{redis_base}/8"))
    found = samples(down.test_client())
    assert found[("tianwang_dependency_up", (("dependency", "database"),))] == 0
    assert found[("tianwang_dependency_up", (("dependency", "redis"),))] == 1
    assert not any(name == "tianwang_tasks" for name, _ in found)
    assert ("tianwang_queue_depth", (("queue", "match"),)) in found


def test_the_inboxes_depth_is_scraped_beside_the_queues(client):
    """A backlog in an inbox (drains not keeping up) is seen by the same depth alert as a Celery queue's."""
    assert client.post("/api/event", json={"event": "paid", "customer_id": "c1", "data": {}}).status_code == 202
    found = samples(client)  # nothing drains in the API suite
    assert found[("tianwang_queue_depth", (("queue", "inbox:match"),))] == 1
    assert found[("tianwang_queue_depth", (("queue", "inbox:answers"),))] == 0
