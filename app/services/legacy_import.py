"""Cut-over from the legacy bridge: import its SQLite `tasks` table (`manage.py import-legacy`).

Each row is mapped by `app.domain.legacy`. A row still waiting is validated by the intake schema,
stored `pending` and activated by `registration.activate` (registered in the Redis index, moved to
`waiting` by the state machine, caught up on recent messages), exactly as a received task is. One whose
deadline passed is stored and moved to `timeout` by the state machine, so 天网 hears it through the
normal callback. Finished rows are stored as they ended, as history: no callbacks (天网 heard about
them from the legacy bridge). A task_id already here is skipped, so a second run imports nothing twice.
"""
from __future__ import annotations

import logging
import sqlite3
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterator

from marshmallow import ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app import runtime
from app.api.errors import flatten
from app.domain import states
from app.domain.legacy import NOTES, OVERDUE_ERROR, REQUIRED_COLUMNS, Mapped, Refused, map_row
from app.domain.triggers import SPECIFIED_CUSTOMER_REPLY
from app.infra.db import session_scope
from app.infra.timeutil import iso, utcnow
from app.models import Task, TaskEvent
from app.schemas import TaskReceiveSchema
from app.services import registration
from app.services.intake import body_hash
from app.state import tasks as task_states

log = logging.getLogger(__name__)
BATCH = 500
IMPORTED = "imported"  # the history line every imported task starts with
EARLIER, VIA_API, MEANWHILE = ("imported earlier", "received through the API",
                               "received through the API during this import")


class LegacyFileError(Exception):
    """The file is not a legacy bridge task database (missing, not SQLite, no usable `tasks` table)."""


@dataclass(frozen=True)
class Line:
    rowid: int
    task_id: str | None
    reason: str


@dataclass
class Report:
    source: str
    dry_run: bool
    total: int = 0
    read: int = 0
    imported: Counter = field(default_factory=Counter)  # by status here (history by its legacy status)
    overdue: int = 0  # waiting rows past their deadline, imported as `timeout` (天网 is told)
    skipped: list[Line] = field(default_factory=list)
    refused: list[Line] = field(default_factory=list)
    notes: Counter = field(default_factory=Counter)
    seconds: float = 0.0


def run(path: str | Path, *, dry_run: bool = False, zone: str | None = None, now: datetime | None = None,
        batch: int = BATCH, progress: Callable[[int, int], None] | None = None) -> Report:
    """Import every row of the legacy database at `path`; raises LegacyFileError.

    `zone` reads the legacy times that have no offset (default APP_TIMEZONE); `now` (naive UTC)
    judges deadlines. With `dry_run` everything is mapped, validated and checked against the
    database, and nothing is written.
    """
    settings = runtime.current().settings
    zone = zone or settings.app_timezone
    now = now or utcnow()
    started = time.monotonic()
    report = Report(source=str(path), dry_run=dry_run)
    redis_up = True
    with legacy_rows(path, batch) as (total, chunks):
        report.total = total
        for chunk in chunks:
            for task in _import_chunk(chunk, report, zone=zone, now=now, dry_run=dry_run):
                if dry_run:
                    status = states.WAITING
                elif redis_up:
                    # intake's own activation; once Redis fails the rest stay pending for the reconciler
                    status = registration.activate(task.task_id, registration.spec_of(task))
                    redis_up = status != states.PENDING
                else:
                    status = states.PENDING
                report.imported[status] += 1
            if progress is not None:
                progress(report.read, total)
    report.seconds = time.monotonic() - started
    log.info("legacy import of %s: %d read, %s, %d skipped, %d refused%s", path, report.read,
             dict(report.imported), len(report.skipped), len(report.refused), " (dry run)" if dry_run else "",
             extra={"event": "legacy_import"})
    return report


def _import_chunk(rows: list[dict], report: Report, *, zone: str, now: datetime,
                  dry_run: bool) -> list[Task | None]:
    """Map, check and store one chunk; returns the stored tasks that are to wait, to be activated
    (a dry run stores nothing: one None for each)."""
    mapped: list[tuple[int, Mapped]] = []
    for row in rows:
        report.read += 1
        rowid = row.pop("_legacy_rowid")
        try:
            item = map_row(row, zone=zone, now=now)
            if item.waits:
                _validate(item.body)
        except Refused as exc:
            report.refused.append(Line(rowid, _task_id_of(row), str(exc)))
            continue
        mapped.append((rowid, item))
    present = _present([item.task_id for _, item in mapped])
    fresh = []
    for rowid, item in mapped:
        if item.task_id in present:
            report.skipped.append(Line(rowid, item.task_id, present[item.task_id]))
        else:
            fresh.append((rowid, item))
    if dry_run:
        stored = [(item, None) for _, item in fresh]
    else:
        stored = _store_all(fresh, report, now=now, source=Path(report.source).name)
    waiting = []
    for item, task in stored:
        report.notes.update(item.notes)
        if item.waits:
            waiting.append(task)
        else:
            report.imported[item.status] += 1
            report.overdue += item.overdue
    return waiting


def _validate(body: dict) -> None:
    """The intake API's own validation, for a row that is to fire here."""
    try:
        TaskReceiveSchema().load(body)
    except ValidationError as exc:
        raise Refused("; ".join(f"{path}: {', '.join(reasons)}"
                                for path, reasons in flatten(exc.messages).items())) from None


def _present(task_ids: list[str]) -> dict[str, str]:
    """Which of `task_ids` are here already, and how they came (an earlier import, or the API)."""
    if not task_ids:
        return {}
    with session_scope() as session:
        found = set(session.scalars(select(Task.task_id).where(Task.task_id.in_(task_ids))))
        imported = set(session.scalars(select(TaskEvent.task_id).distinct().where(
            TaskEvent.task_id.in_(found), TaskEvent.kind == IMPORTED))) if found else set()
    return {task_id: EARLIER if task_id in imported else VIA_API for task_id in found}


def _store_all(items, report: Report, *, now: datetime, source: str) -> list[tuple[Mapped, Task | None]]:
    """One transaction for the chunk; if a task_id was taken meanwhile (天网 posted it while we
    ran), the chunk is stored row by row and that row is skipped."""
    try:
        return _store(items, now=now, source=source)
    except IntegrityError:
        stored = []
        for rowid, item in items:
            try:
                stored += _store([(rowid, item)], now=now, source=source)
            except IntegrityError:
                report.skipped.append(Line(rowid, item.task_id, MEANWHILE))
        return stored


def _store(items, *, now: datetime, source: str) -> list[tuple[Mapped, Task]]:
    settings = runtime.current().settings
    stored = [(item, _task(item, now)) for _, item in items]
    with session_scope() as session:
        session.add_all(task for _, task in stored)
        session.flush()  # the tasks first: their history rows point at them
        for rowid, item in items:
            task_states.record(session, item.task_id, IMPORTED, {
                "from": source, "legacy_rowid": rowid, "legacy_status": item.legacy_status}, now=now)
            if item.overdue:
                task_states.move(session, item.task_id, states.TIMEOUT, error=OVERDUE_ERROR,
                                 detail={"expired_at": iso(item.expires_at, settings.app_timezone)}, now=now)
    return stored


def _task(item: Mapped, now: datetime) -> Task:
    """The row as intake stores a task (same derived columns), with the legacy times and outcome.

    A task that is to wait, or whose deadline passed, starts `pending` like a received one; a
    finished one is stored with its legacy status.
    """
    body = item.body
    trigger, action, customer = body["trigger"], body["action"], body.get("customer") or {}
    specified = trigger["type"] == SPECIFIED_CUSTOMER_REPLY
    task = Task(
        task_id=item.task_id, type=body["type"],
        customer_id=customer.get("id") or trigger.get("customer_id"),
        customer_name=customer.get("name") or trigger.get("customer_name"),
        specified_customer_id=trigger.get("customer_id") if specified else None,
        specified_customer_name=trigger.get("customer_name") if specified else None,
        trigger_type=trigger["type"], trigger_keyword=trigger.get("keyword"),
        trigger_keywords=trigger.get("keywords"), action_type=action["type"],
        action_file_url=action.get("file_url"), action_message=action.get("message"),
        priority=body["priority"], timeout_hours=float(body["timeout_hours"]),
        status=states.PENDING if item.legacy_status in ("pending", "waiting") else item.status,
        retry_count=item.retry_count, max_retry=body["max_retry"], created_at=item.created_at,
        created_by=body.get("created_by"), acc_id=None, trigger=trigger, action=action, raw=body,
        body_hash=body_hash(body), expires_at=item.expires_at, due_at=None,
        triggered_at=item.triggered_at, completed_at=item.completed_at, error_message=item.error_message,
        updated_at=now,
    )
    if item.result is not None:  # else SQL NULL, as intake leaves it (not JSON null)
        task.result = item.result
    return task


def _task_id_of(row: dict) -> str | None:
    value = row.get("task_id")
    return None if value is None else str(value)


# -- reading the legacy file ------------------------------------------------------------------------

@contextmanager
def legacy_rows(path: str | Path, batch: int = BATCH) -> Iterator[tuple[int, Iterator[list[dict]]]]:
    """(row count, chunks of rows as dicts in rowid order, each with `_legacy_rowid`), read-only."""
    file = Path(path)
    if not file.is_file():
        raise LegacyFileError(f"{path}: no such file")
    conn = sqlite3.connect(f"{file.resolve().as_uri()}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        try:
            columns = {row["name"] for row in conn.execute("PRAGMA table_info(tasks)")}
        except sqlite3.DatabaseError as exc:
            raise LegacyFileError(f"{path}: not a SQLite database ({exc})") from None
        if not columns:
            raise LegacyFileError(f"{path}: has no `tasks` table")
        missing = [name for name in REQUIRED_COLUMNS if name not in columns]
        if missing:
            raise LegacyFileError(f"{path}: the `tasks` table lacks the legacy column(s) {', '.join(missing)}")
        total = conn.execute("SELECT count(*) FROM tasks").fetchone()[0]
        cursor = conn.execute("SELECT rowid AS _legacy_rowid, * FROM tasks ORDER BY rowid")

        def chunks() -> Iterator[list[dict]]:
            while rows := cursor.fetchmany(batch):
                yield [dict(row) for row in rows]

        yield total, chunks()
    finally:
        conn.close()


# -- the report ---------------------------------------------------------------------------------------

def format_report(report: Report) -> str:
    verb = "would import" if report.dry_run else "imported"
    lines = [f"legacy import of {report.source}: {report.read:,} of {report.total:,} rows read in "
             f"{report.seconds:.1f} s" + (" (dry run: nothing was written)" if report.dry_run else "")]
    total = sum(report.imported.values())
    lines.append(f"{verb} {total:,}")
    meaning = {states.WAITING: "fire here on the next matching message",
               states.PENDING: "stored; Redis did not answer, so the reconciler registers them when it is back"}
    for status in sorted(report.imported, key=lambda s: states.STATUSES.index(s)):
        what = meaning.get(status, "history, as they ended in the legacy bridge")
        if status == states.TIMEOUT and report.overdue:
            what = (f"{report.imported[status] - report.overdue:,} history; {report.overdue:,} were still "
                    "waiting past their deadline (created_at + timeout_hours): 天网 is told `timeout`")
        lines.append(f"  {status:<10}{report.imported[status]:>8,}  {what}")
    if report.skipped:
        lines.append(f"skipped {len(report.skipped):,} (their task_id is here already)")
        for reason, count in Counter(line.reason for line in report.skipped).most_common():
            lines.append(f"  {count:>8,}  {reason}")
    if report.refused:
        lines.append(f"refused {len(report.refused):,} (nothing written for them; fix them and run again):")
        lines += [f"  row {line.rowid} {line.task_id or '(no task_id)'}: {line.reason}" for line in report.refused]
    for note, count in report.notes.items():
        lines.append(f"note: {count:,} {NOTES[note]}")
    return "\n".join(lines)
