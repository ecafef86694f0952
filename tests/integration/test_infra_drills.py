"""Fault drills on the infrastructure: the database away during intake, Redis restarted empty,
天网 down for two minutes, the listener stopped mid-send. Each ends by checking that nothing was lost
and nothing was done twice: the drills with a live system with the four checks of tests/drill_checks.py."""
import threading
import time

import pytest
import redis
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from app import create_app
from app.config import Settings
from app.infra.db import session_scope
from app.models import CallbackOutbox, Task, TaskEvent
from devkit import processes, stores
from devkit.stores import wait_until
from tests.conftest import start_live, uid
from tests.drill_checks import check_drill, no_callback_lost
from tests.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def reply_task(customer: str, **extra) -> dict:
    return dict(task_id=uid(), type="reply", customer={"id": customer},
                trigger={"type": "customer_reply", "keyword": "好的"},
                action={"type": "send_message", "message": "收到"}, **extra)


def test_database_unreachable_during_intake_answers_503_and_writes_nothing_half(postgres_url, redis_base):
    target = make_url(postgres_url)
    proxy = TcpProxy(target.port or 5432).start()
    through_proxy = target.set(port=proxy.port).render_as_string(hide_password=False)
    redis_url = f"{redis_base}/7"
    redis.Redis.from_url(redis_url).flushdb()
    app = create_app(Settings.from_env(processes.base_env(through_proxy, redis_url)))
    client = app.test_client()
    client.environ_base["HTTP_X_API_KEY"] = processes.API_KEY
    try:
        before = [reply_task(uid("c")) for _ in range(3)]
        assert {client.post("/api/task/receive", json=b).status_code for b in before} == {200}

        proxy.cut()
        during = [reply_task(uid("c")) for _ in range(5)]
        answers = []
        outage_end = time.monotonic() + 10
        while time.monotonic() < outage_end:
            for body in during:
                answer = client.post("/api/task/receive", json=body)
                answers.append((answer.status_code, answer.get_json()))
            time.sleep(1)
        assert {code for code, _ in answers} == {503}
        assert all(b["code"] == 503 and "database" in b["message"] for _, b in answers)
        proxy.restore()

        # 天网 sends them again once we answer: each is stored once, whole, and registered.
        for body in during:
            answer = client.post("/api/task/receive", json=body)
            assert answer.status_code == 200, answer.get_json()
            assert answer.get_json()["data"]["status"] == "waiting"
        ids = [b["task_id"] for b in before + during]
        with session_scope() as session:
            statuses = dict(session.execute(select(Task.task_id, Task.status).where(Task.task_id.in_(ids))).all())
            events = session.execute(select(TaskEvent.task_id, func.count()).where(TaskEvent.task_id.in_(ids))
                                     .group_by(TaskEvent.task_id)).all()
        assert statuses == {task_id: "waiting" for task_id in ids}
        assert dict(events) == {task_id: 2 for task_id in ids}  # received + pending->waiting, once each
        assert all(redis.Redis.from_url(redis_url).hexists("tw:spec", task_id) for task_id in ids)
    finally:
        proxy.stop()


def test_redis_restarted_empty_loses_nothing_and_repeats_nothing(tmp_path):
    redis_proc, redis_url = stores.start_embedded_redis()
    port = int(redis_url.rsplit(":", 1)[1])
    db = f"sqlite:///{tmp_path / 'drill.db'}"
    stores.reset_database(db)
    live = start_live(db, f"{redis_url}/0", tmp_path)
    qingjian, tianwang = live.qingjian, live.tianwang
    try:
        customers = [uid("c") for _ in range(4)]
        ids = [live.post_task(**reply_task(c))["task_id"] for c in customers]
        qingjian.say(customers[0], "好的")
        live.wait_status(ids[0], "completed")
        no_callback_lost(live, ids[:1])  # no callback in flight when the workers lose Redis (and may die)

        redis_proc.kill()
        redis_proc.wait(10)
        time.sleep(2)  # Redis stays away two seconds
        redis_proc, _ = stores.start_embedded_redis(port)  # same address, nothing in it
        fresh = redis.Redis.from_url(f"{redis_url}/0")

        def back_on_the_new_redis():
            # kombu 5.7's Redis transport can crash a worker on broker loss ("Unrecoverable error"
            # in restore_unacked); production runs workers under a supervisor that restarts them
            # (systemd Restart=always, compose restart: unless-stopped), which this plays.
            for proc in [p for p in live.system.procs if p.name.startswith("worker") and not p.alive()]:
                proc.stop()  # already dead: closes its log
                live.system.procs.remove(proc)
                live.system.worker(f"{proc.name}-restarted")
            return fresh.exists("tw:hb:listener") and fresh.exists("tw:hb:beat")

        wait_until(back_on_the_new_redis, 90, 0.2, "listener and beat back on the new Redis")
        wait_until(lambda: fresh.hlen("tw:spec") == 3, 60, 0.2, "the index rebuilt from SQL")
        for c in customers[1:]:
            qingjian.say(c, "好的")
        for task_id in ids[1:]:
            live.wait_status(task_id, "completed", timeout=60)
        for c in customers:
            assert len(qingjian.frames_for(c)) == 1
        check_drill(live, {task_id: "completed" for task_id in ids})
        assert len(tianwang.events) == 8  # running and completed of each, nothing else
    finally:
        live.stop()
        redis_proc.kill()


def test_tianwang_down_for_two_minutes_then_every_callback_arrives_once(isolated):
    live = isolated(CALLBACK_RETRY_MAX_SECONDS="10")
    live.tianwang.down()
    customers = [uid("c") for _ in range(3)]
    ids = [live.post_task(**reply_task(c))["task_id"] for c in customers]
    for c in customers:
        live.qingjian.say(c, "好的")
    for task_id in ids:
        live.wait_status(task_id, "completed")
    time.sleep(120)  # the outage itself, not a synchronisation: two minutes of refused callbacks
    live.use()
    with session_scope() as session:
        rows = session.scalars(select(CallbackOutbox).where(CallbackOutbox.task_id.in_(ids))).all()
    # Backoff 1, 2, 4, 8 … s, capped at CALLBACK_RETRY_MAX_SECONDS=10: at least 1+2+4+8+10·9 s < 120 s
    # of attempts, so every row has been tried and refused at least five times and is still pending.
    assert len(rows) == 6 and {r.state for r in rows} == {"pending"}
    assert min(r.attempts for r in rows) >= 5 and all("onnection" in (r.last_error or "") for r in rows)
    live.tianwang.up()
    check_drill(live, {task_id: "completed" for task_id in ids}, callback_timeout=45)
    assert len(live.tianwang.received) == 6  # the attempts while it was down never reached it: each once


def test_listener_stopped_mid_send_flushes_the_answer_before_it_exits(isolated):
    live = isolated()
    customer = uid("c")
    task_id = live.post_task(**reply_task(customer))["task_id"]
    live.qingjian.hold()
    live.qingjian.say(customer, "好的")
    assert live.qingjian.wait_for_sends(1, 15)
    listener = next(p for p in live.system.procs if p.name.startswith("listener"))
    stopping = threading.Thread(target=listener.stop, args=(20,))
    stopping.start()
    # SIGTERM is in once the listener says so: it reads no new sends but waits for this answer.
    wait_until(lambda: "stopping: no new reads" in listener.output(), 10, message="the listener to take SIGTERM")
    assert listener.alive()  # still draining: it has not exited before the answer came
    live.qingjian.release()
    stopping.join(25)
    assert listener.p.returncode == 0, listener.output()[-2000:]
    done = live.wait_status(task_id, "completed", timeout=15)
    assert done["retry_count"] == 0
    assert len(live.qingjian.frames_for(customer)) == 1
    check_drill(live, {task_id: "completed"})
