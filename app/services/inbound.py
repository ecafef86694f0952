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

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from app import queueing
from app.domain.events import InboundEvent, message_text
from app.infra.db import append_engine, session_scope
from app.infra.logs import mask
from app.infra.timeutil import epoch, utcnow
from app.models import InboundMessage

log = logging.getLogger(__name__)
API_SOURCE = "api"  # custom events posted to /api/event
RECENT_SECONDS = 3600  # a message older than this is not matched again (lookback_seconds ≤ 3600)

CHUNK = 1000  # rows per INSERT statement: SQLAlchemy's default insertmanyvalues page
_messages = InboundMessage.__table__
# Built once: statements on the path of every message are not built again for each.
_RECORD = insert(_messages).returning(_messages.c.id, sort_by_parameter_order=True)
_MARK_IDLE = update(_messages).where(_messages.c.id.in_(bindparam("row_ids", expanding=True))) \
    .values(matched_at=bindparam("now"))
_MARK_FIRST = update(_messages).where(_messages.c.id == bindparam("row_id"), _messages.c.fired.is_(None)) \
    .values(matched_at=bindparam("now"), fired=bindparam("task_ids", type_=_messages.c.fired.type))


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
    """Store a batch, each statement of it in one transaction; the row id of each, None for one already
    stored (a msg_id seen before: Redis, which de-duplicates first, had lost its mark)."""
    now = utcnow()
    rows = [_row(a, source, now) for a in arrivals]
    # One statement per chunk (SQLAlchemy's insertmanyvalues page), so each chunk stands or falls whole.
    return [row_id for i in range(0, len(rows), CHUNK) for row_id in _insert_chunk(rows[i:i + CHUNK])]


def _insert_chunk(rows: list[dict]) -> list[int | None]:
    try:
        return _insert(rows)
    except IntegrityError:  # a repeat in the chunk: store the others one by one
        return [_insert_one(row) for row in rows]


def _insert_one(row: dict) -> int | None:
    try:
        [row_id] = _insert([row])
        return row_id
    except IntegrityError:
        return None


def _insert(rows: list[dict]) -> list[int]:
    """One INSERT through the append engine (app.infra.db), tried again once on a connection found broken
    (a restarted database: that engine does not ping before each use)."""
    try:
        return _insert_once(rows)
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
        return _insert_once(rows)


def _insert_once(rows: list[dict]) -> list[int]:
    with append_engine().begin() as conn:
        return list(conn.scalars(_RECORD, rows))


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
    matched again (a redelivered or re-driven match) keeps what it fired before, and adds to it.

    Written without reading first: messages that fired nothing in one UPDATE, those that fired in one
    UPDATE each that takes only a row with nothing fired yet. Only when one of those misses (a message
    matched before, which fired) are the lists read and merged."""
    conn = session.connection()
    idle = [row_id for row_id, task_ids in fired.items() if not task_ids]
    firing = {row_id: list(dict.fromkeys(task_ids)) for row_id, task_ids in fired.items() if task_ids}
    if idle:
        conn.execute(_MARK_IDLE, {"row_ids": idle, "now": now})
    if not firing:
        return
    params = [{"row_id": row_id, "task_ids": task_ids, "now": now} for row_id, task_ids in firing.items()]
    # One set of parameters is executed as such: psycopg runs a list in pipeline mode, dearer for one row.
    if conn.execute(_MARK_FIRST, params[0] if len(params) == 1 else params).rowcount == len(firing):
        return
    # Merging again a row just written above changes nothing: its list is already the new one.
    before = dict(conn.execute(select(_messages.c.id, _messages.c.fired).where(
        _messages.c.id.in_(list(firing)), _messages.c.fired.is_not(None))).all())
    session.execute(update(InboundMessage), [
        {"id": row_id, "matched_at": now, "fired": list(dict.fromkeys([*(before.get(row_id) or []), *task_ids]))}
        for row_id, task_ids in firing.items()])


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
