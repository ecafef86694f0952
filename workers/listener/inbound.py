"""What the listener does with customer events: batch them, drop repeats, remember them for lookback,
give each its place in its customer's lane, record them in SQL, and hand the batch to matching."""
from __future__ import annotations

import logging
import time
import uuid

import kombu.exceptions
import redis
from sqlalchemy.exc import SQLAlchemyError

from app import queueing
from app.domain.events import InboundEvent
from app.lanes import Lanes
from app.registry import Registry
from app.services import inbound
from app.services.inbound import Arrival

log = logging.getLogger("workers.listener")
SEEN_TTL = 24 * 3600


class InboundBatch:
    def __init__(self, registry: Registry, source: str, default_acc_id: str | None, count):
        self.registry, self.source = registry, source
        self.default_acc_id = default_acc_id
        self.count = count  # the listener's counters
        self.arrivals: list[Arrival] = []

    def add(self, kind: str, data: dict) -> None:
        """A `message`/`payment`/`order` frame's data (malformed ones are counted and skipped)."""
        try:
            event = InboundEvent.from_wire(kind, data, received_at=time.time())
        except ValueError as exc:
            self.count("malformed")
            log.warning("skipped a %s event: %s", kind, exc, extra={"event": "malformed"})
            return
        extra = {k: data[k] for k in ("order_id", "amount") if k in data} or None
        lane = (event.acc_id or self.default_acc_id, event.from_id)
        mark = (event.msg_id or uuid.uuid4().hex).replace("|", "_")
        content = data.get("content") if isinstance(data.get("content"), str) else None
        self.arrivals.append(Arrival(event, content=content, data=extra, lane=lane, mark=mark))

    def __len__(self) -> int:
        return len(self.arrivals)

    def flush(self) -> None:
        """Hand the batch over: a look at Redis, one SQL transaction, one Redis round trip, one push to the inbox.

        SQL decides which messages are new (its unique (source, msg_id)), and records them before anything
        else is written: a listener killed after that leaves a recorded message that beat hands to matching
        again; one killed before leaves nothing, so 轻简's redelivery is taken. Redis's marks are only a cheap
        first look, and the de-duplication while the database is away."""
        arrivals, self.arrivals = self.arrivals, []
        if not arrivals:
            return
        keys = self.registry.keys
        seen = [keys.seen(self.source, a.event.msg_id) if a.event.msg_id else None for a in arrivals]
        fresh = [(a, key) for a, key, old in zip(arrivals, seen, self.registry.seen_already(seen)) if not old]
        rows = self._record([a for a, _ in fresh]) if fresh else []
        if rows is None:  # the database is away: Redis's marks tell repeats apart meanwhile
            new = self.registry.remember_many([self._remembered(a, key) for a, key in fresh], SEEN_TTL, gate=True)
            handed = [(a, key, None) for (a, key), yes in zip(fresh, new) if yes]
        else:
            handed = [(a, key, row) for (a, key), row in zip(fresh, rows) if row is not None]
            self.registry.remember_many([self._remembered(a, key) for a, key, _ in handed], SEEN_TTL, gate=False)
        if len(handed) < len(arrivals):
            self.count("duplicates", len(arrivals) - len(handed))
        if not handed:  # every one a repeat: nothing for matching
            return
        try:
            queueing.enqueue_match([{"event": a.event.as_dict(), "inbound_id": row, "lane": list(a.lane),
                                     "mark": a.mark} for a, _, row in handed])
        except (kombu.exceptions.KombuError, redis.RedisError, OSError) as exc:
            log.error("could not hand %d messages to matching (%s); those recorded in SQL are matched once the "
                      "broker is back", len(handed), exc, extra={"event": "enqueue_failed"})
            if rows is None:  # neither recorded nor handed on: let 轻简's redelivery of them through
                self._forget([key for _, key, _ in handed if key])
            return
        self.count("received", len(handed))

    def _remembered(self, a: Arrival, seen_key: str | None) -> tuple:
        return a.event, seen_key, self.registry.keys.lane(*a.lane), Lanes.message_entry(a.mark, a.event.received_at)

    def _record(self, arrivals: list[Arrival]) -> list[int | None] | None:
        """Row ids, None for a message stored before (a repeat); None for all when the database is away
        (the messages still go to matching, which retries until it is back)."""
        try:
            return inbound.record(arrivals, self.source)
        except SQLAlchemyError as exc:
            log.error("could not record %d inbound messages: %s", len(arrivals), exc, extra={"event": "record_failed"})
            return None

    def _forget(self, seen_keys: list[str]) -> None:
        """Messages neither recorded nor handed on: let 轻简's redelivery of them through."""
        if seen_keys:
            try:
                self.registry.r.delete(*seen_keys)
            except redis.RedisError:
                pass
