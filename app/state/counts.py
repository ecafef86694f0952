"""Task counts that cost the same at ten rows as at ten million: by status, by trigger type, moves into
each status ever, tasks received ever, callback outbox rows.

Every transaction that creates, moves or purges tasks also inserts one `task_count_deltas` row saying
what it did (`app.state.tasks`, `app.services.retention`), so the counts are exact at every commit.
Only inserts: a hot counter row per status would make every claim on PostgreSQL wait for the one before
it. Beat folds the deltas into `task_counts` every few seconds (`fold`); a reader adds the totals and
the few deltas not folded yet, in one snapshot (`read`).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from sqlalchemy import String, cast, delete, func, insert, null, select, text, union_all
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from app.domain import states
from app.domain.triggers import TRIGGER_TYPES
from app.infra.db import session_scope
from app.models import CallbackOutbox, Task, TaskCount, TaskCountDelta

FOLD_BATCH = 10_000
# Counters that only grow: a recount leaves them as they are (what the tables hold cannot say them).
MONOTONIC = ("entered:", "received")


def record(session: Session, from_status: str | None, to_status: str | None, tasks: int, *,
           trigger_type: str | None = None, callbacks: int = 0) -> None:
    """One delta, in the caller's transaction: `tasks` moved from -> to (None: created / purged, with
    their trigger type) and `callbacks` outbox rows added (negative: removed)."""
    if tasks or callbacks:  # a plain INSERT: through the ORM's unit of work it cost more than the row
        session.execute(insert(TaskCountDelta.__table__).values(
            from_status=from_status, to_status=to_status, trigger_type=trigger_type, tasks=tasks, callbacks=callbacks))


def _apply(totals: Counter, from_status, to_status, trigger_type, tasks, callbacks) -> None:
    """What a delta (or a sum of alike ones) does to the named totals."""
    tasks, callbacks = int(tasks or 0), int(callbacks or 0)
    if from_status is not None:
        totals[f"status:{from_status}"] -= tasks
    if to_status is not None:
        totals[f"status:{to_status}"] += tasks
        totals["received" if from_status is None else f"entered:{to_status}"] += tasks
    if trigger_type is not None:
        totals[f"trigger:{trigger_type}"] += tasks if to_status is not None else -tasks
    totals["callbacks"] += callbacks


@dataclass(frozen=True)
class Counts:
    by_status: dict[str, int]
    by_trigger_type: dict[str, int]
    entered: dict[str, int]  # moves into each status, ever (purges do not lower it)
    received: int
    callbacks: int  # rows in the callback outbox

    @property
    def total(self) -> int:
        return sum(self.by_status.values())


def snapshot(session: Session) -> None:
    """Make the session's transaction one snapshot on PostgreSQL (REPEATABLE READ; read-only use is never
    refused), so everything read in it agrees. Call before its first statement. SQLite's transactions
    (BEGIN IMMEDIATE, app.infra.db) are snapshots already."""
    if session.get_bind().dialect.name == "postgresql":
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})


def read(session: Session) -> Counts:
    """The counts now: the folded totals plus the deltas not folded yet, in one statement."""
    folded = select(TaskCount.name, cast(null(), String), cast(null(), String), cast(null(), String),
                    TaskCount.n, cast(0, TaskCount.n.type))
    pending = (select(cast(null(), String), TaskCountDelta.from_status, TaskCountDelta.to_status,
                      TaskCountDelta.trigger_type, func.sum(TaskCountDelta.tasks), func.sum(TaskCountDelta.callbacks))
               .group_by(TaskCountDelta.from_status, TaskCountDelta.to_status, TaskCountDelta.trigger_type))
    totals: Counter = Counter()
    for name, from_status, to_status, trigger_type, tasks, callbacks in session.execute(union_all(folded, pending)):
        if name is not None:
            totals[name] += int(tasks)
        else:
            _apply(totals, from_status, to_status, trigger_type, tasks, callbacks)
    return Counts(
        by_status={s: totals[f"status:{s}"] for s in states.STATUSES},
        by_trigger_type={t: totals[f"trigger:{t}"] for t in TRIGGER_TYPES},
        entered={s: totals[f"entered:{s}"] for s in states.STATUSES},
        received=totals["received"], callbacks=totals["callbacks"])


def fold(batch: int = FOLD_BATCH, max_batches: int = 10) -> int:
    """Move deltas into the totals, a batch per transaction; returns how many were folded. Each delta is
    deleted by the statement that reads it (DELETE … RETURNING), so none is counted twice or missed,
    whatever commits meanwhile. The batch is bounded by its last id, read by an uncorrelated sub-select
    (run once): with `id IN (SELECT … LIMIT)`, PostgreSQL planning from the statistics of a table that had
    been empty may re-run the sub-select for every row, as it did for the callback claim."""
    folded = 0
    for _ in range(max_batches):
        with session_scope() as session:
            oldest = select(TaskCountDelta.id).order_by(TaskCountDelta.id).limit(batch).subquery()
            rows = session.execute(
                delete(TaskCountDelta).where(TaskCountDelta.id <= select(func.max(oldest.c.id)).scalar_subquery())
                .returning(TaskCountDelta.from_status, TaskCountDelta.to_status, TaskCountDelta.trigger_type,
                           TaskCountDelta.tasks, TaskCountDelta.callbacks)
                .execution_options(synchronize_session=False)).all()
            totals: Counter = Counter()
            for row in rows:
                _apply(totals, *row)
            _add(session, totals)
        folded += len(rows)
        if len(rows) < batch:
            break
    return folded


def recount() -> Counts:
    """Count the tables again (after a restore, or an upgrade that ran beside old processes). Holds
    every status move for the seconds it takes on PostgreSQL (SHARE lock on tasks). The counters that
    only grow keep their values, plus what the pending deltas add to them."""
    with session_scope() as session:
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("LOCK TABLE tasks IN SHARE MODE"))  # waits for moves in flight, holds new ones
        pending: Counter = Counter()
        for row in session.execute(
                delete(TaskCountDelta).returning(
                    TaskCountDelta.from_status, TaskCountDelta.to_status, TaskCountDelta.trigger_type,
                    TaskCountDelta.tasks, TaskCountDelta.callbacks)
                .execution_options(synchronize_session=False)):
            _apply(pending, *row)
        _add(session, Counter({name: n for name, n in pending.items() if name.startswith(MONOTONIC)}))
        absolute = {f"status:{s}": n for s, n in session.execute(select(Task.status, func.count()).group_by(Task.status))}
        absolute.update({f"trigger:{t}": n for t, n in session.execute(
            select(Task.trigger_type, func.count()).group_by(Task.trigger_type))})
        absolute["callbacks"] = session.scalar(select(func.count()).select_from(CallbackOutbox))
        session.execute(delete(TaskCount).where(TaskCount.name.like("status:%") | TaskCount.name.like("trigger:%")
                                                | (TaskCount.name == "callbacks")))
        session.add_all(TaskCount(name=name, n=n) for name, n in sorted(absolute.items()))
        if session.get(TaskCount, "received") is None:
            session.add(TaskCount(name="received", n=sum(absolute.get(f"status:{s}", 0) for s in states.STATUSES)))
    with session_scope() as session:
        return read(session)


def _add(session: Session, totals: Counter) -> None:
    """totals[name] += n for each name, creating the rows it lacks (in name order: no deadlocks)."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    for name in sorted(totals):
        if totals[name]:
            statement = insert(TaskCount).values(name=name, n=totals[name])
            session.execute(statement.on_conflict_do_update(
                index_elements=[TaskCount.name], set_={"n": TaskCount.n + statement.excluded.n}))
