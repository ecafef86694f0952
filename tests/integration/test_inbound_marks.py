"""The inbound-message record's two writes on the path of every message, against SQLite and PostgreSQL:
the listener's INSERT (through the append engine: on PostgreSQL one statement, no ping first) and
matching's mark, written without reading unless a message that fired before fires again."""
import time
import uuid

import pytest
from sqlalchemy import select, text

from app.domain.events import InboundEvent
from app.infra import db
from app.infra.db import session_scope
from app.infra.timeutil import utcnow
from app.models import InboundMessage
from app.services import inbound

pytestmark = pytest.mark.integration


def recorded(count: int) -> list[int]:
    arrivals = [inbound.Arrival(InboundEvent.from_wire("message", {
        "msg_id": f"m-{uuid.uuid4().hex}", "acc_id": "shop_001", "from_id": f"c{i}", "from_name": "小明",
        "msg_type": "text", "content": "好的", "ts": int(time.time())}, received_at=time.time()), content="好的")
        for i in range(count)]
    ids = inbound.record(arrivals, "test")
    assert all(ids) and len(set(ids)) == count
    return ids


def mark(fired: dict[int, list[str]]) -> None:
    with session_scope() as session:
        inbound.mark_matched(session, fired, utcnow())


def marks(ids: list[int]) -> list[tuple[bool, list | None]]:
    """(matched, what it fired) of each row, in the order given."""
    with session_scope() as session:
        got = {r.id: (r.matched_at is not None, r.fired)
               for r in session.execute(select(InboundMessage).where(InboundMessage.id.in_(ids))).scalars()}
    return [got[i] for i in ids]


def test_a_batch_marks_each_message_with_what_it_fired_keeping_what_it_fired_before(app):
    idle, first, again, repeated, untouched = recorded(5)
    mark({again: ["T0"], repeated: ["T1"]})

    mark({idle: [], first: ["T2", "T2"], again: ["T3"], repeated: ["T1"]})

    assert marks([idle, first, again, repeated, untouched]) == [
        (True, None), (True, ["T2"]), (True, ["T0", "T3"]), (True, ["T1"]), (False, None)]


def test_a_message_matched_again_without_firing_keeps_its_list(app):
    [row] = recorded(1)
    mark({row: ["T1"]})
    mark({row: []})
    assert marks([row]) == [(True, ["T1"])]


def test_a_repeat_in_a_batch_is_told_apart_and_the_rest_recorded(app):
    [row] = recorded(1)
    with session_scope() as session:
        stored = session.get(InboundMessage, row)
        event = inbound.event_of(stored)
    fresh = InboundEvent.from_wire("message", {"msg_id": f"m-{uuid.uuid4().hex}", "acc_id": "shop_001",
                                               "from_id": "c9", "msg_type": "text", "content": "在吗",
                                               "ts": int(time.time())}, received_at=time.time())
    ids = inbound.record([inbound.Arrival(fresh), inbound.Arrival(event)], "test")
    assert ids[0] and ids[0] != row and ids[1] is None


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # SQLite's record uses the shared engine
def test_the_record_survives_the_database_dropping_its_connections(app):
    assert db.append_engine() is not db.engine()
    recorded(1)  # the append engine now holds a pooled connection, which it does not ping before use
    with session_scope() as session:  # as a database restart would: every other connection dropped
        dropped = session.execute(text(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()")).scalar()
    assert dropped >= 1
    recorded(3)
