"""Profiling mode: CPU, SQL statements and Redis round trips per stage, in every process of the system
under test, with no change to a command line.

The profile benchmark starts the Procfile's processes with `bench/probe_site` first on PYTHONPATH; its
`sitecustomize.py` calls `install()` when BENCH_PROBE_DIR is set. What is counted:

- the stage: the name of the Celery task running (task_prerun -> task_postrun), else the process's role
  (BENCH_ROLE, its Procfile name: `listener`, `web`, or a worker's own Celery work between tasks);
- CPU: `time.process_time()` from task_prerun to task_postrun (a prefork child runs one task at a time);
  a process's other CPU (Celery reading, acking, sending events) is its /proc total minus its tasks';
- SQL: SQLAlchemy's `before_cursor_execute` (statements) and `commit` (transactions), on every Engine;
- Redis: each write of a command or a pipeline (redis-py's `send_packed_command`), i.e. a round trip;
  those issued from kombu/celery code are the broker's, the rest the app's.

Each process writes its totals to BENCH_PROBE_DIR/<role>-<pid>.json five times a second (a daemon
thread, started again in each forked child, whose counts start at zero). `read(folder)` sums them by
(role, stage); `delta(before, after)` is what happened in between. Counting costs CPU: profiled runs
give the breakdown, not the headline figures.
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

FIELDS = ("runs", "cpu_s", "sql_statements", "sql_transactions", "redis_app", "redis_broker")
_lock = threading.Lock()
_totals: dict[str, list[float]] = {}
_stage = threading.local()
_task_started: dict[str, float] = {}
_role = "python"
_folder: Path | None = None


def _add(index: int, amount: float = 1) -> None:
    stage = getattr(_stage, "name", None) or _role
    with _lock:
        row = _totals.setdefault(stage, [0.0] * len(FIELDS))
        row[index] += amount


def _from_broker() -> bool:
    """Whether the innermost caller outside redis-py is kombu or celery (a broker round trip)."""
    frame = sys._getframe(2)
    while frame is not None:
        name = frame.f_code.co_filename
        if f"{os.sep}redis{os.sep}" not in name:
            return f"{os.sep}kombu{os.sep}" in name or f"{os.sep}celery{os.sep}" in name
        frame = frame.f_back
    return False


def _patch_redis() -> None:
    from redis.connection import AbstractConnection

    original = AbstractConnection.send_packed_command

    def send_packed_command(self, command, check_health=True):
        _add(5 if _from_broker() else 4)
        return original(self, command, check_health)

    AbstractConnection.send_packed_command = send_packed_command


def _patch_sqlalchemy() -> None:
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    event.listen(Engine, "before_cursor_execute", lambda *a, **k: _add(2))
    event.listen(Engine, "commit", lambda *a, **k: _add(3))


def _patch_celery() -> None:
    from celery import signals

    @signals.task_prerun.connect(weak=False)
    def prerun(task_id=None, task=None, **_):
        _stage.name = task.name
        _task_started[task_id] = time.process_time()

    @signals.task_postrun.connect(weak=False)
    def postrun(task_id=None, task=None, **_):
        began = _task_started.pop(task_id, None)
        if began is not None:
            _add(1, time.process_time() - began)
        _add(0)
        _stage.name = None


def _write() -> None:
    with _lock:
        data = {"pid": os.getpid(), "role": _role, "stages": {k: list(v) for k, v in _totals.items()}}
    path = _folder / f"{_role}-{os.getpid()}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def _writer() -> None:
    while True:
        time.sleep(0.2)
        try:
            _write()
        except OSError:
            pass


def _start_writer() -> None:
    threading.Thread(target=_writer, name="bench-probe", daemon=True).start()


def _after_fork() -> None:
    global _lock
    _lock = threading.Lock()
    _totals.clear()
    _task_started.clear()
    _stage.name = None
    _start_writer()


def install() -> None:
    """Count in this process (and its forked children) from now on."""
    global _role, _folder
    _folder = Path(os.environ["BENCH_PROBE_DIR"])
    _folder.mkdir(parents=True, exist_ok=True)
    _role = os.environ.get("BENCH_ROLE", "python")
    _patch_redis()
    _patch_sqlalchemy()
    _patch_celery()
    os.register_at_fork(after_in_child=_after_fork)
    _start_writer()


# -- reading (the benchmark's side) -----------------------------------------------------------------

def read(folder: Path) -> dict[str, dict]:
    """{file name: {"role", "stages": {stage: [FIELDS...]}}} of every process that wrote so far."""
    out = {}
    for path in folder.glob("*.json"):
        try:
            out[path.name] = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # being replaced right now: the next read has it
    return out


def delta(before: dict, after: dict) -> dict[tuple[str, str], dict[str, float]]:
    """{(role, stage): {field: amount}} counted between two `read`s."""
    out: dict[tuple[str, str], dict[str, float]] = {}
    for name, data in after.items():
        prior = before.get(name, {}).get("stages", {})
        for stage, values in data["stages"].items():
            old = prior.get(stage, [0.0] * len(FIELDS))
            row = out.setdefault((data["role"], stage), dict.fromkeys(FIELDS, 0.0))
            for field, new, was in zip(FIELDS, values, old):
                row[field] += new - was
    return out
