"""The Redis hand-offs "exactly once" leans on, against a real redis-server (no workers needed):

- the send hand-off queues a req_id once: a run that died after handing a step to the listener leaves it
  queued, and a second submit of the same req_id learns when, instead of queueing the step again;
- a send its worker gave up on never leaves: give-up (abandon) and the listener's take are atomic, so
  either the frame already left or it never will (DESIGN.md rule 8);
- the listener's memory of messages lets a msg_id through once (a redelivery after a reconnect is
  dropped before anything else happens to it), and keeps each message once for lookback_seconds.
"""
import time
import uuid

import pytest
import redis

from app.clients.qingjian import SendChannel, send_frame
from app.domain.events import InboundEvent
from app.infra.keys import Keys
from app.registry import Registry

pytestmark = pytest.mark.integration
TIMEOUT = 3.0  # the send timeout the frames are submitted with


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


def queued(r, keys) -> list[bytes]:
    return [fields[b"req_id"] for _, fields in r.xrange(keys.send_stream)]


def test_a_req_id_is_queued_once(r, keys):
    channel = SendChannel(r, keys)
    assert channel.submit(text_frame("T1:0:0"), TIMEOUT) is None  # queued now
    again = channel.submit(text_frame("T1:0:0"), TIMEOUT)  # a second run of the same attempt
    assert again is not None and abs(again - time.time()) < 60  # ... learns when it was queued (Redis's clock)
    assert channel.submit_many([text_frame("T1:0:0"), text_frame("T1:0:1")], TIMEOUT)[0] == again
    assert queued(r, keys) == [b"T1:0:0", b"T1:0:1"]  # another attempt is another req_id


def test_a_send_given_up_on_never_leaves_and_one_taken_cannot_be_given_up(r, keys):
    channel = SendChannel(r, keys)
    channel.ensure_group()
    channel.submit_many([text_frame("T2:0:0"), text_frame("T3:0:0")], TIMEOUT)
    assert channel.abandon("T2:0:0") is True  # its worker gives up before the listener reads it
    entries = channel.read("listener-1", block_ms=100)
    assert [f["req_id"] for _, f in entries] == ["T2:0:0", "T3:0:0"]
    assert channel.take(entries) == ["abandoned", "send"]  # so the listener sends only T3
    assert channel.abandon("T3:0:0") is False  # too late: it left


def test_a_send_past_its_deadline_is_not_taken(r, keys):
    channel = SendChannel(r, keys)
    channel.ensure_group()
    channel.submit(text_frame("T4:0:0"), timeout=0.0)  # its worker's time is already up
    assert channel.take(channel.read("listener-1", block_ms=100)) == ["expired"]
    assert channel.abandon("T4:0:0") is True  # and it stays given up


def message(msg_id: str | None, customer: str = "c1", text: str = "好的") -> InboundEvent:
    return InboundEvent.from_wire("message", {"msg_id": msg_id, "from_id": customer, "content": text},
                                  received_at=time.time())


def test_a_msg_id_is_let_through_once_and_remembered_once(r, keys):
    registry = Registry(r, keys)

    def remember(*events: InboundEvent) -> list[bool]:
        return registry.remember_many([(e, keys.seen("q1", e.msg_id), keys.lane("shop_001", e.from_id), e.msg_id)
                                       for e in events])

    assert remember(message("m-1")) == [True]
    assert remember(message("m-1"), message("m-2")) == [False, True]  # m-1 redelivered after a reconnect
    assert [e.msg_id for e in registry.recent("c1", 0)] == ["m-1", "m-2"]
    assert [e.msg_id for e in registry.recent(None, 0)] == ["m-1", "m-2"]
    assert r.lrange(keys.lane("shop_001", "c1"), 0, -1) == [b"m-1", b"m-2"]  # one place in the lane each
    assert registry.recent("c1", time.time() + 1) == []  # lookback is by the listener's receipt time
