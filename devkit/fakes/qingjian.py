"""Fake 轻简 chat connector: a WebSocket server speaking CONTRACTS.md §2 (protocol v1).

Tests (or a human, through the HTTP control API) make customers speak; the fake records what
the bridge sends to customers and answers each send with a `send_result`. Controls make those
answers fail, come late, never come, or the connection break, so retries and reconnects can be
exercised. `sent` holds only what a customer actually received, each `req_id` once.

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

from devkit.fakes._http import FakeHTTPServer, Request, emit, json_body, serve_until_signal

LABEL = "轻简 fake"
SEND_ACTIONS = ("send_text", "send_file", "send_link")
# Fields each send must carry in `data` (besides acc_id and to_id); URLs must be http(s).
_REQUIRED = {"send_text": ("content",), "send_file": ("file_url",), "send_link": ("url",)}
_URL_FIELDS = ("file_url", "url")


def _problem(action: str, data: Any) -> str | None:
    """Why a real 轻简 would refuse this send, or None."""
    if not isinstance(data, dict):
        return "data must be an object"
    for key in ("acc_id", "to_id") + _REQUIRED[action]:
        if not isinstance(data.get(key), str) or not data[key].strip():
            return f"missing {key}"
    for key in _URL_FIELDS:
        if key in data and not str(data[key]).startswith(("http://", "https://")):
            return f"{key} must be http(s)"
    return None


def _describe(action: str, data: dict[str, Any]) -> str:
    if action == "send_text":
        text = data.get("content", "").replace("\n", "⏎")
        return f"send_text {text[:60]!r}" + ("…" if len(text) > 60 else "")
    if action == "send_file":
        return f"send_file {data.get('file_name') or data.get('file_url')}"
    return f"send_link {data.get('title') or ''} {data.get('url')}".replace("  ", " ")


class FakeQingjian:
    def __init__(self, host: str = "127.0.0.1", port: int = 0,
                 control_port: int | None = None) -> None:
        self.host, self.port, self.control_port = host, port, control_port
        self.sent: list[dict[str, Any]] = []  # delivered: action, req_id, data, time
        self.failed: list[dict[str, Any]] = []  # answered ok=false (+ error); not delivered
        self.emitted: list[dict[str, Any]] = []  # inbound frames pushed to clients
        self.duplicates_ignored = 0
        self.malformed_received = 0  # non-JSON / non-object / unknown action / no req_id
        self.pings = 0
        self.connect_times: list[float] = []  # when each client connected (failover timing)
        self._results: dict[str, dict[str, Any]] = {}  # delivered step (req_id minus attempt) -> result
        self._clients: set[ServerConnection] = set()
        self._cond = threading.Condition()
        self._fail_left, self._fail_error = 0, "boom"
        self._mute_left = 0
        self._delay = 0.0
        self._held: list[tuple[ServerConnection, dict[str, Any]]] | None = None
        self._server = None
        self._thread: threading.Thread | None = None
        self.control: _Control | None = None

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
            self.control = _Control(self, port=self.control_port, host=self.host).start()
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
        with self._cond:
            held, self._held = self._held or [], None
        for ws, frame in held:
            self._send_text(ws, json.dumps(frame, ensure_ascii=False))
        emit(LABEL, f"released {len(held)} held send_result(s)")
        return len(held)

    def mute(self, n: int = 1) -> None:
        """Deliver the next n new sends but never answer them."""
        with self._cond:
            self._mute_left = n

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

    # -- queries ---------------------------------------------------------------------------
    @property
    def client_count(self) -> int:
        with self._cond:
            return len(self._clients)

    def sent_to(self, to_id: str) -> list[dict[str, Any]]:
        with self._cond:
            return [s for s in self.sent if s["data"].get("to_id") == to_id]

    def wait_for_client(self, timeout: float = 10) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: bool(self._clients), timeout=timeout)

    def wait_for_sends(self, n: int, timeout: float = 10) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.sent) >= n, timeout=timeout)

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
        entry = {"action": action, "req_id": req_id, "data": data, "time": time.time()}
        answer = True
        # CONTRACTS.md §2: the part of a req_id before its last colon names the step across
        # retries, "so a repeated send can be recognised": a step already delivered is not
        # delivered again, whether the repeat is a retransmission or a later attempt.
        step = req_id.rsplit(":", 1)[0] if req_id.count(":") >= 2 else req_id
        with self._cond:
            if step in self._results:
                self.duplicates_ignored += 1
                result, line = self._results[step], f"repeated send of step {step} ignored (req {req_id})"
            elif (problem := _problem(action, data)) or self._fail_left > 0:
                if not problem:
                    self._fail_left -= 1
                error = problem or self._fail_error
                result = {"ok": False, "error": error}
                self.failed.append({**entry, "error": error})
                line = f"-x {data.get('to_id') if isinstance(data, dict) else '?'} {action} " \
                       f"FAILED: {error} (req {req_id})"
            else:
                result = {"ok": True, "error": None}
                self._results[step] = result
                self.sent.append(entry)
                line = f"-> {data['to_id']} {_describe(action, data)} (req {req_id})"
                if self._mute_left > 0:
                    self._mute_left -= 1
                    answer, line = False, line + " [muted: no send_result]"
            self._cond.notify_all()
        emit(LABEL, line)
        if answer:
            self._answer(ws, {"event": "send_result", "data": {"req_id": req_id, **result}})

    def _answer(self, ws: ServerConnection, frame: dict[str, Any]) -> None:
        with self._cond:
            if self._held is not None:
                self._held.append((ws, frame))
                return
            delay = self._delay
        text = json.dumps(frame, ensure_ascii=False)
        if delay > 0:
            timer = threading.Timer(delay, self._send_text, (ws, text))
            timer.daemon = True
            timer.start()
        else:
            self._send_text(ws, text)

    @staticmethod
    def _send_text(ws: ServerConnection, text: str) -> bool:
        try:
            ws.send(text)
            return True
        except (ConnectionClosed, OSError, RuntimeError):
            return False  # the client is gone; a real 轻简 would lose this frame too


class _Control(FakeHTTPServer):
    """HTTP control API so a human running the demo can make a customer speak."""

    label = "轻简 fake control"
    _FIELDS = {"say": ("from_id", "content", "from_name", "acc_id", "msg_type", "msg_id", "ts"),
               "pay": ("from_id", "order_id", "amount", "from_name", "acc_id", "msg_id", "ts"),
               "order": ("from_id", "order_id", "from_name", "acc_id", "msg_id", "ts")}

    def __init__(self, qingjian: FakeQingjian, port: int, host: str) -> None:
        super().__init__(host, port)
        self.qingjian = qingjian

    def handle(self, request: Request) -> tuple[int, Any]:
        name = request.path.strip("/")
        if request.method == "GET" and name in ("sent", "failed"):
            with self.qingjian._cond:
                return 200, list(getattr(self.qingjian, name))
        if request.method == "POST" and name == "drop":
            return 200, {"dropped": self.qingjian.drop_connections()}
        if request.method != "POST" or name not in self._FIELDS:
            return 404, {"error": "use POST /say, /pay, /order, /drop or GET /sent, /failed"}
        body, error = json_body(request)
        if error or not isinstance(body, dict):
            return 400, {"error": error or "body must be a JSON object"}
        required = ("from_id", "content") if name == "say" else ("from_id",)
        missing = [k for k in required if not body.get(k)]
        if missing:
            return 422, {"error": f"missing {', '.join(missing)}"}
        kwargs = {k: body[k] for k in self._FIELDS[name] if k in body}
        msg_id = getattr(self.qingjian, name)(**kwargs)
        return 200, {"msg_id": msg_id, "clients": self.qingjian.client_count}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9528)
    parser.add_argument("--control-port", type=int, default=9529)
    args = parser.parse_args(argv)
    fake = FakeQingjian(host=args.host, port=args.port, control_port=args.control_port).start()
    emit(LABEL, f"WebSocket on {fake.url}; control API on {fake.control.base_url} "
                f"(POST /say {{\"from_id\",\"content\"}}, /pay, /order, /drop; GET /sent)")
    serve_until_signal(fake)


if __name__ == "__main__":
    main()
