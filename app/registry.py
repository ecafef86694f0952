"""The Redis index of waiting tasks: what a message looks at to find the tasks it may fire.

Everything here can be rebuilt from SQL (`reconcile` in app.services.registration), so losing Redis
loses no task. The keys are named in app.infra.keys (spec, ix:*, recent:*). The cost of a lookup
depends on the message and the customer, never on how many tasks wait.
"""
from __future__ import annotations

import json
import logging
from itertools import islice
from typing import Iterable

import redis

from app.domain.events import InboundEvent
from app.domain.probes import substrings
from app.domain.triggers import index_keys
from app.infra.keys import Keys
from app.lanes import LANE_TTL_SECONDS

log = logging.getLogger(__name__)
RECENT_SECONDS = 3600
# Keyword probes in hand at once, each at most MAX_KEYWORD_CHARS characters (a few MiB): a full batch of
# 200 everyday messages (about 12,000) takes one round trip, a 4 KiB message against every keyword
# length (130,000) eight.
PROBES_PER_ROUND_TRIP = 16384

# Remember a batch of inbound events in one round trip. KEYS: everybody's recent zset, then per event its
# seen mark ("" = none), its customer's recent zset and its lane ("" = none). ARGV: seen TTL, cutoff,
# recent TTL, lane TTL, gate (1: a mark that exists makes the event a repeat; 0: the marks are only set),
# then per event its member, score and lane entry. Returns 1 per event remembered now, 0 per repeat.
_REMEMBER = """
local out, touched, gate = {}, {}, ARGV[5] == '1'
for e = 1, (#KEYS - 1) / 3 do
  local seen, recent, lane = KEYS[e * 3 - 1], KEYS[e * 3], KEYS[e * 3 + 1]
  local member, score, entry = ARGV[e * 3 + 3], ARGV[e * 3 + 4], ARGV[e * 3 + 5]
  if seen ~= '' and gate and not redis.call('set', seen, 1, 'NX', 'EX', ARGV[1]) then
    out[e] = 0
  else
    if seen ~= '' and not gate then redis.call('set', seen, 1, 'EX', ARGV[1]) end
    redis.call('zadd', recent, score, member)
    redis.call('zadd', KEYS[1], score, member)
    touched[recent] = true
    if lane ~= '' then
      redis.call('rpush', lane, entry)
      redis.call('expire', lane, ARGV[4])
    end
    out[e] = 1
  end
end
touched[KEYS[1]] = true
for key in pairs(touched) do
  redis.call('zremrangebyscore', key, '-inf', ARGV[2])
  redis.call('expire', key, ARGV[3])
end
return out
"""


# Register a task unless the index has an entry for its id. KEYS: spec hash, keyword set, keyword length
# set, then the task's index sets. ARGV: task id, spec JSON, then per index set 1 if it is a keyword's
# (with the keyword and its length after it). Returns added, same (an equal entry is there) or other.
_REGISTER_NEW = """
local present = redis.call('hget', KEYS[1], ARGV[1])
if present then
  if present == ARGV[2] then return 'same' end
  return 'other'
end
redis.call('hset', KEYS[1], ARGV[1], ARGV[2])
local a = 3
for i = 4, #KEYS do
  redis.call('sadd', KEYS[i], ARGV[1])
  if ARGV[a] == '1' then
    redis.call('sadd', KEYS[2], ARGV[a + 1])
    redis.call('sadd', KEYS[3], ARGV[a + 2])
    a = a + 3
  else
    a = a + 1
  end
end
return 'added'
"""


class Registry:
    def __init__(self, client: redis.Redis, keys: Keys):
        self.r = client
        self.keys = keys
        self.spec_key = keys.spec
        self._remember = client.register_script(_REMEMBER)
        self._register_new = client.register_script(_REGISTER_NEW)

    # -- writing ----------------------------------------------------------------------------
    def register(self, spec: dict) -> None:
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(self.spec_key, spec["id"], _dumps(spec))
        for kind, value in index_keys(spec):
            pipe.sadd(self.keys.index(kind, value), spec["id"])
            if kind == "kw":
                pipe.sadd(self.keys.keywords, value)
                pipe.sadd(self.keys.keyword_lengths, len(value))
        pipe.execute()

    def register_new(self, spec: dict) -> str:
        """`register`, unless the index has an entry for the task's id already: `added`, `same` (an equal
        entry is there: a request that registered and then died) or `other` (another task's entry)."""
        keys, args = [self.spec_key, self.keys.keywords, self.keys.keyword_lengths], [spec["id"], _dumps(spec)]
        for kind, value in index_keys(spec):
            keys.append(self.keys.index(kind, value))
            args += ["1", value, len(value)] if kind == "kw" else ["0"]
        outcome = self._register_new(keys=keys, args=args)
        return outcome.decode() if isinstance(outcome, bytes) else outcome

    def unregister(self, task_id: str, spec: dict | None = None) -> None:
        if spec is None:
            raw = self.r.hget(self.spec_key, task_id)
            spec = json.loads(raw) if raw else None
        pipe = self.r.pipeline(transaction=True)
        if spec:
            for kind, value in index_keys(spec):
                pipe.srem(self.keys.index(kind, value), task_id)
        pipe.hdel(self.spec_key, task_id)
        pipe.execute()

    def unregister_many(self, task_ids: list[str], specs: dict[str, dict] | None = None) -> None:
        """Take tasks out of the index; `specs` (task id -> spec), when the caller has them, saves reading
        them back (one round trip instead of two)."""
        if not task_ids:
            return
        if specs is None or any(task_id not in specs for task_id in task_ids):
            specs = {task_id: json.loads(raw) for task_id, raw in zip(task_ids, self.r.hmget(self.spec_key, task_ids))
                     if raw}
        pipe = self.r.pipeline(transaction=True)
        for task_id in task_ids:
            for kind, value in index_keys(specs[task_id]) if task_id in specs else ():
                pipe.srem(self.keys.index(kind, value), task_id)
        pipe.hdel(self.spec_key, *task_ids)
        pipe.execute()

    def discard(self, task_id: str, spec: dict | None = None) -> None:
        """`unregister`, best effort: for a task that no longer waits, a stale entry only costs a failed
        claim and the reconciler drops it, so Redis being away is logged, not raised."""
        try:
            self.unregister(task_id, spec)
        except redis.RedisError:
            log.warning("could not unregister %s; the reconciler will", task_id, extra={"task_id": task_id})

    def discard_many(self, task_ids, specs: dict[str, dict] | None = None) -> None:
        try:
            self.unregister_many(list(task_ids), specs)
        except redis.RedisError:
            log.warning("could not unregister %d tasks; the reconciler will", len(task_ids))

    def clear(self) -> None:
        """Drop the whole index (reconcile's full rebuild starts here)."""
        for pattern in (self.keys.index_pattern, self.spec_key):
            for key in self.r.scan_iter(match=pattern, count=1000):
                self.r.delete(key)

    # -- reading ----------------------------------------------------------------------------
    def specs(self, task_ids: Iterable[str]) -> list[dict]:
        ids = list(task_ids)
        if not ids:
            return []
        return [json.loads(raw) for raw in self.r.hmget(self.spec_key, ids) if raw]

    def registered_ids(self, batch: int = 1000) -> Iterable[list[str]]:
        cursor = 0
        while True:
            cursor, chunk = self.r.hscan(self.spec_key, cursor, count=batch)
            if chunk:
                yield [k.decode() if isinstance(k, bytes) else k for k in chunk]
            if cursor == 0:
                return

    def is_built(self) -> bool:
        """Whether the index is complete: a full reconciliation marks it, and Redis losing its data loses
        the mark (app.services.registration)."""
        return bool(self.r.exists(self.keys.index_built))

    def mark_built(self) -> None:
        self.r.set(self.keys.index_built, "1")

    def count(self) -> int:
        return int(self.r.hlen(self.spec_key))

    def candidates(self, event: InboundEvent) -> list[dict]:
        """The specs of every task this event could fire (a superset; `matches` decides)."""
        return self.candidates_many([event])[0]

    def candidates_many(self, events: list[InboundEvent]) -> list[list[dict]]:
        """`candidates` for a batch of events, in four round trips however many events (while their texts
        need fewer than PROBES_PER_ROUND_TRIP keyword probes, as hundreds of everyday messages do): the
        tasks filed under each event's customer, event kind or custom event; the keyword probes its text
        needs; the tasks of the keywords found; every spec at once."""
        keys = [self._direct_keys(event) for event in events]
        pipe = self.r.pipeline(transaction=False)
        pipe.smembers(self.keys.keyword_lengths)
        for these in keys:
            if these:
                pipe.sunion(these)
        lengths, *replies = pipe.execute()
        replies = iter(replies)
        direct = [next(replies) if these else set() for these in keys]
        lengths = [int(x) for x in lengths]
        words = self._indexed_keywords_in([e.text for e in events], lengths)
        by_keyword = self._each_nonempty(words, lambda pipe, found: pipe.sunion(
            [self.keys.index("kw", w) for w in found]))
        ids = [_texts(members) | _texts(more) for members, more in zip(direct, by_keyword)]
        specs = self._specs_by_id(set().union(*ids))
        return [[specs[i] for i in sorted(these) if i in specs] for these in ids]

    def _indexed_keywords_in(self, texts: list[str | None], lengths: list[int]) -> list[list[str]]:
        """The indexed keywords that occur in each text: its probes (app.domain.probes.substrings) looked
        up in round trips of at most PROBES_PER_ROUND_TRIP, so however long or many the texts, no more
        probes than that are in hand at once."""
        found: list[dict[str, None]] = [{} for _ in texts]
        batch: list[tuple[int, list[str]]] = []  # (text, its probes) of the next round trip
        room = PROBES_PER_ROUND_TRIP
        for at, text in enumerate(texts):
            probes = substrings(text, lengths) if text else iter(())
            while taken := list(islice(probes, room)):
                batch.append((at, list(dict.fromkeys(taken))))
                room -= len(taken)
                if not room:
                    self._look_up(batch, found)
                    batch, room = [], PROBES_PER_ROUND_TRIP
        if batch:
            self._look_up(batch, found)
        return [list(words) for words in found]

    def _look_up(self, batch: list[tuple[int, list[str]]], found: list[dict[str, None]]) -> None:
        pipe = self.r.pipeline(transaction=False)
        for _, probes in batch:
            pipe.smismember(self.keys.keywords, probes)
        for (at, probes), flags in zip(batch, pipe.execute()):
            found[at].update((word, None) for word, hit in zip(probes, flags) if hit)

    def _direct_keys(self, event: InboundEvent) -> list[str]:
        if event.kind == "custom":
            return [self.keys.index("ce", event.event or "")]
        keys = [self.keys.index("cust", event.from_id)] if event.from_id else []
        if event.kind in ("payment", "order"):
            keys.append(self.keys.index("evt", event.kind))
        return keys

    def _each_nonempty(self, items: list[list], command) -> list:
        """Run `command(pipe, item)` for each non-empty item in one pipeline; [] in the others' places."""
        pipe = self.r.pipeline(transaction=False)
        for item in items:
            if item:
                command(pipe, item)
        replies = iter(pipe.execute())
        return [next(replies) if item else [] for item in items]

    def _specs_by_id(self, task_ids: set) -> dict[str, dict]:
        ids = sorted(task_ids)
        if not ids:
            return {}
        return {i: json.loads(raw) for i, raw in zip(ids, self.r.hmget(self.spec_key, ids)) if raw}

    # -- recent messages, for lookback_seconds -----------------------------------------------
    def remember_many(self, batch: list[tuple[InboundEvent, str | None, str | None, str]],
                      seen_ttl: int = 24 * 3600, *, gate: bool = True) -> list[bool]:
        """Keep the last hour of messages, and give each message its place in its customer's lane; called
        by the listener on receipt, in one round trip for a batch of (event, seen key, lane key, lane entry).

        With `gate`, an event whose seen key (its msg_id's de-duplication mark) exists is a repeat: nothing
        is done for it and False is returned in its place. Without, the marks are set and every event is
        remembered (the caller has decided, e.g. from SQL, which are new).
        """
        if not batch:
            return []
        keys, args = [self.keys.recent(None)], []
        newest = max(event.received_at for event, *_ in batch)
        for event, seen_key, lane_key, lane_entry in batch:
            keys += [seen_key or "", self.keys.recent(event.from_id), lane_key or ""]
            args += [json.dumps(event.as_dict(), ensure_ascii=False), event.received_at, lane_entry]
        replies = self._remember(keys=keys, args=[seen_ttl, newest - RECENT_SECONDS, RECENT_SECONDS + 60,
                                                  LANE_TTL_SECONDS, int(gate), *args])
        return [bool(r) for r in replies]

    def seen_already(self, seen_keys: list[str | None]) -> list[bool]:
        """Which of these de-duplication marks exist (a cheap first look before anything is written)."""
        keys = [key for key in seen_keys if key]
        found = iter(self.r.mget(keys)) if keys else iter(())
        return [bool(next(found)) if key else False for key in seen_keys]

    def recent(self, customer_id: str | None, since: float) -> list[InboundEvent]:
        rows = self.r.zrangebyscore(self.keys.recent(customer_id), since, "+inf")
        return [InboundEvent.from_dict(json.loads(row)) for row in rows]


def _dumps(spec: dict) -> str:
    return json.dumps(spec, ensure_ascii=False)


def _texts(members) -> set[str]:
    return {m.decode() if isinstance(m, bytes) else m for m in members}
