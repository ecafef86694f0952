"""Inboxes: Redis lists a producer fills and Celery workers drain in batches.

A steady stream of messages (one frame at a time, 100 a second) sent as one Celery message each costs a
whole Celery task per message; an inbox costs one per burst. The producer pushes items and queues a
drain only when none is queued or running (the `woken` flag); the drain takes whatever has gathered,
up to a batch at a time, until the inbox is empty. A backlog of more than a batch wakes one helper
drain (a second slot), so two processes share it.

Nothing is lost with a killed worker: a batch is taken, not popped (moved into the inbox's `taken` hash
under a claim with a visibility deadline), dropped only once handled, and put back at the head of the
inbox when its deadline passes (beat's tick calls `requeue_lapsed`) or when handling it hit an outage.
Handling must be idempotent: a batch put back after a slow run is handled again.
"""
from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable

import redis

from app.infra.keys import Keys

log = logging.getLogger(__name__)

BATCH = 200
WOKEN_TTL_SECONDS = 10  # a drain that died holding the flag blocks new wakes this long at most (beat re-wakes)
VISIBILITY_SECONDS = 60  # a taken batch not done by then goes back to the inbox
BUDGET_SECONDS = 5.0  # a drain gives its worker process back after this, queueing its own continuation
SLOTS = 2  # drains at a time per inbox: the woken one and a helper for a backlog

# Drop claim ARGV[5] (the batch just handled, if any), keep the drain's flag KEYS[4] for ARGV[4] s more,
# and take up to ARGV[1] items from the head, kept under claim ARGV[2] until ARGV[3] ms from now.
_TAKE = """
if ARGV[5] ~= '' then
  redis.call('hdel', KEYS[2], ARGV[5])
  redis.call('zrem', KEYS[3], ARGV[5])
end
redis.call('set', KEYS[4], 1, 'EX', ARGV[4])
local items = redis.call('lrange', KEYS[1], 0, tonumber(ARGV[1]) - 1)
if #items == 0 then return items end
redis.call('ltrim', KEYS[1], #items, -1)
local t = redis.call('time')
redis.call('hset', KEYS[2], ARGV[2], cjson.encode(items))
redis.call('zadd', KEYS[3], t[1] * 1000 + math.floor(t[2] / 1000) + tonumber(ARGV[3]), ARGV[2])
return items
"""
# Put claims back at the head of the inbox, in the order they were taken: the claims named in ARGV, or
# with no ARGV those whose deadline has passed. Returns how many items went back.
_PUT_BACK = """
local claims = ARGV
if #claims == 0 then
  local t = redis.call('time')
  claims = redis.call('zrangebyscore', KEYS[3], '-inf', t[1] * 1000 + math.floor(t[2] / 1000), 'LIMIT', 0, 100)
end
local n = 0
for i = #claims, 1, -1 do
  local raw = redis.call('hget', KEYS[2], claims[i])
  if raw then
    local items = cjson.decode(raw)
    for j = #items, 1, -1 do redis.call('lpush', KEYS[1], items[j]) end
    n = n + #items
  end
  redis.call('hdel', KEYS[2], claims[i])
  redis.call('zrem', KEYS[3], claims[i])
end
return n
"""


class Inbox:
    def __init__(self, client: redis.Redis, keys: Keys, name: str, wake: Callable[[int], None]):
        """`wake(slot)` queues a drain of this inbox (a Celery message) for that slot."""
        self.r, self.name, self.wake = client, name, wake
        self.key = keys.inbox(name)
        self.taken_key, self.due_key = f"{self.key}:taken", f"{self.key}:due"
        self.woken_keys = [keys.inbox_woken(name, slot) for slot in range(SLOTS)]
        self._take = client.register_script(_TAKE)
        self._put_back = client.register_script(_PUT_BACK)

    # -- the producer's side ------------------------------------------------------------------
    def put(self, items: list) -> None:
        """Add items (JSON-able) at the tail; queue a drain unless one is queued or running."""
        if not items:
            return
        pipe = self.r.pipeline(transaction=False)
        pipe.rpush(self.key, *(json.dumps(item, ensure_ascii=False) for item in items))
        pipe.set(self.woken_keys[0], 1, nx=True, ex=WOKEN_TTL_SECONDS)
        if pipe.execute()[1]:
            self._wake(0)

    def wake_if_waiting(self) -> bool:
        """Beat's look: items wait and no drain is queued (it died, or its message was lost)."""
        if self.r.llen(self.key) and self.r.set(self.woken_keys[0], 1, nx=True, ex=WOKEN_TTL_SECONDS):
            self._wake(0)
            return True
        return False

    def requeue_lapsed(self) -> int:
        """Batches taken by a drain that never finished them (a killed worker): back to the inbox."""
        count = self._put_back(keys=[self.key, self.taken_key, self.due_key], args=[])
        if count:
            log.warning("inbox %s: %d items of a drain that did not finish were put back", self.name, count,
                        extra={"event": "inbox_requeued"})
        return count

    def waiting(self) -> int:
        return self.r.llen(self.key)

    # -- the drain ----------------------------------------------------------------------------
    def drain(self, handle: Callable[[list], None], slot: int = 0, *, transient: tuple = (),
              batch: int = BATCH, budget: float = BUDGET_SECONDS) -> int:
        """Handle batches until the inbox is empty or the budget is spent; returns the items handled.

        On a `transient` error the batch goes back to the head of the inbox and the error is raised (the
        Celery task retries); the flag stays, so the retry is this inbox's drain."""
        deadline = time.monotonic() + budget
        handled, finished = 0, ""  # `finished`: the claim of the batch just handled, dropped by the next take
        while True:
            claim = uuid.uuid4().hex
            # One round trip: the last batch dropped, the flag kept (producers need not wake another), a take.
            items = self._take(keys=[self.key, self.taken_key, self.due_key, self.woken_keys[slot]],
                               args=[batch, claim, VISIBILITY_SECONDS * 1000, WOKEN_TTL_SECONDS, finished])
            finished = ""
            if not items:
                if not self._stop(slot):
                    continue
                return handled
            if len(items) == batch and slot + 1 < SLOTS and self.r.llen(self.key) >= batch \
                    and self.r.set(self.woken_keys[slot + 1], 1, nx=True, ex=WOKEN_TTL_SECONDS):
                self._wake(slot + 1)  # a backlog: a second process shares it
            self._handle(handle, claim, [json.loads(raw) for raw in items], transient)
            finished = claim
            handled += len(items)
            if time.monotonic() > deadline:  # give the process back to other queues; carry on in a new message
                self._done(finished)
                self._wake(slot)
                return handled

    def _stop(self, slot: int) -> bool:
        """Clear the flag, then look once more: an item pushed after our last take either is seen here or
        found the flag cleared and woke a new drain. False when this drain should go on."""
        self.r.delete(self.woken_keys[slot])
        if slot > 0:
            return True  # the woken drain (slot 0) does the last look
        return not (self.r.llen(self.key) and self.r.set(self.woken_keys[0], 1, nx=True, ex=WOKEN_TTL_SECONDS))

    def _handle(self, handle: Callable[[list], None], claim: str, items: list, transient: tuple) -> None:
        try:
            try:
                handle(items)
                return
            except transient:
                raise
            except Exception:
                if len(items) == 1:
                    self._dropped(items[0])
                    return
                # One bad item must not cost its batch: the others are handled one at a time.
                log.exception("inbox %s: a batch of %d failed; handling its items one at a time", self.name,
                              len(items), extra={"event": "inbox_batch_failed"})
            for item in items:
                try:
                    handle([item])
                except transient:
                    raise
                except Exception:
                    self._dropped(item)
        except transient:
            self._put_back(keys=[self.key, self.taken_key, self.due_key], args=[claim])
            raise

    def _dropped(self, item) -> None:
        """Called inside an `except` block: the log line carries the traceback."""
        log.exception("inbox %s: dropped an item that cannot be handled: %.300r", self.name, item,
                      extra={"event": "inbox_item_dropped"})

    def _done(self, claim: str) -> None:
        pipe = self.r.pipeline(transaction=False)
        pipe.hdel(self.taken_key, claim)
        pipe.zrem(self.due_key, claim)
        pipe.execute()

    def _wake(self, slot: int) -> None:
        """Queue a drain. If the broker refuses, the items are in the inbox all the same: the flag is cleared
        so that the next put, or beat's look once the broker is back, wakes one."""
        try:
            self.wake(slot)
        except Exception as exc:
            self.r.delete(self.woken_keys[slot])
            log.warning("inbox %s: could not queue a drain (%s); %d items wait for the next wake", self.name,
                        exc, self.r.llen(self.key), extra={"event": "inbox_wake_failed"})
