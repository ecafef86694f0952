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
from app.domain.triggers import InboundEvent
from app.lanes import Lanes
from app.registry import Registry
from app.services import inbound
from app.services.inbound import Arrival

log = logging.getLogger("workers.listener")
SEEN_TTL = 24 * 3600


class InboundBatch:
    def __init__(self, registry: Registry, lanes: Lanes, source: str, default_acc_id: str | None, count):
        self.registry, self.lanes, self.source = registry, lanes, source
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
        """Hand the batch over: one Redis round trip, one SQL transaction, one Celery message."""
        arrivals, self.arrivals = self.arrivals, []
        if not arrivals:
            return
        seen = [self.registry.keys.seen(self.source, a.event.msg_id) if a.event.msg_id else None for a in arrivals]
        fresh = self.registry.remember_many([(a.event, key, self.registry.keys.lane(*a.lane),
                                              Lanes.message_entry(a.mark, a.event.received_at))
                                             for a, key in zip(arrivals, seen)], SEEN_TTL)
        accepted = [(a, key) for a, key, new in zip(arrivals, seen, fresh) if new]
        if len(accepted) < len(arrivals):
            self.count("duplicates", len(arrivals) - len(accepted))
        if not accepted:
            return
        rows = self._record([a for a, _ in accepted])
        repeats = [a for a, row in zip(accepted, rows) if row == 0]
        if repeats:  # stored before: Redis had lost their marks. Their lane places go at once.
            self.count("duplicates", len(repeats))
            self.lanes.resolve([(a.lane, a.mark, []) for a, _ in repeats])
        handed = [(a, row) for (a, _), row in zip(accepted, rows) if row != 0]
        if not handed:  # every one a repeat: nothing for matching
            return
        try:
            queueing.enqueue_match([{"event": a.event.as_dict(), "inbound_id": row, "lane": list(a.lane),
                                     "mark": a.mark} for a, row in handed])
        except (kombu.exceptions.KombuError, redis.RedisError, OSError) as exc:
            recorded = [a for a, row in handed if row is not None]
            log.error("could not hand %d messages to matching (%s); %d are in SQL and will be matched once "
                      "the broker is back", len(handed), exc, len(recorded), extra={"event": "enqueue_failed"})
            self._forget([key for (a, key), row in zip(accepted, rows) if row is None and key])
            return
        self.count("received", len(handed))

    def _record(self, arrivals: list[Arrival]) -> list[int | None]:
        """Row ids; 0 for a message stored before; None for each when the database is away (the
        messages still go to matching, which retries until it is back)."""
        try:
            return [row if row is not None else 0 for row in inbound.record(arrivals, self.source)]
        except SQLAlchemyError as exc:
            log.error("could not record %d inbound messages: %s", len(arrivals), exc, extra={"event": "record_failed"})
            return [None] * len(arrivals)

    def _forget(self, seen_keys: list[str]) -> None:
        """Messages neither recorded nor handed on: let 轻简's redelivery of them through."""
        if seen_keys:
            try:
                self.registry.r.delete(*seen_keys)
            except redis.RedisError:
                pass
