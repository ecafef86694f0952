"""The listener's inbound half against a real Redis and a real database (issue 10.5, the listener's
half; DESIGN.md rule 11): msg_ids are de-duplicated per 轻简 connection URL, each accepted message is
recorded in SQL once and handed to matching through the `match` inbox, a batch in one push.

`InboundBatch` is driven directly, as the listener drives it; what it hands over is read back from the
inbox (nothing drains it here).
"""
import json
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from app import runtime
from app.infra.db import session_scope
from app.models import InboundMessage
from app.services import firing, inbound
from app.services.inbound import source_of
from app.services.maintenance import MATCH_REDRIVE_SECONDS
from beat_schedule import BEAT_SCHEDULE
from devkit import processes
from devkit.stores import wait_until
from tests.conftest import uid
from tests.integration.firing_checks import (
    api_event,
    delivered,
    post_event_task,
    post_reply_task,
    reported,
    reported_once,
)

pytestmark = pytest.mark.integration

UPKEEP = BEAT_SCHEDULE["maintenance.upkeep"]["schedule"].total_seconds()
URL_A, URL_B = "ws://qingjian-a.example:9528", "ws://qingjian-b.example:9528"


@pytest.fixture
def listener_side(app, monkeypatch):
    """A listener's view of the app fixture's Redis and database: batches per 轻简 URL."""
    settings = app.config["SETTINGS"]
    # `workers` builds the worker's app from the environment on import: give it this test's stores.
    for name, value in processes.base_env(settings.database_url, settings.redis_url).items():
        monkeypatch.setenv(name, value)
    from workers.listener.inbound import InboundBatch

    runtime.configure(settings)
    app.extensions["celery"].set_current()
    app.extensions["celery"].set_default()
    rt = runtime.current()
    rt.redis.delete(rt.keys.inbox("match"))

    def batch(url: str) -> tuple[InboundBatch, Counter]:
        counts = Counter()
        made = InboundBatch(rt.registry, source_of(url), "shop_001",
                            lambda what, amount=1: counts.update({what: amount}))
        return made, counts

    return batch


def frame(msg_id: str, customer: str, content: str = "好的") -> dict:
    return {"msg_id": msg_id, "acc_id": "shop_001", "from_id": customer, "from_name": "小明", "msg_type": "text",
            "content": content, "ts": int(time.time())}


def rows(msg_id: str) -> list[tuple[str, str]]:
    """(source, from_id) of every stored row of a msg_id."""
    with session_scope() as session:
        return sorted(session.execute(select(InboundMessage.source, InboundMessage.from_id)
                                      .where(InboundMessage.msg_id == msg_id)).all())


def handed_to_matching() -> list[dict]:
    """The arrivals waiting in the `match` inbox, oldest first."""
    rt = runtime.current()
    return [json.loads(raw) for raw in rt.redis.lrange(rt.keys.inbox("match"), 0, -1)]


def test_the_same_msg_id_from_two_qingjian_urls_is_accepted_from_each_and_once_from_one(listener_side):
    msg_id, customer = f"m-{uuid.uuid4()}", uid("c")
    from_a, counts_a = listener_side(URL_A)
    from_b, counts_b = listener_side(URL_B)
    from_a.add("message", frame(msg_id, customer))
    from_a.flush()
    from_b.add("message", frame(msg_id, customer))
    from_b.flush()
    assert rows(msg_id) == sorted([(source_of(URL_A), customer), (source_of(URL_B), customer)])
    assert counts_a["received"] == counts_b["received"] == 1
    handed = handed_to_matching()
    assert [a["event"]["msg_id"] for a in handed] == [msg_id, msg_id]
    assert all(a["inbound_id"] for a in handed)

    # 轻简 A delivers it again (a reconnect): dropped before SQL, nothing handed over.
    again, counts = listener_side(URL_A)
    again.add("message", frame(msg_id, customer))
    again.flush()
    assert counts == Counter(duplicates=1)
    assert len(rows(msg_id)) == 2 and len(handed_to_matching()) == 2


def test_a_batch_is_recorded_in_one_go_and_handed_over_in_one_push(listener_side):
    batch, counts = listener_side(URL_A)
    ids = [f"m-{uuid.uuid4()}" for _ in range(5)]
    for i, msg_id in enumerate(ids):
        batch.add("message", frame(msg_id, uid("c"), content=f"电话13812345678 第{i}条"))
    batch.add("message", frame(ids[0], uid("c")))  # the same msg_id twice in one batch
    batch.flush()
    assert counts["received"] == 5 and counts["duplicates"] == 1
    handed = handed_to_matching()
    assert [a["event"]["msg_id"] for a in handed] == ids
    with session_scope() as session:
        stored = {r.msg_id: r for r in session.scalars(select(InboundMessage).where(InboundMessage.msg_id.in_(ids)))}
    assert sorted(a["inbound_id"] for a in handed) == sorted(r.id for r in stored.values())
    assert all("13812345678" not in r.content for r in stored.values())  # masked as the logs mask it
    assert all(r.matched_at is None and r.enqueued_at is not None for r in stored.values())


def test_a_redelivery_after_redis_lost_its_marks_is_not_recorded_or_matched_twice(listener_side):
    msg_id = f"m-{uuid.uuid4()}"
    first, _ = listener_side(URL_A)
    first.add("message", frame(msg_id, uid("c")))
    first.flush()
    rt = runtime.current()
    rt.redis.delete(rt.keys.seen(source_of(URL_A), msg_id))  # as if Redis restarted empty
    again, counts = listener_side(URL_A)
    again.add("message", frame(msg_id, uid("c")))
    again.flush()
    assert counts == Counter(duplicates=1)
    assert len(rows(msg_id)) == 1 and len(handed_to_matching()) == 1


class ListenerKilled(BaseException):
    """kill -9 as seen from inside the listener: nothing after this point runs."""


def test_a_message_whose_listener_died_before_recording_it_is_taken_when_qingjian_redelivers_it(
        listener_side, monkeypatch):
    msg_id = f"m-{uuid.uuid4()}"
    dying, _ = listener_side(URL_A)
    dying.add("message", frame(msg_id, uid("c")))

    def killed(*_):
        raise ListenerKilled()

    with monkeypatch.context() as patch:
        patch.setattr(inbound, "record", killed)
        with pytest.raises(ListenerKilled):
            dying.flush()
    assert rows(msg_id) == [] and handed_to_matching() == []

    standby, counts = listener_side(URL_A)  # the next listener; 轻简 delivers the message again
    standby.add("message", frame(msg_id, uid("c")))
    standby.flush()
    assert len(rows(msg_id)) == 1, counts
    assert [a["event"]["msg_id"] for a in handed_to_matching()] == [msg_id]


# -- end to end: what the live system records -------------------------------------------------------

def stored(live, **where) -> list[InboundMessage]:
    live.use()
    with session_scope() as session:
        found = session.scalars(select(InboundMessage).filter_by(**where).order_by(InboundMessage.id)).all()
        session.expunge_all()
    return found


def test_each_message_is_recorded_once_with_the_tasks_it_fired(live):
    customer = uid("c")
    task_id = post_reply_task(live, customer, action={"type": "send_message", "message": "在的"})
    quiet = live.qingjian.say(customer, "你好")  # fires nothing
    msg_id = live.qingjian.say(customer, "好的")
    live.qingjian.say(customer, "好的", msg_id=msg_id)  # 轻简 delivers it again
    live.wait_status(task_id, "completed")
    wait_until(lambda: len(stored(live, from_id=customer)) == 2 and all(r.matched_at for r in stored(
        live, from_id=customer)), 10, 0.1, "both messages recorded and matched")
    rows = {r.msg_id: r for r in stored(live, from_id=customer)}
    assert set(rows) == {quiet, msg_id}
    assert rows[msg_id].fired == [task_id] and rows[quiet].fired is None
    assert rows[msg_id].content == "好的" and rows[msg_id].kind == "message"


def test_a_custom_event_is_recorded_with_what_it_fired(live):
    customer, event = uid("c"), uid("evt")
    task_id = post_event_task(live, customer, event, {"type": "send_message", "message": "在的"})
    api_event(live, event, customer)
    live.wait_status(task_id, "completed")
    wait_until(lambda: [r.fired for r in stored(live, event=event)] == [[task_id]], 10, 0.1,
               "the event recorded as matched")
    [row] = stored(live, event=event)
    assert (row.source, row.kind, row.from_id) == (inbound.API_SOURCE, "custom", customer)


def test_upkeep_purges_messages_older_than_the_retention(live):
    live.use()
    days = runtime.current().settings.message_retention_days
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    old, kept = f"m-{uuid.uuid4()}", f"m-{uuid.uuid4()}"
    with session_scope() as session:
        for msg_id, age in ((old, days + 1), (kept, days - 1)):
            session.add(InboundMessage(source="purge-test", msg_id=msg_id, kind="message", from_id=uid("c"),
                                       content="好的", received_at=now - timedelta(days=age)))
    # Bound: beat's upkeep runs every 5 s and purges a batch each time.
    wait_until(lambda: not stored(live, msg_id=old), 2 * UPKEEP + 10, 0.2, "the old message purged")
    assert [r.msg_id for r in stored(live, msg_id=kept)] == [kept]


@pytest.mark.slow
def test_a_lost_match_is_handed_over_again_from_sql_and_fires_once(isolated):
    system = isolated()
    q, tw = system.qingjian, system.tianwang
    customer = uid("c")
    task_id = post_reply_task(system, customer)
    for worker in [p for p in system.system.procs if p.name.startswith("worker")]:
        worker.stop()  # gracefully: nothing of theirs stays unacknowledged
    rt = system.use() and runtime.current()
    msg_id = q.say(customer, "好的")
    wait_until(lambda: rt.redis.llen(rt.keys.inbox("match")) == 1 and stored(system, msg_id=msg_id), 10, 0.1,
               "the message recorded and handed to matching")
    rt.redis.delete(rt.keys.inbox("match"), "match")  # Redis lost the hand-over (the inbox and its wake)
    system.system.worker("worker-new")
    # Bound: a message not matched MATCH_REDRIVE_SECONDS after it was handed over goes again with the
    # next upkeep (every 5 s).
    done = system.wait_status(task_id, "completed", "failed", timeout=MATCH_REDRIVE_SECONDS + 2 * UPKEEP + 15)
    assert done["status"] == "completed" and done["triggered_by"]["msg_id"] == msg_id, done
    assert delivered(q, customer) == [("send_text", f"{task_id}:0:0"), ("send_file", f"{task_id}:1:0")]
    assert [r.fired for r in stored(system, msg_id=msg_id)] == [[task_id]]
    assert tw.wait_for(lambda t: reported_once(t, task_id, "running", "completed"), 15), reported(tw, task_id)


def test_a_message_matched_again_keeps_the_record_of_what_it_fired(live):
    customer = uid("c")
    task_id = post_reply_task(live, customer, action={"type": "send_message", "message": "在的"})
    msg_id = live.qingjian.say(customer, "好的")
    live.wait_status(task_id, "completed")
    wait_until(lambda: [r.fired for r in stored(live, msg_id=msg_id)] == [[task_id]], 10, 0.1, "the record")
    [row] = stored(live, msg_id=msg_id)
    live.use()
    assert firing.process_batch([{"event": inbound.event_of(row).as_dict(), "inbound_id": row.id}]) == []
    assert [r.fired for r in stored(live, msg_id=msg_id)] == [[task_id]]
