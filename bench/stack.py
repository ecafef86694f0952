"""The system under test as the Procfile starts it.

Every line of the Procfile but `release` (a fresh benchmark database is migrated in-process), and `web`
and `flower` unless a benchmark asks for them, runs as honcho runs it: through /bin/sh (so
`${WORKER_CONCURRENCY:-4}` takes the environment's value or the Procfile's default), its program taken
from the virtualenv, in the benchmark's environment. A new line in the Procfile (a sweeper, a callbacks
worker) is started with no edit here. A benchmark may add arguments to the Celery worker lines
(`-I bench.noop_tasks` for the references), start a line more than once, and pin an instance to CPUs
(`taskset -c`); each process is named after its Procfile line (`worker`, `worker2`, `beat`, ...).
"""
from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

from devkit import processes
from scripts import procfile

BIN = Path(sys.executable).parent
NOT_STARTED = ("release", "web", "flower")
_VAR = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}|\$(\w+)")


def lines() -> dict[str, str]:
    """{name: command} of the Procfile, in its order."""
    return procfile.read()


def expand(command: str, env: dict) -> str:
    """The command with `${VAR:-default}` and `$VAR` filled in from `env`, as the shell would."""
    return _VAR.sub(lambda m: env.get(m[1] or m[3]) or (m[2] or ""), command)


def is_worker(command: str) -> bool:
    words = command.split()
    return words[:1] == ["celery"] and "worker" in words


def _option(words: list[str], *names: str) -> str | None:
    for i, word in enumerate(words):
        for name in names:
            if word == name and i + 1 < len(words):
                return words[i + 1]
            if name.startswith("--") and word.startswith(name + "="):
                return word.split("=", 1)[1]
    return None


def worker_queues(command: str, env: dict) -> set[str] | None:
    """The queues a worker line consumes (None: Celery's default, every queue of the app)."""
    value = _option(shlex.split(expand(command, env)), "-Q", "--queues")
    return set(value.split(",")) if value else None


def worker_concurrency(command: str, env: dict) -> int | None:
    value = _option(shlex.split(expand(command, env)), "-c", "--concurrency")
    return int(value) if value else None


def describe(env: dict) -> dict:
    """What the Procfile's lines amount to in `env` (for the results' settings)."""
    return {name: expand(command, env) for name, command in lines().items()}


def start_line(system: processes.System, name: str, command: str, *, extra: str = "", copy: int = 1,
               cpus: str | None = None, env: dict | None = None) -> processes.Proc:
    """Start one Procfile line (its `copy`-th instance) in `system`'s environment; stopped with `system`."""
    line = procfile.in_venv(command, BIN)
    label = name if copy == 1 else f"{name}{copy}"
    if is_worker(command):
        line += f" {extra}" if extra else ""
        if copy > 1:  # a second instance of a line needs a node name of its own
            line += f" -n {label}@%h"
    args = ["/bin/sh", "-c", f"exec {line}"]
    if cpus:
        args = ["taskset", "-c", cpus, *args]  # taskset execs: the process keeps its pid
    proc = processes.Proc(label, args, {**system.env, **(env or {}), "BENCH_ROLE": label}, system.log_dir)
    system.procs.append(proc)
    return proc


def start(system: processes.System, *, also: tuple[str, ...] = (), without: tuple[str, ...] = (),
          only_workers: bool = False, worker_extra: str = "", for_queue: str | None = None,
          pinned: dict[str, list[str]] | None = None, env: dict | None = None) -> dict[str, processes.Proc]:
    """Start the Procfile's lines (but NOT_STARTED and `without`, plus `also`); `only_workers`: just the
    Celery worker lines, and with `for_queue` only those consuming that queue; `pinned`: line name -> CPU
    sets, one instance of that line per set (`taskset -c`). Returns process name -> Proc."""
    started = {}
    for name, command in lines().items():
        if name in without or (name in NOT_STARTED and name not in also):
            continue
        if only_workers:
            if not is_worker(command):
                continue
            queues = worker_queues(command, {**system.env, **(env or {})})
            if for_queue and queues is not None and for_queue not in queues:
                continue
        for copy, cpus in enumerate((pinned or {}).get(name) or [None], 1):
            proc = start_line(system, name, command, extra=worker_extra, copy=copy, cpus=cpus, env=env)
            started[proc.name] = proc
    if not started:
        raise RuntimeError("the Procfile has no line to start here")
    return started


def processes_for(queue: str, env: dict) -> int:
    """How many pool processes the Procfile's worker lines give `queue` (Celery's default: the CPUs)."""
    import os

    total = 0
    for command in lines().values():
        if is_worker(command) and (queue in (worker_queues(command, env) or {queue})):
            total += worker_concurrency(command, env) or os.cpu_count() or 1
    return total
