"""The hand-off of sends between workers and the listener, in Redis (keys named in app.infra.keys).

A worker submits a frame to the stream `qj:out` (once per req_id, with a deadline); the listener reads
it, *takes* it (an atomic check that its worker has not given up on it and its deadline has not passed),
sends it, and stores 轻简's `send_result` under the req_id. Then either a blocked worker wakes up
(`send`, used by dispatches), or, for an action's step (its req_id `<task>:<step>:<attempt>`), the
listener hands the result to `actions.advance` (an action never blocks a worker). A worker that gives up
on a send *abandons* it, atomically with the take: either the frame already left, or it never will
(DESIGN.md rule 8).
"""
from __future__ import annotations

import json
import time

import redis

from app.infra.keys import Keys
from app.infra.redis_client import eval_many

STREAM_GROUP = "listener"
RESULT_TTL = 24 * 3600  # results, fates and the once-per-req_id marks outlive any retry of a task
STREAM_MAX = 200_000

# Queue a frame unless its req_id was queued before (atomically: two runs can't both queue it). Times are
# Redis's own clock, so the listener's deadline check does not depend on the hosts' clocks agreeing.
# KEYS: queued mark, stream. ARGV: req_id, frame, ttl, timeout seconds, stream length bound.
_SUBMIT_ONCE = """
local earlier = redis.call('get', KEYS[1])
if earlier then return earlier end
local t = redis.call('time')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local at = string.format('%.6f', now)
redis.call('set', KEYS[1], at, 'EX', ARGV[3])
redis.call('xadd', KEYS[2], 'MAXLEN', '~', ARGV[5], '*', 'req_id', ARGV[1], 'frame', ARGV[2], 'at', at,
           'deadline', string.format('%.6f', now + tonumber(ARGV[4])))
return false
"""

# The listener takes frames before sending them. KEYS: their fate marks. ARGV: ttl, then each deadline.
# Returns per frame: send | expired (its deadline passed: now abandoned, never sent) | abandoned.
_TAKE = """
local t = redis.call('time')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local out = {}
for i, key in ipairs(KEYS) do
  if redis.call('get', key) == 'abandoned' then
    out[i] = 'abandoned'
  elseif now > tonumber(ARGV[i + 1]) then
    redis.call('set', key, 'abandoned', 'EX', ARGV[1])
    out[i] = 'expired'
  else
    redis.call('set', key, 'sent', 'EX', ARGV[1])
    out[i] = 'send'
  end
end
return out
"""

# A worker gives up on a send. KEYS: its fate mark. Returns sent (too late: it left) or abandoned.
_ABANDON = """
if redis.call('get', KEYS[1]) == 'sent' then return 'sent' end
redis.call('set', KEYS[1], 'abandoned', 'EX', ARGV[1])
return 'abandoned'
"""

NOT_SENT = "not sent: its deadline passed before the listener could send it"


class SendChannel:
    """The Redis hand-off between workers (submit, wait, abandon) and the listener (take, report, ack)."""

    def __init__(self, client: redis.Redis, keys: Keys):
        self.r = client
        self.keys = keys
        self.stream = keys.send_stream
        self._submit = client.register_script(_SUBMIT_ONCE)
        self._take = client.register_script(_TAKE)
        self._abandon = client.register_script(_ABANDON)

    # -- worker side -----------------------------------------------------------------------
    def submit(self, frame: dict, timeout: float) -> float | None:
        """Queue `frame` for the listener, once per req_id: None if queued now, else the time it was
        first queued (by a run that died waiting for its answer; wait for that one, don't repeat it)."""
        return self.submit_many([frame], timeout)[0]

    def submit_many(self, frames: list[dict], timeout: float) -> list[float | None]:
        """`submit` for several frames in one round trip."""
        calls = [(self._submit, [self.keys.send_queued(frame["req_id"]), self.stream],
                  [frame["req_id"], json.dumps(frame, ensure_ascii=False), RESULT_TTL, timeout, STREAM_MAX])
                 for frame in frames]
        return [float(earlier) if earlier else None for earlier in eval_many(self.r, calls)]

    def result(self, req_id: str) -> dict | None:
        raw = self.r.get(self.keys.send_result(req_id))
        return json.loads(raw) if raw else None

    def results(self, req_ids: list[str]) -> dict[str, dict]:
        """The stored send_results of those of `req_ids` that have one."""
        if not req_ids:
            return {}
        raw = self.r.mget([self.keys.send_result(req) for req in req_ids])
        return {req: json.loads(found) for req, found in zip(req_ids, raw) if found}

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

    def abandon(self, req_id: str) -> bool:
        """Give up on a send: True if it will never leave, False if the listener already sent it."""
        return self._abandon(keys=[self.keys.send_fate(req_id)], args=[RESULT_TTL]) in (b"abandoned", "abandoned")

    def send(self, frame: dict, timeout: float) -> dict | None:
        """Hand `frame` to the listener and wait for its send_result (None: none within `timeout`, and
        then the frame is abandoned, so it never leaves later unless it already has).

        Queued once per req_id: if a run that died queued it already, wait out what is left of its time
        rather than queue it again."""
        queued_at = self.submit(frame, timeout)
        left = timeout if queued_at is None else timeout - (time.time() - queued_at)
        answer = self.wait(frame["req_id"], max(0.0, left))
        if answer is None:
            self.abandon(frame["req_id"])
            answer = self.result(frame["req_id"])  # an answer that came in the meantime still counts
        return answer

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

    def take(self, entries: list[tuple[str, dict]]) -> list[str]:
        """For each entry about to be sent: `send`, `expired` (never to be sent; its worker is told it
        failed) or `abandoned` (its worker gave up on it). Entries of an older version carry no deadline
        and are judged by `at` alone."""
        if not entries:
            return []
        deadlines = [fields.get("deadline") or fields.get("at") or "0" for _, fields in entries]
        verdicts = self._take(keys=[self.keys.send_fate(fields.get("req_id", "")) for _, fields in entries],
                              args=[RESULT_TTL, *deadlines])
        return [v.decode() if isinstance(v, bytes) else v for v in verdicts]

    def ack(self, *entry_ids: str) -> None:
        if entry_ids:
            self.r.xack(self.stream, STREAM_GROUP, *entry_ids)

    def report(self, answers: list[tuple[str, bool, str | None]], *, wake: bool = True) -> None:
        """Store each (req_id, ok, error); with `wake`, wake the workers blocked on them."""
        if not answers:
            return
        pipe = self.r.pipeline(transaction=False)
        for req_id, ok, error in answers:
            pipe.set(self.keys.send_result(req_id), json.dumps({"ok": bool(ok), "error": error}), ex=RESULT_TTL)
            if wake:
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
