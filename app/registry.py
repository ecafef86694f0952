"""The Redis index of waiting tasks: what a message looks at to find the tasks it may fire.

Everything here can be rebuilt from SQL (`reconcile` in app.services.registration), so losing Redis
loses no task. Keys (all under the configured prefix):

  spec                 hash  task_id -> compiled trigger spec (JSON, app.domain.triggers)
  ix:cust:<customer>   set   tasks bound to that customer (any message trigger)
  ix:kw:<keyword>      set   any-customer tasks by normalised keyword
  ix:kws               set   every keyword that has (or had) an ix:kw set
  ix:kwlens            set   every keyword length in ix:kws, so a message probes only those lengths
  ix:evt:<payment|order> set any-customer payment/order tasks (fired by the event itself)
  ix:ce:<event>        set   custom_event tasks by event name
  recent:<customer>    zset  that customer's messages of the last hour (for lookback_seconds)
  recent:*             zset  everybody's messages of the last hour (for any-customer lookback)

The cost of a lookup depends on the message and the customer, never on how many tasks wait.
"""
from __future__ import annotations

import json
from typing import Iterable

import redis

from app.domain.triggers import InboundEvent, index_keys, substrings

RECENT_SECONDS = 3600

# KEYS: seen key ("" = no de-duplication), the customer's recent zset, everybody's recent zset.
# ARGV: seen TTL, member, score, cutoff, recent TTL.
_REMEMBER = """
if KEYS[1] ~= '' and not redis.call('set', KEYS[1], 1, 'NX', 'EX', ARGV[1]) then return 0 end
for i = 2, 3 do
  redis.call('zadd', KEYS[i], ARGV[3], ARGV[2])
  redis.call('zremrangebyscore', KEYS[i], '-inf', ARGV[4])
  redis.call('expire', KEYS[i], ARGV[5])
end
return 1
"""


class Registry:
    def __init__(self, client: redis.Redis, prefix: str = "tw:"):
        self.r = client
        self.p = prefix
        self._remember = client.register_script(_REMEMBER)

    # -- keys -------------------------------------------------------------------------------
    def _key(self, kind: str, value: str) -> str:
        return f"{self.p}ix:{kind}:{value}"

    @property
    def spec_key(self) -> str:
        return f"{self.p}spec"

    # -- writing ----------------------------------------------------------------------------
    def register(self, spec: dict) -> None:
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(self.spec_key, spec["id"], json.dumps(spec, ensure_ascii=False))
        for kind, value in index_keys(spec):
            pipe.sadd(self._key(kind, value), spec["id"])
            if kind == "kw":
                pipe.sadd(f"{self.p}ix:kws", value)
                pipe.sadd(f"{self.p}ix:kwlens", len(value))
        pipe.execute()

    def unregister(self, task_id: str, spec: dict | None = None) -> None:
        if spec is None:
            raw = self.r.hget(self.spec_key, task_id)
            spec = json.loads(raw) if raw else None
        pipe = self.r.pipeline(transaction=True)
        if spec:
            for kind, value in index_keys(spec):
                pipe.srem(self._key(kind, value), task_id)
        pipe.hdel(self.spec_key, task_id)
        pipe.execute()

    def unregister_many(self, task_ids: list[str]) -> None:
        if not task_ids:
            return
        pipe = self.r.pipeline(transaction=True)
        for task_id, raw in zip(task_ids, self.r.hmget(self.spec_key, task_ids)):
            for kind, value in index_keys(json.loads(raw)) if raw else ():
                pipe.srem(self._key(kind, value), task_id)
        pipe.hdel(self.spec_key, *task_ids)
        pipe.execute()

    def clear(self) -> None:
        """Drop the whole index (reconcile's full rebuild starts here)."""
        for pattern in (f"{self.p}ix:*", self.spec_key):
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

    def count(self) -> int:
        return int(self.r.hlen(self.spec_key))

    def candidates(self, event: InboundEvent) -> list[dict]:
        """The specs of every task this event could fire (a superset; `matches` decides)."""
        pipe = self.r.pipeline(transaction=False)
        direct_keys = []
        if event.kind == "custom":
            direct_keys.append(self._key("ce", event.event or ""))
        else:
            if event.from_id:
                direct_keys.append(self._key("cust", event.from_id))
            if event.kind in ("payment", "order"):
                direct_keys.append(self._key("evt", event.kind))
        for key in direct_keys:
            pipe.smembers(key)
        if event.text:
            pipe.smembers(f"{self.p}ix:kwlens")
        replies = pipe.execute()
        ids: set = set()
        for members in replies[: len(direct_keys)]:
            ids |= members
        if event.text:
            probes = list(dict.fromkeys(substrings(event.text, (int(x) for x in replies[-1]))))
            if probes:
                present = self.r.smismember(f"{self.p}ix:kws", probes)
                words = [w for w, hit in zip(probes, present) if hit]
                if words:
                    ids |= self.r.sunion([self._key("kw", w) for w in words])
        return self.specs(i.decode() if isinstance(i, bytes) else i for i in ids)

    # -- recent messages, for lookback_seconds -----------------------------------------------
    def remember(self, event: InboundEvent, seen_key: str | None = None, seen_ttl: int = 24 * 3600) -> bool:
        """Keep the last hour of messages; called by the listener on receipt, in one round trip.

        With `seen_key` (the msg_id's de-duplication key) an event seen before is not remembered
        again and False is returned.
        """
        return bool(self._remember(
            keys=[seen_key or "", f"{self.p}recent:{event.from_id}", f"{self.p}recent:*"],
            args=[seen_ttl, json.dumps(event.as_dict(), ensure_ascii=False), event.received_at,
                  event.received_at - RECENT_SECONDS, RECENT_SECONDS + 60]))

    def recent(self, customer_id: str | None, since: float) -> list[InboundEvent]:
        key = f"{self.p}recent:{customer_id}" if customer_id else f"{self.p}recent:*"
        rows = self.r.zrangebyscore(key, since, "+inf")
        return [InboundEvent.from_dict(json.loads(row)) for row in rows]
