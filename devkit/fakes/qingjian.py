"""Fake 轻简 chat connector: a WebSocket server speaking CONTRACTS.md §2 (protocol v1).

Tests (or a human, through the HTTP control API) make customers speak; the fake answers each send
with a `send_result`, and controls make those answers fail, come late, never come, or the connection
break. Like the real 轻简 is assumed to, it recognises a repeated `<task_id>:<step>` and does not
deliver the step again; yet it records EVERY frame our side sent (`frames`, see _qingjian_frames),
so tests see each repeat. `sent` is what customers received, each step once.

    python -m devkit.fakes.qingjian --port 9528 --control-port 9529
    curl -XPOST localhost:9529/say -d '{"from_id":"customer_123","content":"好的"}'
"""
from __future__ import annotations

import argparse
import json
import socket
import threading
import time
import uuid
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import ServerConnection, serve

from devkit.fakes._http import emit, serve_until_signal
from devkit.fakes._qingjian_control import Control
from devkit.fakes._qingjian_frames import SEND_ACTIONS, SendRecord, describe, new_frame, problem

LABEL = "轻简 fake"
class FakeQingjian(SendRecord):
    def __init__(self, host: str = "127.0.0.1", port: int = 0,
                 control_port: int | None = None) -> None:
        self.host, self.port, self.control_port = host, port, control_port
        self.frames: list[dict[str, Any]] = []  # every send frame received (see the module docstring)
        self.sent: list[dict[str, Any]] = []  # what customers received: the `delivered` frames
        self.failed: list[dict[str, Any]] = []  # answered ok=false (+ error); not delivered
        self.emitted: list[dict[str, Any]] = []  # inbound frames pushed to clients
        self.malformed_received = 0  # non-JSON / non-object / unknown action / no req_id
        self.pings = 0
        self.connect_times: list[float] = []  # when each client connected (failover timing)
        self._results: dict[str, dict[str, Any]] = {}  # delivered step (req_id minus attempt) -> result
        self._clients: set[ServerConnection] = set()
        self._cond = threading.Condition()
        self._fail_left, self._fail_error = 0, "boom"
        self._mute_left = 0
        self._delay = 0.0
        self._held: list[tuple[ServerConnection, dict[str, Any], dict[str, Any]]] | None = None
        self._server = None
        self._thread: threading.Thread | None = None
        self.control: Control | None = None

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def start(self) -> "FakeQingjian":
        """Listen (again: after stop() it reuses the same port, i.e. a 轻简 restart)."""
        # ping_interval=None: liveness is the app-level ping/pong of §2, not WS pings.
        self._server = serve(self._handle, self.host, self.port, ping_interval=None,
                             close_timeout=0.5)
        self.port = self._server.socket.getsockname()[1]
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name=f"FakeQingjian:{self.port}", daemon=True)
        self._thread.start()
        if self.control_port is not None and self.control is None:
            self.control = Control(self, port=self.control_port, host=self.host).start()
            self.control_port = self.control.port
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()  # closes client connections with 1001 going away
        if self.control is not None:
            self.control.stop()
            self.control = None

    def __enter__(self) -> "FakeQingjian":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- customers speak (inbound events) --------------------------------------------------
    def say(self, from_id: str, content: str, *, acc_id: str = "shop_001", from_name: str = "",
            msg_type: str = "text", msg_id: str | None = None, ts: int | None = None,
            acc_type: str = "AliWorkbench") -> str:
        msg_id = msg_id or f"m-{uuid.uuid4()}"
        data = {"msg_id": msg_id, "acc_id": acc_id, "acc_type": acc_type, "from_id": from_id,
                "from_name": from_name, "msg_type": msg_type, "content": content,
                "ts": int(time.time()) if ts is None else ts}
        self._broadcast({"event": "message", "data": data},
                        f"<- {from_id} says {content!r} ({msg_id})")
        return msg_id

    def pay(self, from_id: str, order_id: str = "O-1", amount: str = "1.00", *,
            acc_id: str = "shop_001", from_name: str = "", msg_id: str | None = None,
            ts: int | None = None) -> str:
        msg_id = msg_id or f"p-{uuid.uuid4()}"
        data = {"msg_id": msg_id, "acc_id": acc_id, "from_id": from_id, "from_name": from_name,
                "order_id": order_id, "amount": amount,
                "ts": int(time.time()) if ts is None else ts}
        self._broadcast({"event": "payment", "data": data},
                        f"<- {from_id} paid {amount} for {order_id} ({msg_id})")
        return msg_id

    def order(self, from_id: str, order_id: str = "O-1", *, acc_id: str = "shop_001",
              from_name: str = "", msg_id: str | None = None, ts: int | None = None) -> str:
        msg_id = msg_id or f"o-{uuid.uuid4()}"
        data = {"msg_id": msg_id, "acc_id": acc_id, "from_id": from_id, "from_name": from_name,
                "order_id": order_id, "ts": int(time.time()) if ts is None else ts}
        self._broadcast({"event": "order", "data": data},
                        f"<- {from_id} ordered {order_id} ({msg_id})")
        return msg_id

    def send_raw(self, text: str) -> int:
        """Push any text frame (malformed JSON, unknown events) to every client."""
        return self._broadcast_text(text, f"<- raw frame {text[:60]!r}")

    def _broadcast(self, frame: dict[str, Any], line: str) -> int:
        with self._cond:
            self.emitted.append(frame)
        return self._broadcast_text(json.dumps(frame, ensure_ascii=False), line)

    def _broadcast_text(self, text: str, line: str) -> int:
        with self._cond:
            clients = list(self._clients)
        reached = sum(self._send_text(ws, text) for ws in clients)
        emit(LABEL, line + ("" if reached else "  (no client connected!)"))
        return reached

    # -- controls --------------------------------------------------------------------------
    def fail_next(self, n: int = 1, error: str = "boom") -> None:
        """Answer the next n new sends with ok=false; they go to `failed`, not `sent`."""
        with self._cond:
            self._fail_left, self._fail_error = n, error

    def set_delay(self, seconds: float) -> None:
        """Answer every send_result `seconds` late (0 = at once)."""
        with self._cond:
            self._delay = seconds

    def hold(self) -> None:
        """Keep every send_result back until release(); the sends still count as delivered."""
        with self._cond:
            if self._held is None:
                self._held = []

    def release(self) -> int:
        """Send the held answers (to a connection that died meanwhile they are lost) and stop holding."""
        with self._cond:
            held, self._held = self._held or [], None
        for ws, entry, frame in held:
            self._deliver_answer(ws, entry, frame)
        emit(LABEL, f"released {len(held)} held send_result(s)")
        return len(held)

    def mute(self, n: int = 1) -> None:
        """Deliver the next n new sends but never answer them."""
        with self._cond:
            self._mute_left = n

    def reset_controls(self) -> None:
        """Back to answering every send at once: no failures, mutes or delay left; held answers released."""
        with self._cond:
            self._fail_left, self._mute_left, self._delay = 0, 0, 0.0
        self.release()

    def drop_connections(self) -> int:
        """Cut every client off without a close frame, as a crash or network loss would."""
        with self._cond:
            clients = list(self._clients)
        for ws in clients:
            try:
                ws.socket.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        emit(LABEL, f"dropped {len(clients)} connection(s)")
        return len(clients)

    @property
    def client_count(self) -> int:
        with self._cond:
            return len(self._clients)

    def wait_for_client(self, timeout: float = 10) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: bool(self._clients), timeout=timeout)

    # -- serving ---------------------------------------------------------------------------
    def _handle(self, ws: ServerConnection) -> None:
        with self._cond:
            self._clients.add(ws)
            self.connect_times.append(time.time())
            self._cond.notify_all()
        emit(LABEL, f"client connected from {ws.remote_address[0]}:{ws.remote_address[1]}")
        try:
            for message in ws:
                self._on_frame(ws, message)
        except ConnectionClosed:
            pass
        finally:
            with self._cond:
                self._clients.discard(ws)
                self._cond.notify_all()
            emit(LABEL, "client disconnected")

    def _on_frame(self, ws: ServerConnection, message: str | bytes) -> None:
        try:
            frame = json.loads(message)
        except (ValueError, TypeError):
            frame = None
        action = frame.get("action") if isinstance(frame, dict) else None
        if action == "ping":
            with self._cond:
                self.pings += 1
            self._send_text(ws, json.dumps({"event": "pong"}))
        elif action in SEND_ACTIONS and isinstance(frame.get("req_id"), str) and frame["req_id"]:
            self._on_send(ws, action, frame["req_id"], frame.get("data"))
        else:
            with self._cond:
                self.malformed_received += 1
            emit(LABEL, f"ignored malformed/unknown frame {str(message)[:80]!r}")

    def _on_send(self, ws: ServerConnection, action: str, req_id: str, data: Any) -> None:
        # CONTRACTS.md §2: a step already delivered is not delivered again, whether the repeat is a
        # retransmission or a later attempt (the req_id's part before its last colon names the step).
        entry = new_frame(action, req_id, data)
        step, answer = entry["step"], True
        with self._cond:
            self.frames.append(entry)
            if step in self._results:
                entry.update(outcome="repeat", repeat=True)
                result, line = self._results[step], f"repeated send of step {step} not delivered again (req {req_id})"
            elif (refusal := problem(action, data)) or self._fail_left > 0:
                if not refusal:
                    self._fail_left -= 1
                error = refusal or self._fail_error
                result = {"ok": False, "error": error}
                entry.update(outcome="refused", error=error)
                self.failed.append(entry)
                line = f"-x {data.get('to_id') if isinstance(data, dict) else '?'} {action} " \
                       f"FAILED: {error} (req {req_id})"
            else:
                result = {"ok": True, "error": None}
                entry["outcome"] = "delivered"
                self._results[step] = result
                self.sent.append(entry)
                line = f"-> {data['to_id']} {describe(action, data)} (req {req_id})"
                if self._mute_left > 0:
                    self._mute_left -= 1
                    entry["answer"] = "muted"
                    answer, line = False, line + " [muted: no send_result]"
            self._cond.notify_all()
        emit(LABEL, line)
        if answer:
            self._answer(ws, entry, {"event": "send_result", "data": {"req_id": req_id, **result}})

    def _answer(self, ws: ServerConnection, entry: dict[str, Any], frame: dict[str, Any]) -> None:
        with self._cond:
            if self._held is not None:
                entry["answer"] = "held"
                self._held.append((ws, entry, frame))
                return
            delay = self._delay
            if delay > 0:
                entry["answer"] = "pending"
        if delay > 0:
            timer = threading.Timer(delay, self._deliver_answer, (ws, entry, frame))
            timer.daemon = True
            timer.start()
        else:
            self._deliver_answer(ws, entry, frame)

    def _deliver_answer(self, ws: ServerConnection, entry: dict[str, Any], frame: dict[str, Any]) -> None:
        with self._cond:  # recorded first: the client may act on the answer before send() returns here
            entry["answer"] = "sent"
        if not self._send_text(ws, json.dumps(frame, ensure_ascii=False)):
            with self._cond:
                entry["answer"] = "lost"
        with self._cond:
            self._cond.notify_all()

    @staticmethod
    def _send_text(ws: ServerConnection, text: str) -> bool:
        try:
            ws.send(text)
            return True
        except (ConnectionClosed, OSError, RuntimeError):
            return False  # the client is gone; a real 轻简 would lose this frame too


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9528)
    parser.add_argument("--control-port", type=int, default=9529)
    args = parser.parse_args(argv)
    fake = FakeQingjian(host=args.host, port=args.port, control_port=args.control_port).start()
    emit(LABEL, f"WebSocket on {fake.url}; control API on {fake.control.base_url} "
                f"(POST /say {{\"from_id\",\"content\"}}, /pay, /order, /drop; GET /sent, /frames)")
    serve_until_signal(fake)


if __name__ == "__main__":
    main()
