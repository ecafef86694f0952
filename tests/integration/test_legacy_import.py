"""`manage.py import-legacy`: a legacy-shaped database built here, imported into SQLite and PostgreSQL.

Every kind of row, refusals, a second run, a dry run, a task_id 天网 posts during the import, Redis
down, and the command itself. That imported tasks really fire is tests/integration/test_legacy_e2e.py.
"""
from __future__ import annotations

import dataclasses
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from app import runtime
from app.infra.db import session_scope
from app.models import CallbackOutbox, Task, TaskEvent
from app.services import legacy_import, registration
from app.services.legacy_import import EARLIER, MEANWHILE, VIA_API, LegacyFileError
from devkit import processes, stores
from tests import legacy_db
from tests.api.helpers import assert_nothing_written, counts, index_snapshot
from tests.legacy_db import row

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime.now(SHANGHAI)


def wall(hours_ago: float) -> str:
    """A Shanghai wall-clock time as the legacy bridge wrote it (datetime.now().isoformat())."""
    return (NOW - timedelta(hours=hours_ago)).replace(tzinfo=None).isoformat()


DONE = {"triggered_at": wall(30), "completed_at": wall(29.9)}
# Every kind of row the legacy table holds: (row, what becomes of it). Row ids follow this order.
ROWS = [
    (row("L_REPLY", customer_id="c_reply", customer_name="小明"), "waiting"),
    (row("L_SPECIFIED", trigger_type="specified_customer_reply", specified_customer_id="c_spec",
         specified_customer_name="小明", customer_id="c_spec", priority="urgent"), "waiting"),
    (row("L_KEYWORDS", trigger_type="customer_keyword", trigger_keyword=None,
         trigger_keywords='["可以", "行"]'), "waiting"),
    (row("L_PAYMENT", trigger_type="customer_payment", trigger_keyword=None, customer_id="c_pay",
         status="waiting"), "waiting"),
    (row("L_FILE", action_type="send_file", action_file_url="https://example.com/a.zip", customer_id="c_file",
         timeout_hours=48), "waiting"),
    (row("L_LINK", action_type="send_link", action_message="教程 https://example.com/t", customer_id="c_l"),
     "waiting"),
    (row("L_DONE", status="completed", retry_count=1, result='{"msg_id": "m-9"}', created_at=wall(31), **DONE),
     "completed"),
    (row("L_FAILED", status="failed", retry_count=3, error_message="轻简 send timed out", created_at=wall(31),
         **DONE), "failed"),
    (row("L_CANCELLED", status="cancelled", error_message="客户取消订单", created_at=wall(31)), "cancelled"),
    (row("L_TIMEOUT", status="timeout", created_at=wall(50)), "timeout"),
    (row("L_TIMER_DONE", trigger_type="time_reach", trigger_keyword=None, status="completed",
         created_at=wall(31), **DONE), "completed"),
    (row("L_OVERDUE", created_at=wall(30), timeout_hours=24, customer_id="c_late"), "timeout"),
    # refused
    (row("L_RUNNING", status="running", triggered_at=wall(0.1)), "running in the legacy bridge"),
    (row("L_TIMER", trigger_type="time_reach", trigger_keyword=None), "no column for its time"),
    (row("L_EVENT", trigger_type="custom_event", trigger_keyword=None), "no column for its event name"),
    (row("L_BADJSON", trigger_type="customer_keyword", trigger_keywords="可以,行"), "is not a JSON array"),
    (row("L_FTP", action_type="send_file", action_file_url="ftp://example.com/a.zip"),
     "action.file_url: must be an http or https URL"),
    (row("L_NOKEYWORD", trigger_keyword=None), "trigger.keyword: required for customer_reply"),
    (row("L_DIFFERS", trigger_type="specified_customer_reply", specified_customer_id="c_x", customer_id="c_y"),
     "customer.id: differs from trigger.customer_id"),
    (row("L_PAUSED", status="paused"), "'paused' is not a legacy status"),
    (row("L_FIRED", triggered_at=wall(0.5)), "may have fired in the legacy bridge"),
    (row("bad id", status="completed"), "is not 1-128 characters"),
]
IMPORTED = {r["task_id"]: outcome for r, outcome in ROWS if outcome in (
    "waiting", "completed", "failed", "cancelled", "timeout")}
REFUSED = {r["task_id"]: outcome for r, outcome in ROWS if r["task_id"] not in IMPORTED}


@pytest.fixture
def legacy(tmp_path) -> Path:
    return legacy_db.create(tmp_path / "tasks.db", [r for r, _ in ROWS])


def tasks() -> dict[str, Task]:
    with session_scope() as session:
        return {t.task_id: t for t in session.scalars(select(Task))}


def by_status(report) -> dict[str, int]:
    return dict(report.imported)


def test_every_kind_of_row_is_imported_or_refused_with_its_reason(app, rdb, legacy):
    report = legacy_import.run(legacy)
    assert report.total == report.read == len(ROWS)
    assert by_status(report) == {"waiting": 6, "completed": 2, "failed": 1, "cancelled": 1, "timeout": 2}
    assert report.overdue == 1 and report.skipped == []
    assert {line.task_id: line.reason for line in report.refused}.keys() == REFUSED.keys()
    for line in report.refused:
        assert REFUSED[line.task_id] in line.reason, line
        assert line.rowid == [r["task_id"] for r, _ in ROWS].index(line.task_id) + 1  # the legacy rowid
    stored = tasks()
    assert {task_id: t.status for task_id, t in stored.items()} == IMPORTED
    # Waiting tasks are registered in the index (so they fire), nothing else is.
    registered = {task_id for chunk in runtime.current().registry.registered_ids() for task_id in chunk}
    assert registered == {task_id for task_id, outcome in IMPORTED.items() if outcome == "waiting"}
    # History keeps the legacy times, error and result; nobody is told about it again.
    done = stored["L_DONE"]
    assert done.result == {"msg_id": "m-9"} and done.retry_count == 1
    assert done.completed_at - done.triggered_at == timedelta(minutes=6)
    assert stored["L_FAILED"].error_message == "轻简 send timed out" and stored["L_FAILED"].retry_count == 3
    assert stored["L_CANCELLED"].error_message == "客户取消订单"
    # Times: the legacy wall clock read in Shanghai; the deadline is created_at + timeout_hours.
    file = stored["L_FILE"]
    assert file.expires_at - file.created_at == timedelta(hours=48)
    written = next(r for r, _ in ROWS if r["task_id"] == "L_FILE")["created_at"]
    assert file.created_at == datetime.fromisoformat(written).replace(tzinfo=SHANGHAI).astimezone(
        ZoneInfo("UTC")).replace(tzinfo=None)
    # The one waiting past its deadline became a timeout through the state machine: 天网 is told.
    with session_scope() as session:
        outbox = [(o.task_id, o.status) for o in session.scalars(select(CallbackOutbox))]
        history = [(e.task_id, e.kind, e.from_status, e.to_status) for e in session.scalars(
            select(TaskEvent).where(TaskEvent.task_id == "L_OVERDUE").order_by(TaskEvent.id))]
    assert outbox == [("L_OVERDUE", "timeout")]
    assert history == [("L_OVERDUE", "imported", None, None), ("L_OVERDUE", "status", "pending", "timeout")]
    assert "deadline passed" in stored["L_OVERDUE"].error_message
    text = legacy_import.format_report(report)
    for task_id in REFUSED:
        assert f" {task_id}: " in text
    assert "1 were still waiting past their deadline" in text


def test_a_waiting_row_is_stored_as_intake_stores_the_same_body(app, client, legacy):
    legacy_import.run(legacy)
    imported = tasks()["L_SPECIFIED"]
    body = {**imported.raw, "task_id": "API_TWIN"}
    assert client.post("/api/task/receive", json=body).status_code == 200
    twin = tasks()["API_TWIN"]
    same = ("type", "customer_id", "customer_name", "specified_customer_id", "specified_customer_name",
            "trigger_type", "trigger_keyword", "trigger_keywords", "action_type", "action_file_url",
            "action_message", "priority", "timeout_hours", "status", "retry_count", "max_retry", "created_by",
            "acc_id", "trigger", "action", "due_at", "triggered_at", "completed_at", "error_message", "result")
    assert {c: getattr(imported, c) for c in same} == {c: getattr(twin, c) for c in same}
    assert registration.spec_of(imported) | {"id": 0, "ts": 0} == registration.spec_of(twin) | {"id": 0, "ts": 0}


def test_a_second_run_imports_nothing_twice(app, rdb, legacy):
    first = legacy_import.run(legacy)
    before = (counts(), index_snapshot(rdb))
    second = legacy_import.run(legacy)
    assert by_status(second) == {} and second.overdue == 0
    assert {line.task_id: line.reason for line in second.skipped} == {t: EARLIER for t in IMPORTED}
    assert [line.task_id for line in second.refused] == [line.task_id for line in first.refused]
    assert (counts(), index_snapshot(rdb)) == before
    assert "imported earlier" in legacy_import.format_report(second)


def test_a_task_received_through_the_api_is_skipped_as_such(app, client, legacy):
    posted = {"task_id": "L_REPLY", "type": "from_tianwang", "trigger": {"type": "customer_reply", "keyword": "嗯"},
              "action": {"type": "send_message", "message": "新版"}}
    assert client.post("/api/task/receive", json=posted).status_code == 200
    report = legacy_import.run(legacy)
    assert [(line.task_id, line.reason) for line in report.skipped] == [("L_REPLY", VIA_API)]
    assert tasks()["L_REPLY"].raw == posted  # the API's task, untouched


def test_a_task_id_posted_while_the_import_runs_is_skipped_not_overwritten(app, client, legacy, monkeypatch):
    """天网 posts L_KEYWORDS between the import's look-up and its write: the chunk's transaction fails
    on the primary key, the chunk is stored row by row, and only that row is skipped."""
    posted = {"task_id": "L_KEYWORDS", "type": "from_tianwang",
              "trigger": {"type": "customer_reply", "keyword": "嗯"}, "action": {"type": "send_message", "message": "新版"}}
    look_up = legacy_import._present

    def look_up_then_tianwang_posts(task_ids):
        found = look_up(task_ids)
        if "L_KEYWORDS" in task_ids:
            assert client.post("/api/task/receive", json=posted).status_code == 200
        return found

    monkeypatch.setattr(legacy_import, "_present", look_up_then_tianwang_posts)
    report = legacy_import.run(legacy)
    assert [(line.task_id, line.reason) for line in report.skipped] == [("L_KEYWORDS", MEANWHILE)]
    stored = tasks()
    assert stored["L_KEYWORDS"].raw == posted
    assert {t for t in stored if t != "L_KEYWORDS"} == set(IMPORTED) - {"L_KEYWORDS"}
    assert sum(report.imported.values()) == len(IMPORTED) - 1


def test_dry_run_writes_nothing_and_reports_what_a_run_would_do(app, rdb, legacy):
    dry = legacy_import.run(legacy, dry_run=True)
    assert_nothing_written(rdb)
    real = legacy_import.run(legacy)
    assert (by_status(dry), dry.overdue, dry.refused, dry.notes) == (by_status(real), real.overdue, real.refused,
                                                                     real.notes)
    assert "dry run: nothing was written" in legacy_import.format_report(dry)
    assert "would import 12" in legacy_import.format_report(dry)


def test_seed_001s_table_without_specified_customer_columns(app, tmp_path):
    path = legacy_db.create(tmp_path / "tasks.db", [row(
        "L_001", trigger_type="specified_customer_reply", customer_id="customer_123", customer_name="小明")],
        schema=legacy_db.SCHEMA_001)
    report = legacy_import.run(path)
    assert by_status(report) == {"waiting": 1}
    stored = tasks()["L_001"]
    assert (stored.specified_customer_id, stored.trigger["customer_id"]) == ("customer_123", "customer_123")


def test_progress_is_reported_chunk_by_chunk(app, tmp_path):
    path = legacy_db.create(tmp_path / "tasks.db", [row(f"L_{i}", status="completed") for i in range(25)])
    seen = []
    legacy_import.run(path, batch=10, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(10, 25), (20, 25), (25, 25)]


def test_with_redis_down_the_tasks_stay_pending_until_the_reconciler_registers_them(app, rdb, tmp_path):
    path = legacy_db.create(tmp_path / "tasks.db", [row(f"L_{i}", customer_id=f"c_{i}") for i in range(3)])
    settings = app.config["SETTINGS"]
    dead = stores.free_port()
    runtime.configure(dataclasses.replace(settings, redis_url=f"redis://127.0.0.1:{dead}/0"))
    report = legacy_import.run(path)
    assert by_status(report) == {"pending": 3}
    assert "the reconciler registers them" in legacy_import.format_report(report)
    runtime.configure(settings)
    assert registration.reconcile()["activated"] == 3
    assert {t.status for t in tasks().values()} == {"waiting"}


@pytest.mark.parametrize("make, message", [
    (lambda p: p, "no such file"),
    (lambda p: (p.write_bytes(b"not a database at all" * 100), p)[1], "not a SQLite database"),
    (lambda p: legacy_db.create(p, [], schema="CREATE TABLE other (x)"), "has no `tasks` table"),
    (lambda p: legacy_db.create(p, [], schema="CREATE TABLE tasks (task_id TEXT, type TEXT)"),
     "lacks the legacy column(s) status, trigger_type, action_type, created_at"),
])
def test_a_file_that_is_not_a_legacy_database_is_refused_whole(app, rdb, tmp_path, make, message):
    path = make(tmp_path / "tasks.db")
    with pytest.raises(LegacyFileError, match=message.replace("(", r"\(").replace(")", r"\)")):
        legacy_import.run(path)
    assert_nothing_written(rdb)


# -- the command ----------------------------------------------------------------------------------------

def manage(args: list[str], db_url: str, redis_url: str, cwd: Path) -> subprocess.CompletedProcess:
    env = processes.base_env(db_url, redis_url)
    env.pop("TIANWANG_API_KEYS")  # the import needs none
    return subprocess.run([sys.executable, str(stores.ROOT / "manage.py"), "import-legacy", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=120)


def test_the_command_dry_run_then_run_then_run_again(app, rdb, db_url, legacy):
    redis_url = app.config["SETTINGS"].redis_url
    cwd = legacy.parent
    dry = manage(["tasks.db", "--dry-run"], db_url, redis_url, cwd)  # a path relative to where it is run
    assert dry.returncode == 1, dry.stderr  # refused rows: exit 1
    assert "would import 12" in dry.stdout and "dry run: nothing was written" in dry.stdout
    assert f"{len(ROWS)} / {len(ROWS)} rows" in dry.stderr  # the progress line
    assert_nothing_written(rdb)
    done = manage([str(legacy)], db_url, redis_url, cwd)
    assert done.returncode == 1 and "imported 12" in done.stdout
    for task_id in REFUSED:
        assert f" {task_id}: " in done.stdout
    assert len(tasks()) == len(IMPORTED)
    again = manage([str(legacy)], db_url, redis_url, cwd)
    assert "imported 0" in again.stdout and f"{len(IMPORTED)}  imported earlier" in again.stdout


def test_the_command_exits_0_when_every_row_was_imported(app, db_url, tmp_path):
    path = legacy_db.create(tmp_path / "tasks.db", [row("L_OK", customer_id="c_ok")])
    done = manage([str(path)], db_url, app.config["SETTINGS"].redis_url, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "waiting          1" in done.stdout


@pytest.mark.parametrize("args, message", [(["missing.db"], "no such file"),
                                           (["x.db", "--timezone", "Mars/Base"], "is not a time zone")])
def test_the_command_exits_2_on_a_unusable_argument(app, db_url, tmp_path, args, message):
    done = manage(args, db_url, app.config["SETTINGS"].redis_url, tmp_path)
    assert done.returncode == 2 and message in done.stderr, done.stderr
