"""Fake 天网 callback receiver (CONTRACTS.md §1 "Callback").

Records every POST, dedupes by `event_id` (as the real 天网 does: delivery is at least once),
checks the HMAC signature when a secret is set, and can be told to fail, hang or go down so
the bridge's retry/backoff path can be exercised: `hang(s)` answers every POST after `s` seconds (a slow
天网), `redirect(url, 301)` answers with a redirect (which the bridge must not follow).

    python -m devkit.fakes.tianwang --port 9530 [--secret S]
"""
from __future__ import annotations

import argparse
import hashlib
import hmac
from datetime import datetime
from typing import Any, Callable

from devkit.fakes._http import Countdown, FakeHTTPServer, Request, emit, json_body, serve_until_signal

CALLBACK_PATH = "/callback"
CALLBACK_STATUSES = {"running", "completed", "failed", "cancelled", "timeout"}


def sign(secret: str, raw: bytes) -> str:
    """The header value the bridge must send: `sha256=<hex HMAC-SHA256 of the raw body>`."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), raw, hashlib.sha256).hexdigest()


def contract_problems(body: Any, event_id_header: str | None) -> list[str]:
    """What in a callback deviates from CONTRACTS.md; recorded, not refused (天网 is lenient)."""
    if not isinstance(body, dict):
        return ["body is not a JSON object"]
    problems = [f"missing {k}" for k in ("event_id", "task_id", "status", "timestamp")
                if not body.get(k)]
    if body.get("status") and body["status"] not in CALLBACK_STATUSES:
        problems.append(f"unexpected status {body['status']!r}")
    if event_id_header != body.get("event_id"):
        problems.append("X-Tianwang-Event-Id header differs from body event_id")
    stamp = body.get("timestamp")
    if isinstance(stamp, str):
        try:
            if datetime.fromisoformat(stamp).utcoffset() is None:
                problems.append("timestamp has no UTC offset")
        except ValueError:
            problems.append("timestamp is not ISO 8601")
    return problems


class FakeTianwang(FakeHTTPServer):
    label = "天网 fake"

    def __init__(self, secret: str | None = None, port: int = 0, host: str = "127.0.0.1") -> None:
        super().__init__(host, port)
        self.secret = secret
        self.received: list[dict[str, Any]] = []  # every POST: body, headers, status, problems
        self.events: dict[str, dict[str, Any]] = {}  # accepted (2xx) callbacks by event_id
        self.duplicates = 0  # accepted again with an event_id already in `events`
        self.bad_signatures = 0
        self.contract_violations: list[tuple[str, list[str]]] = []  # (event_id, problems)
        self._status = Countdown()
        self._hang = Countdown()
        self._redirect = Countdown()  # (status, Location)

    @property
    def url(self) -> str:
        return self.base_url + CALLBACK_PATH

    # -- controls --------------------------------------------------------------------------
    def answer_with(self, status: int, times: int | None = None) -> None:
        """Answer the next `times` callbacks (None: all) with `status`, e.g. 500, 429, 400."""
        with self._cond:
            self._status.set(status, times)

    def hang(self, seconds: float, times: int | None = None) -> None:
        """Sleep `seconds` before answering the next `times` callbacks (None: all; 0 = stop)."""
        with self._cond:
            self._hang.set(seconds, times if seconds else 0)

    def redirect(self, location: str, status: int = 301, times: int | None = None) -> None:
        """Answer the next `times` callbacks (None: all) with `status` (3xx) and `Location: location`."""
        with self._cond:
            self._redirect.set((status, location), times)

    def reset_controls(self) -> None:
        with self._cond:
            self._status.set(None, 0)
            self._hang.set(None, 0)
            self._redirect.set(None, 0)

    # -- queries ---------------------------------------------------------------------------
    def statuses(self, task_id: str) -> list[str]:
        """Accepted statuses of one task, in arrival order (duplicates removed)."""
        with self._cond:
            return [e["status"] for e in self.events.values() if e.get("task_id") == task_id]

    def wait_for(self, what: int | Callable[["FakeTianwang"], bool], timeout: float = 10) -> bool:
        """`wait_for(3)`: until 3 distinct events accepted; `wait_for(lambda tw: ...)`: predicate."""
        if isinstance(what, int):
            count = what
            return self.wait_until(lambda: len(self.events) >= count, timeout)
        return self.wait_until(lambda: bool(what(self)), timeout)

    def wait_for_status(self, task_id: str, status: str, timeout: float = 10) -> bool:
        return self.wait_for(lambda tw: status in tw.statuses(task_id), timeout)

    # -- serving ---------------------------------------------------------------------------
    def handle(self, request: Request) -> tuple:
        if request.method != "POST" or request.path != CALLBACK_PATH:
            return 404, {"error": f"no route {request.method} {request.path}"}
        with self._cond:
            hang, forced, redirect = self._hang.take(), self._status.take(), self._redirect.take()
        if hang:
            self.sleep(hang)
        body, error = json_body(request)
        entry = {"body": body, "headers": request.headers, "raw": request.raw,
                 "time": request.time, "status": None, "problems": []}
        if redirect:
            entry["status"], location = redirect
            with self._cond:
                self.received.append(entry)
            emit(self.label, f"answered {entry['status']}, Location: {location}")
            return entry["status"], {"moved": location}, {"Location": location}
        status, answer = self._decide(request, body, error, forced)
        entry["status"] = status
        event_id = body.get("event_id") if isinstance(body, dict) else None
        duplicate = False
        with self._cond:
            self.received.append(entry)
            if 200 <= status < 300 and event_id:
                if event_id in self.events:
                    self.duplicates += 1
                    duplicate = True
                else:
                    self.events[event_id] = body
                    entry["problems"] = contract_problems(body, request.header("X-Tianwang-Event-Id"))
                    if entry["problems"]:
                        self.contract_violations.append((event_id, entry["problems"]))
            self._cond.notify_all()
        self._print(body, event_id, status, entry["problems"], duplicate)
        return status, answer

    def _decide(self, request: Request, body: Any, error: str | None,
                forced: int | None) -> tuple[int, Any]:
        if self.secret is not None:
            given = request.header("X-Tianwang-Signature") or ""
            if not hmac.compare_digest(given, sign(self.secret, request.raw)):
                with self._cond:
                    self.bad_signatures += 1
                return 401, {"error": "bad or missing X-Tianwang-Signature"}
        if error:
            return 400, {"error": error}
        if forced is not None:
            return forced, {"error": f"injected {forced}"} if forced >= 300 else {"ok": True}
        if not isinstance(body, dict) or not body.get("event_id"):
            return 400, {"error": "event_id required"}
        return 200, {"ok": True}

    def _print(self, body: Any, event_id: str | None, status: int, problems: list[str],
               duplicate: bool) -> None:
        if isinstance(body, dict):
            line = f"{body.get('task_id')} -> {body.get('status')} (event {str(event_id)[:8]}…)"
            if body.get("error"):
                line += f" error={body['error']!r}"
        else:
            line = "unparseable callback"
        if duplicate:
            line += " (duplicate, ignored)"
        if status != 200:
            line += f" answered {status}"
        if problems:
            line += f" CONTRACT: {'; '.join(problems)}"
        emit(self.label, line)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9530)
    parser.add_argument("--secret", default=None, help="verify X-Tianwang-Signature with it")
    args = parser.parse_args(argv)
    fake = FakeTianwang(secret=args.secret, port=args.port, host=args.host).start()
    emit(fake.label, f"listening on {fake.url}" + (" (signature checked)" if args.secret else ""))
    serve_until_signal(fake)


if __name__ == "__main__":
    main()
