"""Fake 企业微信 group robot (CONTRACTS.md §4).

Like the real robot it always answers HTTP 200 and reports problems in `errcode`, so a client
that only checks the HTTP status is caught out.

    python -m devkit.fakes.wecom --port 9532
"""
from __future__ import annotations

import argparse
from typing import Any

from devkit.fakes._http import FakeHTTPServer, Request, emit, json_body, serve_until_signal

RATE_LIMITED = 45009
MAX_MARKDOWN_BYTES = 4096  # the real robot refuses longer markdown with 40058


class FakeWecom(FakeHTTPServer):
    label = "企业微信 fake"

    def __init__(self, port: int = 0, host: str = "127.0.0.1") -> None:
        super().__init__(host, port)
        self.messages: list[dict[str, Any]] = []  # accepted: msgtype, content, body, time
        self.rejected: list[dict[str, Any]] = []  # answered errcode != 0: body, errcode
        self._errors: list[list[Any]] = []  # [errcode, errmsg, remaining], used in order

    @property
    def url(self) -> str:
        """The WECOM_WEBHOOK_URL to configure (any path is accepted)."""
        return self.base_url + "/cgi-bin/webhook/send?key=fake"

    # -- controls --------------------------------------------------------------------------
    def rate_limit_next(self, n: int = 1) -> None:
        self.fail_next(n, RATE_LIMITED, "api freq out of limit")

    def fail_next(self, n: int = 1, errcode: int = -1, errmsg: str = "system error") -> None:
        with self._cond:
            self._errors.append([errcode, errmsg, n])

    def reset_controls(self) -> None:
        with self._cond:
            self._errors = []

    # -- queries ---------------------------------------------------------------------------
    def wait_for_messages(self, n: int, timeout: float = 10) -> bool:
        return self.wait_until(lambda: len(self.messages) >= n, timeout)

    # -- serving ---------------------------------------------------------------------------
    def handle(self, request: Request) -> tuple[int, Any]:
        if request.method != "POST":
            return 405, {"errcode": 405, "errmsg": "POST only"}
        body, error = json_body(request)
        content, problem = _content(body, error)
        with self._cond:
            injected = next((e for e in self._errors if e[2] > 0), None)
            if problem is None and injected is not None:
                injected[2] -= 1
                problem = (injected[0], injected[1])
            if problem is None:
                self.messages.append({"msgtype": body["msgtype"], "content": content,
                                      "body": body, "time": request.time})
            else:
                self.rejected.append({"body": body, "errcode": problem[0], "time": request.time})
            self._cond.notify_all()
        summary = " ⏎ ".join(line for line in (content or "").splitlines() if line.strip())
        if problem is None:
            emit(self.label, f"notice: {summary}")
            return 200, {"errcode": 0, "errmsg": "ok"}
        emit(self.label, f"refused errcode={problem[0]} ({problem[1]}): {summary}")
        return 200, {"errcode": problem[0], "errmsg": problem[1]}


def _content(body: Any, error: str | None) -> tuple[str | None, tuple[int, str] | None]:
    """The message text, or the errcode the real robot would give for this body."""
    if error or not isinstance(body, dict):
        return None, (40008, "invalid message type: body is not a JSON object")
    msgtype = body.get("msgtype")
    if msgtype not in ("markdown", "text"):
        return None, (40008, f"invalid message type {msgtype!r}")
    part = body.get(msgtype)
    content = part.get("content") if isinstance(part, dict) else None
    if not isinstance(content, str) or not content.strip():
        return None, (44004, "empty content")
    if len(content.encode("utf-8")) > MAX_MARKDOWN_BYTES:
        return content, (40058, f"content exceed max length {MAX_MARKDOWN_BYTES}")
    return content, None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9532)
    args = parser.parse_args(argv)
    fake = FakeWecom(port=args.port, host=args.host).start()
    emit(fake.label, f"listening on {fake.url}")
    serve_until_signal(fake)


if __name__ == "__main__":
    main()
