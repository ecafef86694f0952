"""The 轻简 adapter (CONTRACTS.md §2, protocol v1): frames in and out, and the send hand-off.

Only the listener holds the WebSocket. Workers on any host hand a frame to it through a Redis Stream
(`qj:out`, consumer group `listener`); the listener sends it, and when 轻简 answers `send_result` it
stores the result under the req_id and wakes the waiting worker. Another 轻简 protocol would replace
this module and nothing else.
"""
from __future__ import annotations

import json
import time

import redis

from app.infra.keys import Keys

STREAM_GROUP = "listener"
RESULT_TTL = 24 * 3600


class FrameError(ValueError):
    """A frame that is not JSON, not an object, or lacks what its event needs."""


def parse_inbound(text: str | bytes) -> tuple[str, dict]:
    try:
        frame = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise FrameError(f"not JSON: {exc}") from None
    if not isinstance(frame, dict) or not isinstance(frame.get("event"), str):
        raise FrameError("not an object with an event name")
    data = frame.get("data")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise FrameError("data is not an object")
    return frame["event"], data


def send_frame(step: dict, *, acc_id: str, to_id: str, req_id: str) -> dict:
    """A domain step (app.domain.actions) as an outbound frame."""
    kind = step["kind"]
    data = {"acc_id": acc_id, "to_id": to_id}
    if kind == "text":
        return {"action": "send_text", "req_id": req_id, "data": {**data, "content": step["content"]}}
    if kind == "file":
        return {"action": "send_file", "req_id": req_id,
                "data": {**data, "file_url": step["file_url"], "file_name": step["file_name"]}}
    if kind == "link":
        return {"action": "send_link", "req_id": req_id, "data": {
            **data, "url": step["url"], "title": step["title"], "desc": step["desc"]}}
    raise ValueError(f"unknown step kind {kind!r}")


PING = json.dumps({"action": "ping"})

# Queue a frame unless its req_id was queued before (atomically: two runs can't both queue it).
_SUBMIT_ONCE = """
local earlier = redis.call('get', KEYS[1])
if earlier then return earlier end
redis.call('set', KEYS[1], ARGV[1], 'EX', ARGV[4])
redis.call('xadd', KEYS[2], 'MAXLEN', '~', 200000, '*', 'req_id', ARGV[2], 'frame', ARGV[3], 'at', ARGV[1])
return false
"""


class SendChannel:
    """The Redis hand-off between workers (submit, wait) and the listener (read, report, ack)."""

    def __init__(self, client: redis.Redis, keys: Keys):
        self.r = client
        self.keys = keys
        self.stream = keys.send_stream
        self._submit = client.register_script(_SUBMIT_ONCE)

    # -- worker side -----------------------------------------------------------------------
    def submit(self, frame: dict) -> float | None:
        """Queue `frame` for the listener, once per req_id: None if queued now, else the time it was
        first queued (by a run that died waiting for its answer; wait for that one, don't repeat it)."""
        now = f"{time.time():.6f}"
        earlier = self._submit(keys=[self.keys.send_queued(frame["req_id"]), self.stream],
                               args=[now, frame["req_id"], json.dumps(frame, ensure_ascii=False), RESULT_TTL])
        return float(earlier) if earlier else None

    def result(self, req_id: str) -> dict | None:
        raw = self.r.get(self.keys.send_result(req_id))
        return json.loads(raw) if raw else None

    def wait(self, req_id: str, timeout: float) -> dict | None:
        """The send_result of `req_id`, or None if none came within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.result(req_id)
            if found is not None:
                return found
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            # BLPOP wakes us the moment the listener reports; the loop re-reads the stored result.
            self.r.blpop([self.keys.send_wake(req_id)], timeout=max(0.01, min(left, 5.0)))

    def send(self, frame: dict, timeout: float) -> dict | None:
        """Hand `frame` to the listener and wait for its send_result (None: none within `timeout`).

        Queued once per req_id: if a run that died queued it already, wait out what is left of its time
        rather than queue it again."""
        queued_at = self.submit(frame)
        left = timeout if queued_at is None else timeout - (time.time() - queued_at)
        return self.wait(frame["req_id"], max(0.0, left))

    def send_step(self, earlier: str | None, frame: dict, timeout: float) -> tuple[str, dict | None]:
        """Send `frame` unless the `earlier` send of the same step got through after all (its answer,
        waited for as long as its own timeout still runs, is ok). Returns the req_id that settles the
        step, and its send_result (None: no answer in time)."""
        if earlier:
            late = self.answer_of(earlier, timeout)
            if late and late.get("ok"):
                return earlier, late
        return frame["req_id"], self.send(frame, timeout)

    def answer_of(self, req_id: str, timeout: float) -> dict | None:
        """The send_result of an earlier send, waiting while its `timeout` (from when it was queued) runs."""
        queued_at = self.r.get(self.keys.send_queued(req_id))
        left = timeout - (time.time() - float(queued_at)) if queued_at else 0.0
        return self.wait(req_id, left) if left > 0 else self.result(req_id)

    # -- listener side ---------------------------------------------------------------------
    def ensure_group(self) -> None:
        try:
            self.r.xgroup_create(self.stream, STREAM_GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def read(self, consumer: str, block_ms: int = 500, count: int = 100) -> list[tuple[str, dict]]:
        reply = self.r.xreadgroup(STREAM_GROUP, consumer, {self.stream: ">"}, count=count, block=block_ms)
        return _entries(reply[0][1]) if reply else []

    def reclaim(self, consumer: str, min_idle_ms: int = 0) -> list[tuple[str, dict]]:
        """Entries a dead listener read but never acknowledged."""
        claimed, start = [], "0-0"
        while True:
            reply = self.r.xautoclaim(self.stream, STREAM_GROUP, consumer, min_idle_ms, start, count=100)
            start, entries = reply[0], reply[1]
            claimed.extend(_entries(e for e in entries if e and e[1]))
            if start in (b"0-0", "0-0"):
                return claimed

    def ack(self, entry_id: str) -> None:
        self.r.xack(self.stream, STREAM_GROUP, entry_id)

    def report(self, req_id: str, ok: bool, error: str | None) -> None:
        pipe = self.r.pipeline(transaction=True)
        pipe.set(self.keys.send_result(req_id), json.dumps({"ok": bool(ok), "error": error}), ex=RESULT_TTL)
        pipe.rpush(self.keys.send_wake(req_id), 1)
        pipe.expire(self.keys.send_wake(req_id), 60)
        pipe.execute()


def _entries(raw) -> list[tuple[str, dict]]:
    out = []
    for entry_id, fields in raw:
        fields = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
                  for k, v in fields.items()}
        out.append((entry_id.decode() if isinstance(entry_id, bytes) else entry_id, fields))
    return out
