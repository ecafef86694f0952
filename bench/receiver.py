"""A fast callback receiver (the callbacks benchmark): a minimal threaded HTTP/1.1 server on 127.0.0.1
that answers every POST 200 at once and counts it."""
from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class _FastHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real receiver behind a proxy would be
    # Headers and body go out in two writes: without TCP_NODELAY, Nagle holds the body back until the
    # client's delayed ACK (40 ms), and the receiver, not the bridge, would be what is measured.
    disable_nagle_algorithm = True

    def do_POST(self):  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        server = self.server
        with server.lock:  # type: ignore[attr-defined]
            server.count += 1  # type: ignore[attr-defined]
            server.last = time.time()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *_a):
        pass


class FastReceiver:
    """A minimal threaded HTTP server on 127.0.0.1 that answers every POST 200 and counts it."""

    def __init__(self):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _FastHandler)
        self.httpd.daemon_threads = True
        self.httpd.lock = threading.Lock()
        self.httpd.count = 0
        self.httpd.last = 0.0
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                       daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/callback"

    @property
    def count(self) -> int:
        return self.httpd.count

    def start(self) -> "FastReceiver":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
