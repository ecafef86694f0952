"""The two Redis hand-offs "exactly once" leans on, against a real redis-server (no workers needed):

- the send hand-off queues a req_id once: a run that died waiting for 轻简's answer leaves its send
  queued, and the run that resumes waits for that send's answer instead of queueing the step again;
- the listener's memory of messages lets a msg_id through once (a redelivery after a reconnect is
  dropped), and keeps each message once for lookback_seconds.
"""
import threading
import time
import uuid

import pytest
import redis

from app.clients.qingjian import SendChannel, send_frame
from app.domain.triggers import InboundEvent
from app.infra.keys import Keys
from app.registry import Registry
from devkit.stores import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def r(redis_base):
    client = redis.Redis.from_url(f"{redis_base}/6")
    client.flushdb()
    yield client
    client.flushdb()


@pytest.fixture
def keys():
    return Keys(f"t{uuid.uuid4().hex[:6]}:")


def text_frame(req_id: str) -> dict:
    return send_frame({"kind": "text", "content": "你好"}, acc_id="shop_001", to_id="c1", req_id=req_id)


def test_a_req_id_is_queued_once(r, keys):
    channel = SendChannel(r, keys)
    before = time.time()
    assert channel.submit(text_frame("T1:0:0")) is None  # queued now
    again = channel.submit(text_frame("T1:0:0"))  # a second run of the same attempt
    assert again is not None and before <= again <= time.time()  # ... learns when it was queued
    assert r.xlen(keys.send_stream) == 1
    assert channel.submit(text_frame("T1:0:1")) is None  # another attempt is another req_id
    assert [f[b"req_id"] for _, f in r.xrange(keys.send_stream)] == [b"T1:0:0", b"T1:0:1"]


def test_a_resumed_run_waits_for_the_earlier_send_instead_of_queueing_it_again(r, keys):
    channel = SendChannel(r, keys)
    channel.ensure_group()
    assert channel.submit(text_frame("T2:0:0")) is None  # the run that died waiting for the answer

    def listener():  # takes the send off the stream; 轻简 answers it
        entries = []
        wait_until(lambda: entries.extend(channel.read("listener-1", block_ms=100)) or entries, 5)
        channel.report(entries[0][1]["req_id"], True, None)

    answering = threading.Thread(target=listener)
    answering.start()
    assert channel.send(text_frame("T2:0:0"), timeout=5) == {"ok": True, "error": None}
    answering.join(5)
    assert r.xlen(keys.send_stream) == 1  # sent once


def message(msg_id: str | None, customer: str = "c1", text: str = "好的") -> InboundEvent:
    return InboundEvent.from_wire("message", {"msg_id": msg_id, "from_id": customer, "content": text},
                                  received_at=time.time())


def test_a_msg_id_is_let_through_once_and_remembered_once(r, keys):
    registry = Registry(r, keys)
    first = message("m-1")
    assert registry.remember(first, keys.seen("m-1")) is True
    assert registry.remember(message("m-1"), keys.seen("m-1")) is False  # redelivered after a reconnect
    assert registry.remember(message("m-2"), keys.seen("m-2")) is True
    assert [e.msg_id for e in registry.recent("c1", 0)] == ["m-1", "m-2"]
    assert [e.msg_id for e in registry.recent(None, 0)] == ["m-1", "m-2"]
    assert registry.recent("c1", time.time() + 1) == []  # lookback is by the listener's receipt time
