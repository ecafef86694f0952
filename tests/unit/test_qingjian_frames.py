"""The 轻简 adapter's pure half (CONTRACTS.md §2): inbound parsing and outbound frames."""
from __future__ import annotations

import json

import pytest

from app.clients.qingjian import PING, FrameError, parse_inbound, send_frame
from app.domain.actions import plan_steps, req_id

# -- inbound ------------------------------------------------------------------------------------------

CONTRACT_FRAMES = [
    {"event": "message", "data": {"msg_id": "m-1", "acc_id": "shop_001", "acc_type": "AliWorkbench",
                                  "from_id": "customer_123", "from_name": "小明", "msg_type": "text",
                                  "content": "好的谢谢", "ts": 1772241600}},
    {"event": "payment", "data": {"msg_id": "p-1", "acc_id": "shop_001", "from_id": "customer_123",
                                  "from_name": "小明", "order_id": "O-9", "amount": "68.00", "ts": 1772241600}},
    {"event": "order", "data": {"msg_id": "o-1", "acc_id": "shop_001", "from_id": "customer_123",
                                "from_name": "小明", "order_id": "O-9", "ts": 1772241600}},
    {"event": "send_result", "data": {"req_id": "T1:0:0", "ok": True, "error": None}},
]


@pytest.mark.parametrize("frame", CONTRACT_FRAMES, ids=lambda f: f["event"])
def test_parse_contract_frames(frame):
    for raw in (json.dumps(frame, ensure_ascii=False), json.dumps(frame).encode()):
        event, data = parse_inbound(raw)
        assert event == frame["event"]
        assert data == frame["data"]


def test_parse_pong_without_data():
    assert parse_inbound('{"event": "pong"}') == ("pong", {})
    assert parse_inbound('{"event": "pong", "data": null}') == ("pong", {})


def test_unknown_event_is_parsed_not_rejected():
    # unknown events are skipped by the listener, not a frame error
    assert parse_inbound('{"event": "typing", "data": {"x": 1}}') == ("typing", {"x": 1})


@pytest.mark.parametrize("raw", [
    "", "not json", "{", "{'event': 'pong'}", b"\xff\xfe\x00garbage",        # not JSON
    "[]", '["message", {}]', '"message"', "42", "null", "true",              # not an object
    '{"data": {}}', '{"event": null}', '{"event": 5, "data": {}}',             # no event name
    '{"event": "message", "data": []}', '{"event": "message", "data": "x"}',  # data not an object
    '{"event": "message", "data": 3}',
])
def test_parse_rejects_malformed_frames(raw):
    with pytest.raises(FrameError):
        parse_inbound(raw)


def test_frame_error_is_a_value_error():
    assert issubclass(FrameError, ValueError)


# -- outbound -----------------------------------------------------------------------------------------

def test_send_text_frame():
    frame = send_frame({"kind": "text", "content": "这是您要的文件"}, acc_id="shop_001", to_id="customer_123",
                       req_id="T1:0:0")
    assert frame == {"action": "send_text", "req_id": "T1:0:0",
                     "data": {"acc_id": "shop_001", "to_id": "customer_123", "content": "这是您要的文件"}}


def test_send_file_frame():
    frame = send_frame({"kind": "file", "file_url": "https://example.com/a.zip", "file_name": "a.zip"},
                       acc_id="shop_001", to_id="customer_123", req_id="T1:1:0")
    assert frame == {"action": "send_file", "req_id": "T1:1:0",
                     "data": {"acc_id": "shop_001", "to_id": "customer_123",
                              "file_url": "https://example.com/a.zip", "file_name": "a.zip"}}


def test_send_link_frame():
    frame = send_frame({"kind": "link", "url": "https://example.com/p", "title": "作品", "desc": "看看"},
                       acc_id="shop_001", to_id="customer_123", req_id="T1:1:2")
    assert frame == {"action": "send_link", "req_id": "T1:1:2",
                     "data": {"acc_id": "shop_001", "to_id": "customer_123", "url": "https://example.com/p",
                              "title": "作品", "desc": "看看"}}


def test_unknown_step_kind():
    with pytest.raises(ValueError):
        send_frame({"kind": "voice"}, acc_id="a", to_id="b", req_id="r")


def test_frames_are_json_text():
    frame = send_frame({"kind": "text", "content": "好的"}, acc_id="a", to_id="b", req_id="r")
    assert json.loads(json.dumps(frame, ensure_ascii=False)) == frame


def test_ping():
    assert json.loads(PING) == {"action": "ping"}


def test_planned_action_to_frames_end_to_end():
    steps = plan_steps({"type": "send_file", "file_url": "https://example.com/dl/a.zip?sig=1",
                        "message": "这是您要的文件"})
    frames = [send_frame(s, acc_id="shop_001", to_id="customer_123", req_id=req_id("T1", i, 0))
              for i, s in enumerate(steps)]
    assert [f["action"] for f in frames] == ["send_text", "send_file"]
    assert [f["req_id"] for f in frames] == ["T1:0:0", "T1:1:0"]
    assert frames[1]["data"]["file_name"] == "a.zip"
