"""scale: fired messages/s with one, then two, worker processes pinned to separate CPU sets.

This process's CPUs are split into two sets, A and B (on 2 CPUs: 0 and 1). Step 1 runs the Procfile's
worker line once, pinned to A (`taskset -c A`); step 2 runs it twice, pinned to A and to B (the second
with a node name of its own). Every other line (beat, the listener, a sweeper, ...), Redis, PostgreSQL
and this process (the producer and the fakes) float over all CPUs. Each step is a fresh system running
the fire benchmark's burst (bench/b_fire.py): N tasks waiting, each customer says 好的 once as fast as one
producer can, fired/s from the first frame in to the last send frame out; the median of the repeats.
The tasks are stored in bulk (bench/seeding.py): this is about firing, not intake.

Beside fired/s, the share of one CPU each process kept busy during the burst (/proc): a worker short of
1.0 per CPU set, while the listener (one thread does its work), Redis (single-threaded) or the
PostgreSQL backends approach 1.0, or the machine's CPUs are all busy, names the next bottleneck
(`machine`: all CPUs' busy time; `others`: the part no process of the system, Redis, PostgreSQL or
this one used: on a shared machine, the competition).
"""
from __future__ import annotations

import os
import shutil
import statistics
import uuid

from bench import scenario, seeding, stack

BUSY = 0.85  # the machine's CPUs this busy (10 ms ticks, a few idle gaps between bursts) count as all busy


def cpu_sets() -> tuple[str, str] | None:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    half = len(cpus) // 2
    return ",".join(map(str, cpus[:half])), ",".join(map(str, cpus[half:]))


def _worker_line() -> str:
    """The Procfile's worker line that takes the `match` queue (the one that fires)."""
    for name, command in stack.lines().items():
        if stack.is_worker(command) and "match" in (stack.worker_queues(command, os.environ) or {"match"}):
            return name
    raise RuntimeError("the Procfile has no worker line for the match queue")


def _step(bench, kind: str, sets: list[str], n: int, reps: int) -> dict:
    name = _worker_line()
    run_id = uuid.uuid4().hex[:6]
    with bench.scope():
        live = scenario.live_system(bench, kind, "scale", {"pinned": {name: sets}})
        warm_up_lost = scenario.warm_up(live, run_id)
        bursts = []
        for rep in range(reps):
            customers = [f"s{run_id}_{rep}_{i}" for i in range(n)]
            seeding.bulk_tasks([scenario.reply_task(f"S_{c}", c) for c in customers], f"{kind}: {n:,} tasks")
            scenario.wait_quiet(live)
            bursts.append(scenario.burst(live, customers, drain=60 + n / 10))
    median = statistics.median(b["per_second"] for b in bursts)
    typical = min(bursts, key=lambda b: abs(b["per_second"] - median))
    shares = typical["cpu_share_of_a_core"]
    workers = {k: v for k, v in shares.items() if k.startswith(name)}
    others = {k: v for k, v in shares.items() if k not in workers and k not in ("machine", "others")}
    return {"workers": len(sets), "cpu_sets": sets, "per_second": median,
            "runs": [b["per_second"] for b in bursts], "missing": sum(b["missing"] for b in bursts),
            "warm_up_lost": warm_up_lost,
            "cpu_share_of_a_core": shares, "busiest_other": max(others.items(), key=lambda kv: kv[1]),
            "worker_share_per_cpu_set": {k: v for k, v in workers.items()},
            "machine_busy": round(shares.get("machine", 0.0) / (os.cpu_count() or 1), 3),
            "others_share": shares.get("others")}


def next_bottleneck(step: dict) -> str:
    """A process other than the workers near a whole CPU, else the machine if its CPUs are (nearly) all busy."""
    name, share = step["busiest_other"]
    if share >= 0.8:
        return f"{name} ({share:.2f} of a CPU)"
    if step["machine_busy"] >= BUSY:
        return (f"the machine: its CPUs {100 * step['machine_busy']:.0f} % busy "
                f"({step['others_share']:.2f} of a CPU used by processes outside the system)")
    return "none saturated: the single producer or the batching limits the burst"


def run_db(bench, kind: str, progress) -> dict:
    sets = cpu_sets()
    if sets is None or not shutil.which("taskset"):
        raise RuntimeError("scale needs 2 or more CPUs and `taskset` (util-linux)")
    n, reps = (600, 1) if bench.quick else (3000, 3)
    out = {"db": kind, "settings": {"tasks_per_burst": n, "repeats": reps, "cpu_sets": list(sets),
                                    "pinned": "the worker line only; the rest floats"}}
    out["one"] = _step(bench, kind, [sets[0]], n, reps)
    progress()
    out["two"] = _step(bench, kind, list(sets), n, reps)
    progress()
    out["gain"] = round(out["two"]["per_second"] / out["one"]["per_second"], 3)
    out["next_bottleneck"] = next_bottleneck(out["two"])
    return out
