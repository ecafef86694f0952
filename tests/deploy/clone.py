"""A fresh clone of the committed HEAD, and the processes still running from it: what a new user or a
new host starts from, with nothing that a previous run created (no .venv, no var/)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def fresh_clone(dest: Path) -> Path:
    """`git clone` of this repository at its committed HEAD (uncommitted changes are not in it)."""
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], check=True, capture_output=True,
                              text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: a fresh clone needs the repository's history")
    subprocess.run(["git", "clone", "-q", "--no-checkout", str(ROOT), str(dest)], check=True)
    subprocess.run(["git", "-C", str(dest), "checkout", "-q", head], check=True)
    return dest


def processes_under(path: Path) -> dict[int, str]:
    """{pid: command line} of every process whose command line names `path`."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            args = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if str(path) in args:
            found[int(entry.name)] = args
    return found


def kill_all(pids) -> None:
    """Clean up after a failed test, so nothing it started outlives it."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def system_path() -> str:
    """PATH as a new user has it: without the virtualenv this test runs in."""
    venv_bin = Path(sys.executable).parent.resolve()
    entries = os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep)
    return os.pathsep.join(p for p in entries if p and Path(p).resolve() != venv_bin)


def stop_groups(procs, timeout: float = 20) -> None:
    """SIGTERM to each process's group (a supervisor's stop), SIGKILL to what outlives `timeout`."""
    procs = [proc for proc in procs if proc.poll() is None]
    for proc in procs:
        os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
