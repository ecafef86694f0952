"""CPU accounting from /proc (read only): CPU seconds used per process group between two snapshots.

A group is a process started by the benchmark and its children (a Celery worker's pool, gunicorn's
workers): everything in its process group. PostgreSQL counts only the backends serving the benchmark's
database (their process title names it), not the server's shared background processes nor other
databases' backends (other users of the machine). Redis is the whole server (INFO cpu). `machine` is
every CPU's busy time (/proc/stat) and `others` what of it no named process used: on a shared machine,
the competition the figures were measured under.
"""
from __future__ import annotations

import os
from pathlib import Path

import redis

_TICK = os.sysconf("SC_CLK_TCK")


def _proc_stat(pid: int):
    """(comm, process group, CPU seconds) of a process, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm_end = text.rindex(")")
    comm = text[text.index("(") + 1:comm_end]
    rest = text[comm_end + 2:].split()
    # rest[0] is state (field 3); pgrp is field 5, utime 14, stime 15
    return comm, int(rest[2]), (int(rest[11]) + int(rest[12])) / _TICK


def _machine_busy() -> float:
    """CPU seconds all CPUs spent not idle since boot (/proc/stat's first line)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / _TICK  # user nice system idle iowait irq softirq steal


def _serves(pid: int, database: str) -> bool:
    """A PostgreSQL backend's title is `postgres: [<cluster>:] <user> <database> <client> <state>`."""
    try:
        title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    words = title.split()
    if words[:1] != ["postgres:"]:
        return False
    words = words[2:] if len(words) > 1 and words[1].endswith(":") else words[1:]  # Debian names the cluster
    return len(words) >= 2 and words[1] == database


def snapshot(groups: dict[str, int], client: redis.Redis | None = None, pg_database: str | None = None) -> dict:
    """CPU seconds used so far: per process of each group in `groups` (name -> process group id), per
    PostgreSQL backend of `pg_database`, Redis (INFO cpu) and this process (`bench`: load generators
    and fakes). `delta(before, after)` turns two snapshots into seconds per name."""
    by_pgid = {pgid: name for name, pgid in groups.items()}
    pids: dict[int, tuple[str, float]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        stat = _proc_stat(pid)
        if stat is None:
            continue
        comm, pgrp, cpu = stat
        if pgrp in by_pgid:
            pids[pid] = (by_pgid[pgrp], cpu)
        elif comm == "postgres" and pg_database and _serves(pid, pg_database):
            pids[pid] = ("postgres", cpu)
    snap = {"_pids": pids, "_names": list(groups) + (["postgres"] if pg_database else [])}
    if client is not None:
        info = client.info("cpu")
        snap["redis"] = float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    t = os.times()
    snap["bench"] = t.user + t.system
    snap["machine"] = _machine_busy()
    return snap


def delta(before: dict, after: dict) -> dict[str, float]:
    """CPU seconds per name between two snapshots (a process that started in between counts whole)."""
    out = {name: 0.0 for name in after["_names"]}
    for pid, (name, cpu) in after["_pids"].items():
        prior = before["_pids"].get(pid)
        out[name] += cpu - (prior[1] if prior and prior[0] == name else 0.0)
    for key in ("redis", "bench", "machine"):
        if key in after:
            out[key] = after[key] - before.get(key, 0.0)
    out["others"] = max(0.0, out["machine"] - sum(v for k, v in out.items() if k != "machine"))
    return {k: round(v, 3) for k, v in out.items()}


def per_item(seconds: dict[str, float], n: int) -> dict[str, float]:
    """CPU milliseconds per item (fired message, request) of each name."""
    return {k: round(1000 * v / max(1, n), 3) for k, v in seconds.items()}


def utilisation(seconds: dict[str, float], wall: float) -> dict[str, float]:
    """Share of one CPU each name kept busy over `wall` seconds (1.0 = a whole core)."""
    return {k: round(v / max(1e-9, wall), 3) for k, v in seconds.items()}


class Meter:
    """CPU of a benchmark system's processes over a measured stretch: `start()`, then `used()`."""

    def __init__(self, procs: dict, client: redis.Redis | None = None, db_url: str = ""):
        self.groups = {name: proc.p.pid for name, proc in procs.items()}
        self.client = client
        self.pg_database = db_url.rsplit("/", 1)[-1] if db_url.startswith("postgresql") else None
        self._start = None

    def take(self) -> dict:
        return snapshot(self.groups, self.client, self.pg_database)

    def start(self) -> "Meter":
        self._start = self.take()
        return self

    def used(self) -> dict[str, float]:
        """CPU seconds per name since `start()` (may be read more than once)."""
        return delta(self._start, self.take())
