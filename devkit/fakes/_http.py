"""Shared plumbing for the HTTP fakes (天网 callback receiver, 图绘, WeCom robot).

A fake subclasses `FakeHTTPServer` and implements `handle(request) -> (status, json_obj)`.
The base class owns the listening socket (port 0 = pick a free one, then keep that port so
`down()` / `up()` can simulate an outage and a restart on the SAME address), a request log,
a condition variable for `wait_*` helpers, and interruptible sleeps for "slow" controls.
"""
from __future__ import annotations

import json
import signal
import socketserver
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit


def emit(label: str, line: str) -> None:
    """One readable line per wire event; flushed so a demo terminal shows it at once."""
    print(f"[{label}] {line}", flush=True)


@dataclass
class Request:
    method: str
    path: str  # without the query string
    query: dict[str, list[str]]
    headers: dict[str, str]  # as sent; use header() for case-insensitive lookup
    raw: bytes
    time: float = field(default_factory=time.time)

    def header(self, name: str, default: str | None = None) -> str | None:
        name = name.lower()
        for key, value in self.headers.items():
            if key.lower() == name:
                return value
        return default

    def json(self) -> Any:
        """Parsed body; raises ValueError when the body is not JSON."""
        return json.loads(self.raw.decode("utf-8"))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # A fake may be sleeping inside a handler ("slow", "hang"); closing must not wait for it.
    block_on_close = False
    allow_reuse_address = True

    def server_bind(self) -> None:
        # Skip HTTPServer's getfqdn() reverse lookup: it can stall for seconds without DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.0: one request per connection, so down() really cuts every client off.
    protocol_version = "HTTP/1.0"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # the fakes print their own one-line summaries

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        request = Request(
            method=self.command,
            path=url.path,
            query=parse_qs(url.query),
            headers=dict(self.headers.items()),
            raw=raw,
        )
        fake: FakeHTTPServer = self.server.fake  # type: ignore[attr-defined]
        status, body, *headers = fake._serve(request)  # a handler may add headers, e.g. a Location
        payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
        try:
            self.send_response(status)
            for name, value in (headers[0] if headers else {}).items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (its timeout fired); that is the point of some controls

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch


class FakeHTTPServer:
    """Base class: a JSON HTTP server on 127.0.0.1 in a background thread."""

    label = "fake"

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.requests: list[dict[str, Any]] = []  # every request: method, path, status, time
        self._cond = threading.Condition()
        self._stopped = threading.Event()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def is_up(self) -> bool:
        return self._httpd is not None

    def start(self):
        self._stopped.clear()
        self._listen()
        return self

    def stop(self) -> None:
        self._stopped.set()  # wakes handlers sleeping in self.sleep()
        self._close()

    def down(self) -> None:
        """Close the listening socket: new connections are refused until up()."""
        if self._close():
            emit(self.label, f"DOWN (port {self.port} refuses connections)")

    def _close(self) -> bool:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return False
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        return True

    def up(self) -> None:
        """Listen again on the same port as before."""
        if self._httpd is None:
            self._listen()
            emit(self.label, f"UP again on {self.base_url}")

    def _listen(self) -> None:
        httpd = _Server((self.host, self.port), _Handler)
        httpd.fake = self  # type: ignore[attr-defined]
        self.port = httpd.server_address[1]  # remember the real port when 0 was asked for
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
            name=f"{type(self).__name__}:{self.port}", daemon=True,
        )
        self._thread.start()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- request handling ------------------------------------------------------------------
    def handle(self, request: Request) -> tuple:
        """(status, JSON body) or (status, JSON body, {extra header: value})."""
        raise NotImplementedError

    def _serve(self, request: Request) -> tuple:
        entry = {"method": request.method, "path": request.path, "status": None,
                 "time": request.time}
        with self._cond:
            self.requests.append(entry)
        try:
            answer = self.handle(request)
        except Exception as exc:  # a bug in a fake must show up as a clear 500, not a hang
            emit(self.label, f"ERROR handling {request.method} {request.path}: {exc!r}")
            answer = 500, {"error": f"fake crashed: {exc!r}"}
        with self._cond:
            entry["status"] = answer[0]
            self._cond.notify_all()
        return answer

    # -- helpers for subclasses ------------------------------------------------------------
    def sleep(self, seconds: float) -> None:
        """Sleep that stop() interrupts, so a 'slow' fake never delays test teardown."""
        if seconds > 0:
            self._stopped.wait(seconds)

    def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Block until predicate() (evaluated under the lock) is true; False on timeout."""
        with self._cond:
            return self._cond.wait_for(predicate, timeout=timeout)

    def _changed(self) -> None:
        with self._cond:
            self._cond.notify_all()


class Countdown:
    """A control that applies to the next `n` matching requests (n=None: forever)."""

    def __init__(self) -> None:
        self._remaining: int | None = 0
        self.value: Any = None

    def set(self, value: Any, times: int | None) -> None:
        self.value, self._remaining = value, times

    def take(self) -> Any:
        """Return the value and use one up, or None when the control is spent. Call under a lock."""
        if self._remaining is None:
            return self.value
        if self._remaining > 0:
            self._remaining -= 1
            return self.value
        return None


def json_body(request: Request) -> tuple[Any, str | None]:
    """(parsed body, None) or (None, reason) — fakes answer bad JSON themselves."""
    try:
        return request.json(), None
    except (ValueError, UnicodeDecodeError) as exc:
        return None, f"body is not JSON: {exc}"


def serve_until_signal(*fakes: Any) -> None:
    """For `python -m devkit.fakes.X`: run until SIGINT/SIGTERM, then stop cleanly."""
    done = threading.Event()

    def _stop(signum: int, frame: Any) -> None:
        done.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    try:
        while not done.wait(0.5):
            pass
    finally:
        for fake in fakes:
            fake.stop()
