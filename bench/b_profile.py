"""profile: where a fired message's cost goes, per process and per stage: CPU, SQL statements and
transactions, Redis round trips (the profile table of bench/README.md; `python -m bench.report` prints
it again from a results file).

The fire scenario (bench/b_fire.py) in profiling mode: the Procfile's processes, `web` included, each
started with bench/probe_site first on PYTHONPATH so bench/probe.py counts per stage in every process
(Celery task by task in the workers). N tasks are created through web (HTTP, 4 client threads); then
each customer says 好的 once, as fast as one producer can, and the count runs until everything the burst
caused is done (every callback accepted, the queues empty). Per fired message:
- each process's CPU from /proc; within a worker line, each Celery task's CPU (probe: process time from
  task_prerun to task_postrun) and the rest (Celery's own work: reading, acking, events);
- per stage, SQL statements and commits (SQLAlchemy events) and Redis round trips (redis-py writes),
  split into the app's and the broker's (issued from kombu/celery code);
- Redis: the server's CPU and its commands by name (INFO commandstats deltas; the whole server);
- PostgreSQL: the CPU of the benchmark database's backends.
Web's row is per task created (one per fired message), measured while the tasks were created.
Counting costs CPU (a stack walk per Redis round trip), so the milliseconds are a breakdown, not a
headline figure (bench/b_fire.py has those).
"""
from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import requests

from bench import common, probe, scenario
from bench.common import ROOT
from devkit import processes, stores

PROBE_SITE = ROOT / "bench" / "probe_site"
COLUMNS = ("runs", "cpu_ms", "sql_statements", "sql_transactions", "redis_app", "redis_broker")


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


def run_db(bench, kind: str, progress) -> dict:
    n = 300 if bench.quick else 1500
    run_id = uuid.uuid4().hex[:6]
    folder = common.RESULTS / "probe" / f"{kind}-{run_id}"
    port = stores.free_port()
    env = {"BENCH_PROBE_DIR": str(folder), "PYTHONPATH": f"{PROBE_SITE}:{ROOT}", "PORT": str(port),
           "WEB_HOST": "127.0.0.1"}
    out = {"db": kind, "settings": {"tasks": n, "probe": "bench/probe.py", "tasks_created_via": "web (HTTP)"}}
    with bench.scope():
        live = scenario.live_system(bench, kind, "profile", {"also": ("web",)}, **env)
        base = f"http://127.0.0.1:{port}"
        stores.wait_until(lambda: _healthy(base), 30, 0.2, "web")
        out["warm_up_lost"] = scenario.warm_up(live, run_id)
        customers = [f"p{run_id}_{i}" for i in range(n)]
        meter, before = live.meter().start(), probe.read(folder)
        created = _post_all(base, [scenario.reply_task(f"P_{c}", c) for c in customers])
        time.sleep(0.5)  # the probes write five times a second
        web = _rows(probe.delta(before, probe.read(folder)), meter.used(), max(1, created), only_roles=("web",))
        progress()
        client = live.redis
        commands0, before = _commands(client), probe.read(folder)
        fired = scenario.burst(live, customers, drain=60 + n / 10)
        time.sleep(0.5)
        counted = probe.delta(before, probe.read(folder))
        commands = {k: v - commands0.get(k, 0) for k, v in _commands(client).items()}
    per = max(1, fired["fired"])
    proc_cpu = fired["cpu_seconds"]
    out.update(created_via_web=created, fired=fired["fired"], missing=fired["missing"],
               rows=[r for r in _rows(counted, proc_cpu, per) if r["process"] != "web"] + web,
               servers={"redis_cpu_ms": round(1000 * proc_cpu.get("redis", 0) / per, 3),
                        "postgres_cpu_ms": (round(1000 * proc_cpu.get("postgres", 0) / per, 3)
                                            if kind == "postgresql" else None),
                        "redis_commands": round(sum(commands.values()) / per, 2),
                        "redis_top_commands": {k: round(v / per, 2) for k, v in
                                               sorted(commands.items(), key=lambda kv: -kv[1])[:10] if v > 0}},
               burst={k: fired[k] for k in ("per_second", "seconds", "quiet_after_s")})
    progress()
    return out


def _healthy(base: str) -> bool:
    try:
        return requests.get(f"{base}/api/health", timeout=1).status_code == 200
    except requests.RequestException:
        return False


def markdown(result: dict) -> str:
    """The profile table of one database's result."""
    head = "| process | stage | runs | CPU ms | SQL statements | SQL commits | Redis round trips (app + broker) |"
    lines = [head, "|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        per = "per task created" if r["process"] == "web" else ""
        redis = f"{r['redis_app'] + r['redis_broker']:g} ({r['redis_app']:g} + {r['redis_broker']:g})"
        lines.append(f"| {r['process']} | {r['stage']} {per} | {r['runs']:g} | {r['cpu_ms']:.2f} | "
                     f"{r['sql_statements']:g} | {r['sql_transactions']:g} | {redis} |")
    s = result["servers"]
    lines.append(f"| redis-server | all commands | | {s['redis_cpu_ms']:.2f} | | | {s['redis_commands']:g} commands |")
    if s.get("postgres_cpu_ms") is not None:
        lines.append(f"| PostgreSQL | backends of the database | | {s['postgres_cpu_ms']:.2f} | | | |")
    return "\n".join(lines)
