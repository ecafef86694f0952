"""profile: where a fired message's cost goes, per process and per stage: CPU, SQL statements and
commits, Redis round trips (the profile tables of bench/README.md; `python -m bench.report` prints them
again from a results file).

The Procfile's processes, `web` included, each started with bench/probe_site first on PYTHONPATH so
bench/probe.py counts per stage in every process (Celery task by task in the workers). Two phases:
- burst (the fire scenario, bench/b_fire.py): N tasks created through web (HTTP, 4 client threads), then
  each customer says 好的 once, as fast as one producer can: what batching makes of a burst;
- steady: N more tasks (stored in bulk), each customer says 好的 once at STEADY_RATE messages/s, one frame
  at a time: the e2e target's firing load, where each batch is a single message.
Each phase is counted until everything it caused is done (every callback accepted, the queues empty).
Per fired message:
- each process's CPU from /proc; within a worker line, each Celery task's CPU (probe: process time from
  task_prerun to task_postrun) and the rest (Celery's own work: reading, acking, events);
- per stage, SQL statements (cursor executions: an executemany counts once; on SQLite they are calls
  into the library, not round trips) and commits, and Redis round trips (redis-py writes: a pipeline
  counts once), split into the app's and the broker's (issued from kombu/celery code);
- Redis: the server's CPU and its commands by name (INFO commandstats deltas; the whole server);
- PostgreSQL: the CPU of the benchmark database's backends.
Web's row is per task created (one per fired message), measured while the burst's tasks were created.
Counting costs CPU (a stack walk per Redis round trip), so the milliseconds are a breakdown, not a
headline figure (bench/b_fire.py and bench/b_e2e.py have those).
"""
from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from bench import common, probe, scenario, seeding
from bench.common import ROOT
from devkit import processes, stores

PROBE_SITE = ROOT / "bench" / "probe_site"
STEADY_RATE = 100.0  # firing messages/s, one at a time: the e2e target's firing load


def _commands(client) -> dict[str, int]:
    return {k.removeprefix("cmdstat_"): v["calls"] for k, v in client.info("commandstats").items()}


def _post_all(base: str, bodies: list[dict]) -> int:
    def post(chunk):
        session = requests.Session()
        session.headers["X-API-Key"] = processes.API_KEY
        return sum(session.post(f"{base}/api/task/receive", json=b, timeout=30).status_code == 200 for b in chunk)

    with ThreadPoolExecutor(4) as pool:
        return sum(pool.map(post, [bodies[i::4] for i in range(4)]))


def _rows(counted: dict, proc_cpu: dict, per: int, only_roles=None) -> list[dict]:
    """Per process: one row per stage (a Celery task, or the process's own work), amounts per `per`."""
    rows = []
    servers = ("redis", "postgres", "bench", "machine", "others")
    roles = sorted({role for role, _ in counted} | {r for r in proc_cpu if r not in servers})
    for role in roles:
        if only_roles and role not in only_roles:
            continue
        stages = {stage: v for (r, stage), v in counted.items() if r == role}
        tasks_cpu = sum(v["cpu_s"] for stage, v in stages.items() if stage != role)
        own = stages.get(role, dict.fromkeys(probe.FIELDS, 0.0))
        own = {**own, "cpu_s": max(0.0, proc_cpu.get(role, 0.0) - tasks_cpu)}
        for stage, v in sorted(((s, v) for s, v in stages.items() if s != role), key=lambda sv: -sv[1]["cpu_s"]):
            rows.append(_row(role, stage, v, per))
        rows.append(_row(role, "(Celery's own work)" if stages.keys() - {role} else "(whole process)", own, per))
    return rows


def _row(role: str, stage: str, v: dict, per: int) -> dict:
    return {"process": role, "stage": stage, "runs": round(v["runs"] / per, 3),
            "cpu_ms": round(1000 * v["cpu_s"] / per, 3),
            **{k: round(v[k] / per, 2) for k in ("sql_statements", "sql_transactions", "redis_app", "redis_broker")}}


def _counted(live, folder: Path, kind: str, fire) -> dict:
    """Run `fire()` (which returns {"fired", "cpu_seconds", ...}) and count what it caused, per fired message."""
    client = live.redis
    commands0, before = _commands(client), probe.read(folder)
    fired = fire()
    time.sleep(0.5)  # the probes write five times a second
    counted = probe.delta(before, probe.read(folder))
    commands = {k: v - commands0.get(k, 0) for k, v in _commands(client).items()}
    per = max(1, fired["fired"])
    proc_cpu = fired["cpu_seconds"]
    return {"fired": fired["fired"], "missing": fired["missing"],
            "rows": [r for r in _rows(counted, proc_cpu, per) if r["process"] != "web"],
            "servers": {"redis_cpu_ms": round(1000 * proc_cpu.get("redis", 0) / per, 3),
                        "postgres_cpu_ms": (round(1000 * proc_cpu.get("postgres", 0) / per, 3)
                                            if kind == "postgresql" else None),
                        "redis_commands": round(sum(commands.values()) / per, 2),
                        "redis_top_commands": {k: round(v / per, 2) for k, v in
                                               sorted(commands.items(), key=lambda kv: -kv[1])[:10] if v > 0}},
            "others_cpu_ms": round(1000 * proc_cpu.get("others", 0) / per, 3),
            **{k: fired[k] for k in ("per_second", "seconds", "quiet_after_s", "latency_ms") if k in fired}}


def run_db(bench, kind: str, progress) -> dict:
    n = 300 if bench.quick else 1500
    run_id = uuid.uuid4().hex[:6]
    folder = common.RESULTS / "probe" / f"{kind}-{run_id}"
    port = stores.free_port()
    env = {"BENCH_PROBE_DIR": str(folder), "PYTHONPATH": f"{PROBE_SITE}:{ROOT}", "PORT": str(port),
           "WEB_HOST": "127.0.0.1"}
    out = {"db": kind, "settings": {"tasks": n, "probe": "bench/probe.py", "steady_rate": STEADY_RATE,
                                    "tasks_created_via": "web (HTTP) for the burst, bulk for the steady rate"}}
    with bench.scope():
        live = scenario.live_system(bench, kind, "profile", {"also": ("web",)}, **env)
        base = f"http://127.0.0.1:{port}"
        stores.wait_until(lambda: _healthy(base), 30, 0.2, "web")
        out["warm_up_lost"] = scenario.warm_up(live, run_id)
        customers = [f"p{run_id}_{i}" for i in range(n)]
        meter, before = live.meter().start(), probe.read(folder)
        out["created_via_web"] = _post_all(base, [scenario.reply_task(f"P_{c}", c) for c in customers])
        time.sleep(0.5)  # the probes write five times a second
        out["web"] = _rows(probe.delta(before, probe.read(folder)), meter.used(), max(1, out["created_via_web"]),
                           only_roles=("web",))
        scenario.wait_quiet(live)
        out["burst"] = _counted(live, folder, kind, lambda: scenario.burst(live, customers, drain=60 + n / 10))
        progress()
        steady = [f"q{run_id}_{i}" for i in range(n)]
        seeding.bulk_tasks([scenario.reply_task(f"Q_{c}", c) for c in steady], f"{kind}: {n:,} tasks")
        scenario.wait_quiet(live)
        out["steady"] = _counted(live, folder, kind, lambda: scenario.steady(live, steady, STEADY_RATE, 60))
    progress()
    return out


def _healthy(base: str) -> bool:
    try:
        return requests.get(f"{base}/api/health", timeout=1).status_code == 200
    except requests.RequestException:
        return False


def markdown(result: dict, phase: str) -> str:
    """The profile table of one database's result, for the `burst` or the `steady` phase (web's row, per
    task created, is the same in both)."""
    head = "| process | stage | runs | CPU ms | SQL statements | SQL commits | Redis round trips (app + broker) |"
    lines = [head, "|---|---|---|---|---|---|---|"]
    for r in result[phase]["rows"] + [{**r, "stage": f"{r['stage']}, per task created"} for r in result["web"]]:
        redis = f"{r['redis_app'] + r['redis_broker']:g} ({r['redis_app']:g} + {r['redis_broker']:g})"
        lines.append(f"| {r['process']} | {r['stage']} | {r['runs']:g} | {r['cpu_ms']:.2f} | "
                     f"{r['sql_statements']:g} | {r['sql_transactions']:g} | {redis} |")
    s = result[phase]["servers"]
    lines.append(f"| redis-server | all commands | | {s['redis_cpu_ms']:.2f} | | | {s['redis_commands']:g} commands |")
    if s.get("postgres_cpu_ms") is not None:
        lines.append(f"| PostgreSQL | backends of the database | | {s['postgres_cpu_ms']:.2f} | | | |")
    return "\n".join(lines)
