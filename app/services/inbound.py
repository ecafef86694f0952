"""Inbound messages in SQL (DESIGN.md rule 11): the listener records each message it accepts, in batches;
matching marks it matched with the tasks it fired; beat hands a message whose match was lost (a worker
killed, Redis restarted empty) to matching again; the console and the explain endpoint read them.

Content is stored masked as the logs mask it (phone and ID numbers), so a message matched again from here
is matched on its masked text.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app import queueing
from app.domain.events import InboundEvent, message_text
from app.infra.db import session_scope
from app.infra.logs import mask
from app.infra.timeutil import epoch, utcnow
from app.models import InboundMessage

log = logging.getLogger(__name__)
API_SOURCE = "api"  # custom events posted to /api/event
RECENT_SECONDS = 3600  # a message older than this is not matched again (lookback_seconds ≤ 3600)


def source_of(ws_url: str) -> str:
    """The short name of a 轻简 connection: msg_ids are unique per 轻简, not across them."""
    return hashlib.sha256(ws_url.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Arrival:
    """An accepted inbound event as the listener saw it: what matching needs besides the event itself."""

    event: InboundEvent
    content: str | None = None  # as received (stored masked)
    data: dict | None = None  # payment/order details, custom event data
    lane: tuple[str | None, str] | None = None  # the customer's lane (shop account, customer id)
    mark: str | None = None  # the message's entry in that lane


def record(arrivals: list[Arrival], source: str) -> list[int | None]:
    """Store a batch in one transaction; the row id of each, None for one already stored (a msg_id seen
    before: Redis, which de-duplicates first, had lost its mark)."""
    if not arrivals:
        return []
    now = utcnow()
    rows = [_row(a, source, now) for a in arrivals]
    try:
        with session_scope() as session:
            _without_waiting_for_disk(session)
            return list(session.scalars(insert(InboundMessage).returning(InboundMessage.id,
                                                                          sort_by_parameter_order=True), rows))
    except IntegrityError:  # a repeat in the batch: store the others one by one
        return [_record_one(row) for row in rows]


def _without_waiting_for_disk(session: Session) -> None:
    """On PostgreSQL, this transaction's commit does not wait for its WAL to reach the disk: the record sits
    on the path of every message, and a crash loses at most the last fraction of a second of records,
    whose messages were handed to matching (and remembered in Redis) all the same."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL synchronous_commit TO OFF"))


def _record_one(row: dict) -> int | None:
    try:
        with session_scope() as session:
            return session.scalar(insert(InboundMessage).returning(InboundMessage.id), [row])
    except IntegrityError:
        return None


def _row(a: Arrival, source: str, now: datetime) -> dict:
    e = a.event
    return {"source": source, "msg_id": e.msg_id, "kind": e.kind, "acc_id": e.acc_id, "from_id": e.from_id,
            "from_name": e.from_name, "msg_type": e.msg_type, "content": mask(a.content) if a.content else None,
            "event": e.event, "data": a.data or (e.data or None),
            "received_at": datetime.fromtimestamp(e.received_at, timezone.utc).replace(tzinfo=None),
            "enqueued_at": now}


def hand_over_custom_event(event: InboundEvent) -> None:
    """A custom event from POST /api/event: recorded like a message, then matched."""
    [row] = record([Arrival(event)], API_SOURCE)
    queueing.enqueue_match([{"event": event.as_dict(), "inbound_id": row}])


def mark_matched(session: Session, fired: dict[int, list[str]], now: datetime) -> None:
    """Inside matching's transaction: these messages were matched, each firing these tasks. A message
    matched again (a redelivered or re-driven match) keeps what it fired before, and adds to it."""
    if not fired:
        return
    before = dict(session.execute(select(InboundMessage.id, InboundMessage.fired).where(
        InboundMessage.id.in_(list(fired)), InboundMessage.fired.is_not(None))).all())
    session.execute(update(InboundMessage), [
        {"id": row_id, "matched_at": now, "fired": list(dict.fromkeys([*(before.get(row_id) or []), *task_ids]))
         or None} for row_id, task_ids in fired.items()])


def unmatched(older_than: float, limit: int = 500) -> list[tuple[int, InboundEvent]]:
    """Messages of the last hour handed to matching more than `older_than` seconds ago and still not
    matched (their match was lost), marked as handed over again now."""
    now = utcnow()
    with session_scope() as session:
        rows = session.scalars(
            select(InboundMessage).where(InboundMessage.matched_at.is_(None),
                                         InboundMessage.enqueued_at < now - timedelta(seconds=older_than),
                                         InboundMessage.received_at > now - timedelta(seconds=RECENT_SECONDS))
            .order_by(InboundMessage.received_at).limit(limit)).all()
        if rows:
            session.execute(update(InboundMessage).where(InboundMessage.id.in_([r.id for r in rows]))
                            .values(enqueued_at=now))
        return [(row.id, event_of(row)) for row in rows]


def event_of(row: InboundMessage) -> InboundEvent:
    text = message_text(row.content) if row.kind == "message" and (row.msg_type or "text") == "text" and \
        row.content is not None else None
    return InboundEvent(kind=row.kind, msg_id=row.msg_id, acc_id=row.acc_id, from_id=row.from_id,
                        from_name=row.from_name, text=text, msg_type=row.msg_type,
                        received_at=epoch(row.received_at), event=row.event,
                        data=(row.data or {}) if row.kind == "custom" else {})


def purge(older_than_days: float, batch: int = 1000) -> int:
    """Delete one batch of messages older than the retention; returns how many went."""
    cutoff = utcnow() - timedelta(days=older_than_days)
    with session_scope() as session:
        ids = list(session.scalars(select(InboundMessage.id).where(InboundMessage.received_at < cutoff)
                                   .limit(batch)))
        if ids:
            session.execute(delete(InboundMessage).where(InboundMessage.id.in_(ids)))
    return len(ids)
