"""The one place that writes a task's status (DESIGN.md rule 1).

Every move is a compare-and-set `UPDATE tasks SET status=:to WHERE task_id=:id AND status=:from`,
plus its history row, plus (for running and terminal statuses) its callback outbox row, plus its line
for the task counts (app.state.counts), all in the caller's transaction. Whoever's update hits the row
has won; everybody else gets `won=False` and drops the work. That is what makes a task fire once
however many workers, listeners or beats race for it.

Whether callbacks are sent and in which zone their times are written is policy, set once when the
process is configured (`configure`, from `app.runtime`), not by each caller.
"""
from __future__ import annotations

import json
import logging
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import event, insert, tuple_, update
from sqlalchemy.orm import Session

from app.domain import states
from app.infra.timeutil import iso, utcnow
from app.models import CallbackOutbox, Task, TaskEvent
from app.state import counts
from app.state.cas import swap_status

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CallbackPolicy:
    enabled: bool = True  # False: outbox rows are kept as `unsent` (no TIANWANG_CALLBACK_URL)
    zone: str = "Asia/Shanghai"  # the zone of the callback's timestamp


_policy = CallbackPolicy()


def configure(policy: CallbackPolicy) -> None:
    global _policy
    _policy = policy


class TaskNotFound(LookupError):
    pass


@dataclass(frozen=True)
class Moved:
    won: bool
    previous: str | None  # the status seen (before the move if won)
    callback_event_id: str | None = None


def move(
    session: Session,
    task_id: str,
    target: str,
    *,
    only_from: frozenset[str] | set[str] | None = None,
    values: dict | None = None,
    detail: dict | None = None,
    error: str | None = None,
    result: dict | None = None,
    where: tuple = (),
    history: list[tuple[str, dict | None]] = (),
    operator: bool = False,
    now: datetime | None = None,
) -> Moved:
    """Move `task_id` to `target` if its current status allows it (and is in `only_from`, if given).

    `values` are extra columns written by the same UPDATE; `where` extra conditions of the CAS
    (e.g. that this worker still holds the lease); `history` lines (kind, detail) that led to the move,
    written before its own line when it wins; `operator`: one of the operator's moves out of a finished
    status (retry, re-arm), not an ordinary one. Raises TaskNotFound for an unknown id.
    """
    allowed = states.sources(target, operator=operator)
    if only_from is not None:
        allowed = allowed & frozenset(only_from)
    now = now or utcnow()
    row_values = _row_values(target, now, values, error, operator=operator)
    if result is not None:
        row_values["result"] = result
    swap = swap_status(session, Task, task_id, allowed, row_values, where)
    if swap.previous is None:
        raise TaskNotFound(task_id)
    if not swap.won:
        return Moved(False, swap.previous)
    event_id = _write_won(session, task_id, swap.previous, target, history, _detail(detail, error), error, result,
                          now)
    counts.record(session, swap.previous, target, 1, callbacks=int(event_id is not None))
    log.info("task %s: %s -> %s", task_id, swap.previous, target, extra={"task_id": task_id, "event": "status"})
    return Moved(True, swap.previous, event_id)


def store_new(session: Session, task: Task, *, listening: bool) -> None:
    """A new task's row, its count and its first history lines: `received`, and, when it is in the Redis
    index already (`listening`), `pending -> waiting`, in the caller's transaction.

    Written as three INSERT statements rather than through the ORM's unit of work: this is every
    request of the intake API, and the unit of work cost more CPU than the rest of the request."""
    task.status = states.WAITING if listening else states.PENDING
    row = {column: value for attr, column in _TASK_COLUMNS if (value := getattr(task, attr)) is not None}
    session.execute(insert(Task.__table__), row)  # the id is taken: IntegrityError here, before anything else
    received = {"task_id": task.task_id, "at": task.created_at, "kind": "received", "from_status": None,
                "to_status": None, "detail": {"created_by": task.created_by}}
    session.execute(insert(TaskEvent.__table__), received)
    if listening:
        session.execute(insert(TaskEvent.__table__), {"task_id": task.task_id, "at": task.created_at, "kind": "status",
                                                      "from_status": states.PENDING, "to_status": states.WAITING})
    counts.record(session, None, task.status, 1, trigger_type=task.trigger_type)


_TASK_COLUMNS = tuple((attr.key, attr.columns[0].key) for attr in Task.__mapper__.column_attrs)


def move_many(
    session: Session,
    task_ids: list[str],
    source: str,
    target: str,
    *,
    values: dict | None = None,
    error: str | None = None,
    detail: dict | None = None,
    per_task: dict[str, dict] | None = None,
    detail_of: dict[str, dict] | None = None,
    owners: dict[str, str] | None = None,
    history: dict[str, list] | None = None,
    now: datetime | None = None,
) -> list[str]:
    """`move` for a batch that all leave the same `source` status: one CAS statement for all of them.

    `UPDATE … WHERE task_id IN (…) AND status = :source RETURNING task_id` returns exactly the rows this
    call won; each winner gets its history row and outbox row as with `move`. Beat's sweeps, matching and
    finishing use it so a thousand timers due in one second, or a burst of messages, are one statement,
    not a thousand. Per task: `per_task` columns of its own (what fired it; its result), written to the
    winners by primary key; `detail_of` its history line's detail; `owners` the lease token it must still
    hold (the CAS then also checks that); `history` lines (kind, detail) written before its status line.
    """
    if source not in states.sources(target):
        raise states.InvalidTransition(f"{source} -> {target}")
    if not task_ids:
        return []
    now = now or utcnow()
    row_values = _row_values(target, now, values, error)
    held = tuple_(Task.task_id, Task.lease_owner).in_([(i, owners[i]) for i in task_ids]) if owners \
        else Task.task_id.in_(task_ids)
    won = list(session.scalars(
        update(Task).where(held, Task.status == source)
        .values(**row_values).returning(Task.task_id)
        .execution_options(synchronize_session=False)))
    if per_task and won:
        session.execute(update(Task).execution_options(synchronize_session=False),
                        [{"task_id": task_id, **per_task[task_id]} for task_id in won])
    details = _detail(detail, error)
    for task_id in won:
        _write_won(session, task_id, source, target, (history or {}).get(task_id, ()),
                   {**details, **(detail_of or {}).get(task_id, {})}, error,
                   (per_task or {}).get(task_id, {}).get("result"), now)
    counts.record(session, source, target, len(won), callbacks=len(won) if target in states.CALLBACK_ON else 0)
    if won:
        log.info("%d tasks: %s -> %s", len(won), source, target, extra={"event": "status_batch"})
    return won


def _row_values(target: str, now: datetime, values: dict | None, error: str | None, *,
                operator: bool = False) -> dict:
    """The columns a move to `target` writes: its status, `values`, the error; a terminal status also
    its completion time and no lease (unless `values` says otherwise); an operator's move out of a
    finished status clears the completion time."""
    row_values = {"status": target, "updated_at": now, **(values or {})}
    if error is not None:
        row_values["error_message"] = error
    if states.is_terminal(target):
        row_values.setdefault("completed_at", now)
        row_values.setdefault("lease_owner", None)
        row_values.setdefault("lease_expires_at", None)
    elif operator:
        row_values.setdefault("completed_at", None)
    return row_values


def _detail(detail: dict | None, error: str | None) -> dict:
    return {**(detail or {}), **({"error": error} if error else {})}


def _write_won(session: Session, task_id: str, source: str, target: str, history, detail: dict,
               error: str | None, result, now: datetime) -> str | None:
    """What a won move writes beside the row: its `history` lines, its status line, and its callback
    (for a status 天网 hears of); the callback's event id, if any."""
    for kind, line in history:
        record(session, task_id, kind, line, now=now)
    session.add(TaskEvent(task_id=task_id, at=now, kind="status", from_status=source, to_status=target,
                          detail=detail or None))
    if target in states.CALLBACK_ON:
        return _add_callback(session, task_id, target, error, result, now)
    return None


def _add_callback(session, task_id, status, error, result, now) -> str:
    event_id = str(uuid.uuid4())
    body = json.dumps({
        "event_id": event_id, "task_id": task_id, "status": status, "error": error,
        "result": result, "timestamp": iso(now, _policy.zone),
    }, ensure_ascii=False, separators=(",", ":"))
    session.add(CallbackOutbox(
        event_id=event_id, task_id=task_id, status=status, body=body, created_at=now,
        next_attempt_at=now, state="pending" if _policy.enabled else "unsent",
    ))
    if _policy.enabled:
        session.info.setdefault("callbacks_due", []).append(event_id)
    return event_id


def record(session: Session, task_id: str, kind: str, detail: dict | None = None, now=None) -> None:
    """A history line that is not a status change (attempt, send, callback, lookback ...)."""
    session.add(TaskEvent(task_id=task_id, at=now or utcnow(), kind=kind, detail=detail))


def update_running(session: Session, task_id: str, *, where: tuple = (), **values) -> bool:
    """Write bookkeeping columns of a running task (lease, progress, retry_count) under a CAS.

    Not a status change; it only succeeds while the task is still `running` and `where` holds.
    """
    values.setdefault("updated_at", utcnow())
    hit = session.execute(
        update(Task)
        .where(Task.task_id == task_id, Task.status == states.RUNNING, *where)
        .values(**values)
        .execution_options(synchronize_session=False)
    ).rowcount
    return hit == 1


@event.listens_for(Session, "before_flush")
def _count_new_tasks(session: Session, _context, _instances) -> None:
    """Every task row added through the ORM (the legacy import) is counted in the transaction that
    inserts it; intake's store_new writes plain INSERTs and records its count itself."""
    born = Counter((task.status or states.PENDING, task.trigger_type)  # PENDING: the column's default
                   for task in session.new if isinstance(task, Task))
    for (status, trigger_type), n in born.items():
        counts.record(session, None, status, n, trigger_type=trigger_type)


# A commit that wrote callback rows wakes their delivery right away (beat re-drives it otherwise).
# The hook is set by the process (web or worker) that can enqueue work.
_callback_hook = None


def set_callback_hook(fn) -> None:
    global _callback_hook
    _callback_hook = fn


@event.listens_for(Session, "after_commit")
def _deliver_committed_callbacks(session: Session) -> None:
    if session.info.pop("callbacks_due", None) and _callback_hook is not None:
        try:
            _callback_hook()
        except Exception:  # the outbox rows are safe; beat wakes their delivery
            log.warning("could not wake callback delivery; beat will", exc_info=True)


@event.listens_for(Session, "after_rollback")
def _forget_rolled_back_callbacks(session: Session) -> None:
    session.info.pop("callbacks_due", None)
