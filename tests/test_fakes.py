"""The fakes themselves, exercised over real sockets (they must be right before tests lean on them)."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import websocket

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `devkit.fakes` is imported as a package from the project root
    sys.path.insert(0, str(ROOT))

from devkit import stores  # noqa: E402
from devkit.fakes.qingjian import FakeQingjian  # noqa: E402
from devkit.fakes.tianwang import FakeTianwang, sign  # noqa: E402
from devkit.fakes.tuhui import FakeTuhui  # noqa: E402
from devkit.fakes.wecom import FakeWecom  # noqa: E402

pytestmark = pytest.mark.timeout(20)


# -- 轻简 ---------------------------------------------------------------------------------------
_open_clients: list[websocket.WebSocket] = []


@pytest.fixture
def qj():
    with FakeQingjian() as fake:
        yield fake
        close_clients()


def connect(fake: FakeQingjian) -> websocket.WebSocket:
    ws = websocket.create_connection(fake.url, timeout=3)
    _open_clients.append(ws)  # closed before the fake stops, so stop() needn't wait them out
    assert fake.wait_for_client(2)
    return ws


def close_clients() -> None:
    while _open_clients:
        try:
            _open_clients.pop().close(timeout=1)
        except Exception:
            pass


def recv(ws: websocket.WebSocket, timeout: float = 3) -> dict:
    ws.settimeout(timeout)
    return json.loads(ws.recv())


def send(ws, action="send_text", req_id="T1:0:0", **data):
    data = {"acc_id": "shop_001", "to_id": "customer_123", "content": "你好", **data}
    ws.send(json.dumps({"action": action, "req_id": req_id, "data": data}, ensure_ascii=False))


def test_qingjian_say_reaches_client_and_send_is_answered(qj):
    ws = connect(qj)
    msg_id = qj.say("customer_123", "好的谢谢", from_name="小明")
    frame = recv(ws)
    assert frame["event"] == "message"
    assert frame["data"]["msg_id"] == msg_id and msg_id.startswith("m-")
    assert frame["data"] | {"ts": 0} == {
        "msg_id": msg_id, "acc_id": "shop_001", "acc_type": "AliWorkbench",
        "from_id": "customer_123", "from_name": "小明", "msg_type": "text",
        "content": "好的谢谢", "ts": 0}
    assert abs(frame["data"]["ts"] - time.time()) < 5

    send(ws, "send_file", "T1:1:0", file_url="https://example.com/a.zip", file_name="a.zip")
    assert recv(ws) == {"event": "send_result", "data": {"req_id": "T1:1:0", "ok": True, "error": None}}
    assert qj.wait_for_sends(1, 1)
    assert [s["action"] for s in qj.sent_to("customer_123")] == ["send_file"]
    assert qj.sent_to("someone_else") == []

    ws.send(json.dumps({"action": "ping"}))
    assert recv(ws) == {"event": "pong"}


def test_qingjian_payment_order_and_raw_frames(qj):
    ws = connect(qj)
    qj.pay("c1", order_id="O-9", amount="68.00")
    qj.order("c1", order_id="O-9")
    qj.send_raw("{not json")
    pay, order, raw = recv(ws), recv(ws), ws.recv()
    assert pay["event"] == "payment" and pay["data"]["amount"] == "68.00"
    assert order["event"] == "order" and order["data"]["order_id"] == "O-9"
    assert pay["data"]["msg_id"] != order["data"]["msg_id"]
    assert raw == "{not json"


def test_qingjian_a_repeated_step_is_delivered_once_and_every_frame_is_recorded(qj):
    ws = connect(qj)
    for _ in range(2):
        send(ws, req_id="T1:0:0")
        assert recv(ws)["data"] == {"req_id": "T1:0:0", "ok": True, "error": None}
    send(ws, req_id="T1:0:1")  # a later attempt of a delivered step is recognised (CONTRACTS §2)
    assert recv(ws)["data"] == {"req_id": "T1:0:1", "ok": True, "error": None}
    send(ws, req_id="T1:1:1")  # another step is a new delivery
    assert recv(ws)["data"]["ok"] is True
    assert [s["req_id"] for s in qj.sent] == ["T1:0:0", "T1:1:1"]  # what the customer received
    # ... and what our side sent: every frame, the repeats marked
    assert [(f["req_id"], f["step"], f["task_id"], f["outcome"], f["repeat"], f["answer"]) for f in qj.frames] == [
        ("T1:0:0", "T1:0", "T1", "delivered", False, "sent"), ("T1:0:0", "T1:0", "T1", "repeat", True, "sent"),
        ("T1:0:1", "T1:0", "T1", "repeat", True, "sent"), ("T1:1:1", "T1:1", "T1", "delivered", False, "sent")]
    assert [f["req_id"] for f in qj.repeats()] == ["T1:0:0", "T1:0:1"] and qj.duplicates_ignored == 2
    assert {step: [f["req_id"] for f in frames] for step, frames in qj.steps_sent_twice().items()} == {
        "T1:0": ["T1:0:0", "T1:0:0", "T1:0:1"]}
    assert len(qj.frames_for("customer_123")) == 4 and qj.frames_for("someone_else") == []
    assert len(qj.frames_of("T1")) == 4 and qj.frames_of("T") == []
    assert all(isinstance(f["time"], float) for f in qj.frames)


def test_qingjian_a_refused_attempt_does_not_count_as_delivered(qj):
    ws = connect(qj)
    qj.fail_next(1)
    send(ws, req_id="T2:0:0")
    assert recv(ws)["data"]["ok"] is False
    send(ws, req_id="T2:0:1")
    assert recv(ws)["data"]["ok"] is True
    assert [s["req_id"] for s in qj.sent] == ["T2:0:1"]
    assert [(f["outcome"], f["repeat"]) for f in qj.frames] == [("refused", False), ("delivered", False)]
    assert qj.steps_sent_twice() == {}  # a step tried again after a refusal is not sent twice


def test_qingjian_fail_next_and_invalid_sends(qj):
    ws = connect(qj)
    qj.fail_next(1, error="nope")
    send(ws, req_id="T1:0:0")
    assert recv(ws)["data"] == {"req_id": "T1:0:0", "ok": False, "error": "nope"}
    send(ws, req_id="T1:0:1", to_id="")  # a real 轻简 refuses a send without a recipient
    assert recv(ws)["data"] == {"req_id": "T1:0:1", "ok": False, "error": "missing to_id"}
    send(ws, "send_link", "T1:0:2", url="ftp://x")
    assert recv(ws)["data"]["error"] == "url must be http(s)"
    send(ws, req_id="T1:0:3")
    assert recv(ws)["data"]["ok"] is True
    assert [f["req_id"] for f in qj.failed] == ["T1:0:0", "T1:0:1", "T1:0:2"]
    assert [s["req_id"] for s in qj.sent] == ["T1:0:3"]


def test_qingjian_hold_release_mute_and_delay(qj):
    ws = connect(qj)
    qj.hold()
    send(ws, req_id="H:0:0")
    assert qj.wait_for_frames(lambda frames: frames and frames[-1]["answer"] == "held", 2)
    assert len(qj.sent) == 1  # delivered, only the answer is held back
    assert qj.release() == 1
    assert recv(ws)["data"]["req_id"] == "H:0:0"
    assert qj.frames[-1]["answer"] == "sent" and not qj.answer_lost(qj.frames[-1])

    qj.mute(1)
    send(ws, req_id="M:0:0")
    assert qj.wait_for_frames(lambda frames: frames[-1]["req_id"] == "M:0:0", 2)
    assert qj.frames[-1]["answer"] == "muted" and qj.answer_lost(qj.frames[-1])
    send(ws, req_id="M:0:0")  # the client's retransmission is answered, not delivered again
    assert recv(ws)["data"] == {"req_id": "M:0:0", "ok": True, "error": None}
    assert [s["req_id"] for s in qj.sent] == ["H:0:0", "M:0:0"]
    assert [f["req_id"] for f in qj.repeats()] == ["M:0:0"]

    qj.set_delay(0.3)
    started = time.monotonic()
    send(ws, req_id="D:0:0")
    ws.send(json.dumps({"action": "ping"}))
    assert recv(ws) == {"event": "pong"}  # a late answer doesn't block the connection
    assert recv(ws)["data"]["req_id"] == "D:0:0"
    assert time.monotonic() - started >= 0.28


def test_qingjian_an_answer_released_to_a_dropped_connection_is_recorded_lost(qj):
    ws = connect(qj)
    qj.hold()
    send(ws, req_id="L:0:0")
    assert qj.wait_for_frames(lambda frames: frames and frames[-1]["answer"] == "held", 2)
    qj.drop_connections()
    assert qj.wait_for_frames(lambda frames: qj.client_count == 0, 2)
    qj.release()
    assert qj.frames[-1]["answer"] == "lost" and qj.answer_lost(qj.frames[-1])


def test_qingjian_reset_controls_answers_at_once_again(qj):
    ws = connect(qj)
    qj.fail_next(5)
    qj.mute(5)
    qj.set_delay(30)
    qj.hold()
    qj.reset_controls()
    send(ws, req_id="R:0:0")
    assert recv(ws)["data"] == {"req_id": "R:0:0", "ok": True, "error": None}


def test_qingjian_drop_malformed_and_restart(qj):
    ws = connect(qj)
    ws.send("not json")
    ws.send(json.dumps({"action": "send_text", "data": {}}))  # no req_id: cannot be answered
    ws.send(json.dumps({"action": "ping"}))
    assert recv(ws) == {"event": "pong"}
    assert qj.malformed_received == 2

    assert qj.drop_connections() == 1
    with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError, OSError)):
        recv(ws)  # the next read sees the connection gone (no close handshake)
    stores.wait_until(lambda: qj.client_count == 0, 2, 0.02, "the dropped client to be gone")

    port = qj.port
    qj.stop()
    qj.start()  # a 轻简 restart: same port, history kept
    assert qj.port == port
    ws2 = connect(qj)
    qj.say("c1", "又来了")
    assert recv(ws2)["data"]["content"] == "又来了"


def test_qingjian_control_api():
    with FakeQingjian(control_port=0) as fake:
        ws = connect(fake)
        control = fake.control.base_url
        answer = requests.post(f"{control}/say", json={"from_id": "c9", "content": "好的"}, timeout=3)
        assert answer.status_code == 200
        frame = recv(ws)
        assert frame["data"]["msg_id"] == answer.json()["msg_id"]
        assert frame["data"]["content"] == "好的"
        assert requests.post(f"{control}/pay", json={"from_id": "c9"}, timeout=3).ok
        assert recv(ws)["event"] == "payment"
        assert requests.post(f"{control}/say", json={"from_id": "c9"}, timeout=3).status_code == 422
        send(ws, req_id="C:0:0", to_id="c9")
        recv(ws)
        assert [s["req_id"] for s in requests.get(f"{control}/sent", timeout=3).json()] == ["C:0:0"]
        assert [f["outcome"] for f in requests.get(f"{control}/frames", timeout=3).json()] == ["delivered"]
        assert requests.get(f"{control}/clients", timeout=3).json() == {"clients": 1}
        close_clients()


# -- 天网 ---------------------------------------------------------------------------------------
def callback_body(task_id="TASK_1", status="completed", event_id="e-1", **extra):
    return json.dumps({"event_id": event_id, "task_id": task_id, "status": status, "error": None,
                       "result": {}, "timestamp": "2026-02-27T10:00:03+08:00", **extra}).encode()


def post_callback(fake, raw, secret=None, event_id="e-1", timeout=3):
    headers = {"Content-Type": "application/json", "X-Tianwang-Event-Id": event_id}
    if secret:
        headers["X-Tianwang-Signature"] = sign(secret, raw)
    return requests.post(fake.url, data=raw, headers=headers, timeout=timeout)


def test_tianwang_signature_and_dedupe():
    with FakeTianwang(secret="s3cret") as tw:
        raw = callback_body(status="running", event_id="e-1")
        assert post_callback(tw, raw, "s3cret").status_code == 200
        assert post_callback(tw, raw, "s3cret").status_code == 200  # at-least-once redelivery
        assert post_callback(tw, raw, "wrong").status_code == 401
        assert post_callback(tw, raw).status_code == 401  # no signature at all
        assert tw.bad_signatures == 2
        assert list(tw.events) == ["e-1"] and tw.duplicates == 1
        assert [(p["event_id"], p["status"]) for p in tw.received] == [("e-1", 200), ("e-1", 200), ("e-1", 401),
                                                                      ("e-1", 401)]
        assert tw.received[0]["body"]["status"] == "running" and tw.received[0]["raw"] == raw
        assert tw.received[0]["headers"]["X-Tianwang-Event-Id"] == "e-1"
        assert list(tw.posted_after_success()) == ["e-1"]  # the second post followed a 200
        assert len(tw.posts(event_id="e-1")) == 4 and len(tw.posts(task_id="TASK_1")) == 4
        assert tw.statuses("TASK_1") == ["running"]
        assert tw.contract_violations == []


def test_tianwang_controls_and_contract_check():
    with FakeTianwang() as tw:
        tw.answer_with(500, times=1)
        assert post_callback(tw, callback_body(event_id="e-1")).status_code == 500
        assert post_callback(tw, callback_body(event_id="e-1")).status_code == 200
        assert tw.wait_for(1, timeout=1)
        assert tw.wait_for_status("TASK_1", "completed", timeout=1)

        tw.hang(1.0, times=1)
        with pytest.raises(requests.Timeout):
            post_callback(tw, callback_body(event_id="e-2"), event_id="e-2", timeout=0.3)

        raw = callback_body(event_id="e-3", timestamp="2026-02-27T10:00:03")
        assert post_callback(tw, raw, event_id="other").status_code == 200
        assert tw.contract_violations == [("e-3", [
            "X-Tianwang-Event-Id header differs from body event_id", "timestamp has no UTC offset"])]
        assert requests.post(tw.url, data=b"{", timeout=3).status_code == 400
        # e-1: a 500 then a 200; e-2: hung (its client gave up): reposts of both are at-least-once
        assert tw.posted_after_success() == {}
        assert [p["hung"] for p in tw.posts(event_id="e-2")] == [1.0]


def test_tianwang_drops_and_redirects_on_request():
    with FakeTianwang() as tw:
        tw.drop_next(1)
        with pytest.raises(requests.ConnectionError):
            post_callback(tw, callback_body(event_id="e-1"))
        assert post_callback(tw, callback_body(event_id="e-1")).status_code == 200
        assert [(p["status"], p["dropped"]) for p in tw.posts(event_id="e-1")] == [(None, True), (200, False)]
        assert tw.posted_after_success() == {}  # the repeat followed an attempt that got no answer

        tw.redirect(tw.base_url + "/moved", 307, times=1)
        moved = requests.post(tw.url, data=callback_body(event_id="e-2"), allow_redirects=False, timeout=3)
        assert moved.status_code == 307 and moved.headers["Location"] == tw.base_url + "/moved"
        assert "e-2" not in tw.events
        tw.answer_with(503, times=1, task_id="TASK_2")  # only that task's next callback
        assert post_callback(tw, callback_body(event_id="e-3"), event_id="e-3").status_code == 200
        assert post_callback(tw, callback_body("TASK_2", event_id="e-4"), event_id="e-4").status_code == 503
        assert post_callback(tw, callback_body("TASK_2", event_id="e-4"), event_id="e-4").status_code == 200
        tw.answer_with(500)
        tw.answer_with(500, task_id="TASK_3")
        tw.reset_controls()
        assert post_callback(tw, callback_body("TASK_3", event_id="e-5"), event_id="e-5").status_code == 200


def test_tianwang_down_and_up_on_same_port():
    with FakeTianwang() as tw:
        url = tw.url
        tw.down()
        with pytest.raises(requests.ConnectionError):
            post_callback(tw, callback_body(), timeout=1)
        tw.up()
        assert tw.url == url
        assert post_callback(tw, callback_body(), timeout=1).status_code == 200
        assert tw.wait_for(lambda fake: "e-1" in fake.events, timeout=1)


# -- 图绘 ---------------------------------------------------------------------------------------
@pytest.fixture
def tuhui():
    with FakeTuhui(api_key="K", designers=["橘子", "婷婷"]) as fake:
        fake.session = requests.Session()
        fake.session.headers["X-API-Key"] = "K"
        yield fake


def test_tuhui_auth_and_designers(tuhui):
    assert requests.get(f"{tuhui.url}/online/designers", timeout=3).status_code == 401
    assert requests.get(f"{tuhui.url}/online/designers", headers={"X-API-Key": "x"},
                        timeout=3).status_code == 401
    assert tuhui.unauthorized == 2
    got = tuhui.session.get(f"{tuhui.url}/online/designers", timeout=3).json()
    assert got == {"designers": ["橘子", "婷婷"], "count": 2}
    tuhui.set_online(["婷婷"], bare_list=True)
    assert tuhui.session.get(f"{tuhui.url}/online/designers", timeout=3).json() == ["婷婷"]
    assert tuhui.session.get(f"{tuhui.url}/dispatch/queue", timeout=3).json()["suggestion"] == "婷婷"
    tuhui.set_suggestion(None)
    assert tuhui.session.get(f"{tuhui.url}/dispatch/queue", timeout=3).json()["suggestion"] is None


def test_tuhui_task_lifecycle(tuhui):
    s, base = tuhui.session, tuhui.url
    created = s.post(f"{base}/tasks", json={"task_name": "图片处理-0123", "description":
                     "dispatch D-42", "task_type": "image", "priority": "normal"}, timeout=3).json()
    task_id = created["task_id"]
    assert created["status"] == "pending" and len(task_id) == 8 and int(task_id, 16) >= 0
    queue = s.get(f"{base}/dispatch/queue", timeout=3).json()
    assert queue["pending_tasks"]["count"] == 1
    assert "D-42" in queue["pending_tasks"]["tasks"][0]["description"]
    assert queue["online_designers"] == {"count": 2, "designers": ["橘子", "婷婷"]}
    assert queue["suggestion"] == "橘子"

    assert s.post(f"{base}/tasks/{task_id}/assign", json={"designer_name": "橘子", "notes": "n"},
                  timeout=3).json() == {"success": True}
    assert s.post(f"{base}/tasks/ffffffff/assign", json={"designer_name": "橘子"},
                  timeout=3).status_code == 404
    task = s.get(f"{base}/tasks/{task_id}", timeout=3).json()
    assert task["status"] == "assigned" and task["assigned_to"] == "橘子"
    assert tuhui.assignments[0]["designer_name"] == "橘子"
    assert s.post(f"{base}/tasks/{task_id}/complete", json={"notes": "done"},
                  timeout=3).json() == {"success": True}
    assert s.get(f"{base}/dispatch/queue", timeout=3).json()["pending_tasks"]["count"] == 0


def test_tuhui_failures_slowness_and_lost_answer(tuhui):
    s, base = tuhui.session, tuhui.url
    tuhui.fail_next("POST /tasks$", 503, 1)
    assert s.post(f"{base}/tasks", json={"task_name": "x"}, timeout=3).status_code == 503
    assert tuhui.created == []
    assert s.post(f"{base}/tasks", json={"task_name": "x"}, timeout=3).status_code == 200

    tuhui.slow("/online", 0.5)
    with pytest.raises(requests.Timeout):
        s.get(f"{base}/online/designers", timeout=0.2)
    tuhui.slow("/online", 0)

    tuhui.create_succeeds_but_times_out(1.0)
    with pytest.raises(requests.Timeout):
        s.post(f"{base}/tasks", json={"task_name": "y", "description": "dispatch D-77"},
               timeout=0.3)
    assert [t["task_name"] for t in tuhui.find_tasks("D-77")] == ["y"]  # created all the same
    queue = s.get(f"{base}/dispatch/queue", timeout=3).json()
    assert any("D-77" in t["description"] for t in queue["pending_tasks"]["tasks"])
    assert s.post(f"{base}/tasks", json={"task_name": "z"}, timeout=3).status_code == 200

    tuhui.down()
    with pytest.raises(requests.ConnectionError):
        s.get(f"{base}/online/designers", timeout=1)
    tuhui.up()
    assert s.get(f"{base}/online/designers", timeout=1).ok


# -- 企业微信 -----------------------------------------------------------------------------------
def test_wecom_notices_rate_limit_and_errors():
    with FakeWecom() as wc:
        notice = {"msgtype": "markdown", "markdown": {"content": "📋 **新任务派单**\n设计师：橘子"}}
        assert requests.post(wc.url, json=notice, timeout=3).json() == {"errcode": 0, "errmsg": "ok"}
        wc.rate_limit_next(2)
        wc.fail_next(1, errcode=93000, errmsg="invalid webhook url")
        codes = [requests.post(wc.url, json=notice, timeout=3).json()["errcode"] for _ in range(4)]
        assert codes == [45009, 45009, 93000, 0]
        empty = {"msgtype": "markdown", "markdown": {"content": " "}}
        answer = requests.post(wc.url, json=empty, timeout=3)
        assert answer.status_code == 200 and answer.json()["errcode"] == 44004
        assert wc.wait_for_messages(2, timeout=1)
        assert [m["content"] for m in wc.messages] == [notice["markdown"]["content"]] * 2
        assert len(wc.rejected) == 4


# -- module CLIs --------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_module_clis_serve_until_sigterm():
    ports = {name: free_port() for name in ("qj", "ctl", "tw", "tu", "wc")}
    commands = [
        ["devkit.fakes.qingjian", "--port", str(ports["qj"]), "--control-port", str(ports["ctl"])],
        ["devkit.fakes.tianwang", "--port", str(ports["tw"]), "--secret", "S"],
        ["devkit.fakes.tuhui", "--port", str(ports["tu"]), "--api-key", "K", "--designers", "橘子,婷婷"],
        ["devkit.fakes.wecom", "--port", str(ports["wc"])],
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", *cmd], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for cmd in commands]
    try:
        def listening(port: int) -> bool:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return True
            except OSError:
                return False

        for port in ports.values():
            stores.wait_until(lambda: listening(port), 8, 0.05, f"a fake to listen on {port}")
        ws = websocket.create_connection(f"ws://127.0.0.1:{ports['qj']}", timeout=3)
        clients = f"http://127.0.0.1:{ports['ctl']}/clients"
        stores.wait_until(lambda: requests.get(clients, timeout=3).json()["clients"] == 1, 5,
                          message="the fake to register the client")
        said = requests.post(f"http://127.0.0.1:{ports['ctl']}/say",
                             json={"from_id": "c1", "content": "好的"}, timeout=3).json()
        assert json.loads(ws.recv())["data"]["msg_id"] == said["msg_id"]
        ws.close()
        assert requests.get(f"http://127.0.0.1:{ports['tu']}/online/designers",
                            headers={"X-API-Key": "K"}, timeout=3).json()["count"] == 2
        assert requests.post(f"http://127.0.0.1:{ports['tw']}/callback", data=b"{}",
                             timeout=3).status_code == 401
        assert requests.post(f"http://127.0.0.1:{ports['wc']}/send", json={"msgtype": "markdown",
                             "markdown": {"content": "hi"}}, timeout=3).json()["errcode"] == 0
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        outputs = [proc.communicate(timeout=8)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0, 0], outputs
    assert "<- c1 says '好的'" in outputs[0]
    assert "notice: hi" in outputs[3]
