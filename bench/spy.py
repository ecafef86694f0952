"""py-spy sampling of the processes under test (`python -m bench.run --profile`): raw (collapsed) stacks
to bench/results/profiles/, summarised as the busiest frames. Sampling costs CPU, so profiled runs are
for diagnosis, not for the figures."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from devkit import processes

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "bench" / "results" / "profiles"


class Spy:
    def __init__(self, log_dir: Path, on_close):
        self.log_dir, self.on_close = log_dir, on_close
        self._runs: list = []

    def record(self, label: str, procs: dict, seconds: float) -> None:
        """Sample each Proc (and its children) for `seconds`, from now, without waiting."""
        spy = Path(sys.executable).parent / "py-spy"
        FOLDER.mkdir(parents=True, exist_ok=True)
        for name, proc in procs.items():
            out = FOLDER / f"{label}-{name}.txt"
            args = [str(spy), "record", "--pid", str(proc.p.pid), "--subprocesses", "--rate", "200",
                    "--duration", str(max(1, int(seconds))), "--format", "raw", "-o", str(out), "--nonblocking"]
            spy_proc = processes.Proc(f"py-spy-{label}-{name}", args, dict(os.environ), self.log_dir)
            limit = seconds + 30

            def finish(p=spy_proc, limit=limit):  # let it write its file; stop it only if it hangs
                try:
                    p.p.wait(limit)
                except Exception:
                    pass
                p.stop()
            self.on_close(finish)
            self._runs.append((f"{label}-{name}", spy_proc, out))

    def collect(self) -> dict:
        done = {}
        for key, proc, out in self._runs:
            try:
                proc.p.wait(60)
            except Exception:
                pass
            if out.exists():
                done[key] = {"file": str(out), "top": summarize(out)}
        self._runs.clear()
        return done


def summarize(path: Path, top: int = 25) -> list[tuple[str, float, float]]:
    """(function, inclusive %, self %) of the busiest frames in a py-spy raw (collapsed) file."""
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = []
        for frame in stack.split(";"):
            name, _, where = frame.partition(" (")
            where = where.rsplit(":", 1)[0].replace(str(ROOT) + "/", "")
            where = where.split("site-packages/")[-1]
            frames.append(f"{name} ({where})")
        for f in set(frames[1:]):  # skip the process/thread root
            inclusive[f] = inclusive.get(f, 0) + n
        if frames:
            own[frames[-1]] = own.get(frames[-1], 0) + n
    if not total:
        return []
    rows = sorted(inclusive.items(), key=lambda kv: -kv[1])[:top]
    return [(f, round(100 * c / total, 1), round(100 * own.get(f, 0) / total, 1)) for f, c in rows]
