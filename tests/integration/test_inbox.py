"""The inboxes the listener fills and workers drain (app.infra.inbox), against a real redis-server:
a drain is woken once per burst, takes what gathered in batches, loses nothing when its worker is
killed or the database is away, and one bad item costs only itself."""
import queue
import threading
import time
import uuid

import pytest
import redis

from app.infra import inbox as inbox_module
from app.infra.inbox import Inbox
from app.infra.keys import Keys

pytestmark = pytest.mark.integration


class Outage(Exception):
    """Stands for a database or Redis outage: worth retrying."""


class Killed(BaseException):
    """Stands for a worker killed mid-batch: nothing after it runs."""


@pytest.fixture
def r(redis_base):
    client = redis.Redis.from_url(f"{redis_base}/6")
    yield client


@pytest.fixture
def wakes():
    return []


@pytest.fixture
def box(r, wakes):
    return Inbox(r, Keys(f"t{uuid.uuid4().hex[:6]}:"), "match", wake=wakes.append)


def test_a_burst_of_puts_wakes_one_drain_which_takes_them_in_batches_in_order(box, wakes):
    for i in range(0, 450, 3):
        box.put([{"n": i}, {"n": i + 1}, {"n": i + 2}])
    assert wakes == [0]  # one drain queued for the whole burst
    batches = []
    assert box.drain(batches.append, 0, batch=200) == 450
    assert [len(b) for b in batches] == [200, 200, 50]
    assert [item["n"] for b in batches for item in b] == list(range(450))
    assert box.waiting() == 0
    assert wakes == [0, 1]  # 250 left after the first batch: a helper woken to share them
    box.put([{"n": 450}])  # the drain has ended: the next put wakes a new one
    assert wakes == [0, 1, 0]


def test_a_put_racing_the_end_of_a_drain_is_taken_by_it_or_wakes_another(box, wakes):
    """The put lands after the drain's last (empty) take and before it clears its flag: the put sees the
    flag and wakes nobody, so the drain's last look must find the item."""
    box.put([{"n": 0}])
    stop = box._stop

    def a_put_just_before_the_flag_is_cleared(slot):
        box._stop = stop  # once
        box.put([{"n": 1}])
        return stop(slot)

    box._stop = a_put_just_before_the_flag_is_cleared
    seen = []
    box.drain(seen.extend, 0)
    assert [item["n"] for item in seen] == [0, 1] and wakes == [0]
    assert box.waiting() == 0


def test_a_backlog_of_more_than_a_batch_wakes_one_helper(box, wakes):
    box.put([{"n": i} for i in range(500)])
    box.drain(lambda items: None, 0, batch=100)
    assert wakes == [0, 1]  # the helper (slot 1) woken once, however many batches went by


def test_a_drain_killed_mid_batch_leaves_it_to_go_back_at_the_head_when_its_time_is_up(box, wakes, monkeypatch):
    monkeypatch.setattr(inbox_module, "VISIBILITY_SECONDS", 0.3)
    box.put([{"n": i} for i in range(5)])

    def killed(items):
        raise Killed()

    with pytest.raises(Killed):
        box.drain(killed, 0, batch=3)
    box.put([{"n": 5}])
    assert box.requeue_lapsed() == 0  # still within its visibility: its worker may be alive
    time.sleep(0.4)
    assert box.requeue_lapsed() == 3
    assert box.requeue_lapsed() == 0  # once
    seen = []
    box.drain(seen.extend, 0)
    assert [item["n"] for item in seen] == [0, 1, 2, 3, 4, 5]  # the taken batch first, in its order


def test_an_outage_puts_the_batch_back_at_the_head_and_keeps_the_drain_woken(box, wakes, r):
    box.put([{"n": i} for i in range(4)])

    def away(items):
        raise Outage()

    with pytest.raises(Outage):
        box.drain(away, 0, transient=(Outage,), batch=3)
    assert box.waiting() == 4
    box.put([{"n": 4}])
    assert wakes == [0]  # the retry of the failed drain is the drain: no second one queued
    seen = []
    box.drain(seen.extend, 0, transient=(Outage,), batch=3)
    assert [item["n"] for item in seen] == [0, 1, 2, 3, 4]
    assert r.hlen(box.taken_key) == 0 and r.zcard(box.due_key) == 0


def test_one_bad_item_costs_only_itself(box, caplog):
    box.put([{"n": i} for i in range(6)])
    handled = []

    def handle(items):
        if any(item["n"] == 3 for item in items):
            raise ValueError("a bug this item triggers")
        handled.extend(item["n"] for item in items)

    assert box.drain(handle, 0, batch=4) == 6
    assert sorted(handled) == [0, 1, 2, 4, 5]
    assert any("dropped an item" in rec.getMessage() and "'n': 3" in rec.getMessage() for rec in caplog.records)


def test_beat_wakes_a_drain_only_for_items_nobody_drains(box, wakes, r):
    assert box.wake_if_waiting() is False  # nothing waits
    box.put([{"n": 1}])
    assert box.wake_if_waiting() is False  # a drain is queued
    r.delete(box.woken_keys[0])  # ... but its message was lost (its flag lapsed)
    assert box.wake_if_waiting() is True
    assert wakes == [0, 0]


def test_a_wake_the_broker_refuses_leaves_the_items_for_the_next_wake(r):
    refusing = True
    woken = []

    def wake(slot):
        if refusing:
            raise ConnectionError("broker away")
        woken.append(slot)

    box = Inbox(r, Keys(f"t{uuid.uuid4().hex[:6]}:"), "answers", wake=wake)
    box.put([["T:0:0", True, None]])  # handed over all the same: the listener need not keep it
    assert box.waiting() == 1 and not r.exists(box.woken_keys[0])
    refusing = False
    assert box.wake_if_waiting() is True and woken == [0]  # beat's look, once the broker is back


def test_text_survives_a_batch_taken_and_put_back(box, monkeypatch):
    monkeypatch.setattr(inbox_module, "VISIBILITY_SECONDS", 0)
    item = {"text": "你好，已付款 ✓ \"quoted\" \\ / \u0000", "n": [1, None, True]}
    box.put([item])
    with pytest.raises(Killed):
        box.drain(lambda items: (_ for _ in ()).throw(Killed()), 0)
    assert box.requeue_lapsed() == 1
    seen = []
    box.drain(seen.extend, 0)
    assert seen == [item]


def test_producers_and_two_draining_processes_racing_leave_nothing_behind(r):
    """Puts from one thread while drains run in two others, woken only through the inbox's own wakes:
    every item is handled, once, and nothing is left waiting without a drain."""
    woken: queue.Queue = queue.Queue()
    box = Inbox(r, Keys(f"t{uuid.uuid4().hex[:6]}:"), "match", wake=woken.put)
    handled, lock, stop = [], threading.Lock(), threading.Event()

    def handle(items):
        time.sleep(0.001 * len(items) ** 0.5)
        with lock:
            handled.extend(item["n"] for item in items)

    def worker():
        while not stop.is_set():
            try:
                slot = woken.get(timeout=0.05)
            except queue.Empty:
                continue
            box.drain(handle, slot, batch=50)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    total = 3000
    for start in range(0, total, 7):
        box.put([{"n": n} for n in range(start, min(start + 7, total))])
        if start % 700 == 0:
            time.sleep(0.01)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(handled) < total:
        time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join(5)
    assert sorted(handled) == list(range(total))
    assert box.waiting() == 0 and r.hlen(box.taken_key) == 0
