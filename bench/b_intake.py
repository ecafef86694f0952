"""intake: POST /api/task/receive requests/second through gunicorn, beside a bare Flask + SQLAlchemy insert.

Both run from the Procfile's web line (`gunicorn -c deploy/gunicorn.conf.py wsgi:app`; the bare app is
the same line with `bench.bare_app:app` in place of `wsgi:app`), so the same gunicorn settings apply:
WEB_CONCURRENCY workers x WEB_THREADS threads (gthread), the masked access log, against the same
database. Load: `wrk` (bench/intake.lua: every request a new task_id and customer), 1 thread and as many
connections as the server has threads, for 20 s (quick: 3 s) after a warm-up; without wrk, a bounded
pool of as many Python threads with requests.Session. Each request of the app validates the body,
stores the task and its history row and registers it in Redis; the bare endpoint does one INSERT.
Only 2xx answers count; rows in SQL are checked against them afterwards. Target: >= 0.6 x bare.
"""
from __future__ import annotations

import json
import os
import runpy
import subprocess
import threading
import time
import uuid
from pathlib import Path
from unittest import mock

import redis
import requests
from sqlalchemy import create_engine, text

from bench import common, cpu, stack
from bench.common import ROOT
from devkit import processes, stores

LUA = Path(__file__).with_name("intake.lua")
TARGET = 0.6


def _web(system, app: str, port: int):
    """The Procfile's web line serving `app` on 127.0.0.1:`port`."""
    command = stack.lines()["web"]
    if "wsgi:app" not in command:
        raise RuntimeError(f"the Procfile's web line does not serve wsgi:app: {command!r}")
    return stack.start_line(system, "web", command.replace("wsgi:app", app),
                            env={"PORT": str(port), "WEB_HOST": "127.0.0.1"})


def gunicorn_settings(env: dict) -> dict:
    """workers and threads as deploy/gunicorn.conf.py reads them from `env`."""
    with mock.patch.dict(os.environ, env):
        conf = runpy.run_path(str(ROOT / "deploy" / "gunicorn.conf.py"))
    return {"workers": conf["workers"], "threads": conf["threads"], "worker_class": conf["worker_class"],
            "accesslog": conf["accesslog"]}


def _wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


def _wrk(url: str, path: str, prefix: str, seconds: float, connections: int) -> dict:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:.0f}s", "--timeout", "10s", "-s", str(LUA), url,
           "--", prefix, path, processes.API_KEY]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("BENCHJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary: {done.stdout[-500:]} {done.stderr[-500:]}")
    raw = json.loads(line[len("BENCHJSON "):])
    errors = raw["status_errors"] + raw["connect"] + raw["read"] + raw["write"] + raw["timeout"]
    seconds_run = raw["duration_us"] / 1e6
    ok = raw["requests"] - errors
    return {"tool": "wrk", "requests": raw["requests"], "ok": ok, "errors": errors, "seconds": round(seconds_run, 2),
            "per_second": round(ok / seconds_run, 1),
            "latency_ms": {"p50": raw["p50_us"] / 1000, "p90": raw["p90_us"] / 1000, "p99": raw["p99_us"] / 1000,
                           "max": raw["max_us"] / 1000, "mean": round(raw["mean_us"] / 1000, 3)}}


def _pool(url: str, path: str, prefix: str, seconds: float, connections: int) -> dict:
    """Fallback load: `connections` threads, each a requests.Session, for `seconds` (and at most 200k requests)."""
    template = json.loads(json.dumps({
        "type": "send_file_after_reply", "acc_id": "shop_001",
        "trigger": {"type": "specified_customer_reply", "keyword": "好的"},
        "action": {"type": "send_file", "file_url": "https://example.com/a.zip", "message": "这是您要的文件"}}))
    lock = threading.Lock()
    lat, errors = [], [0]
    stop_at = time.monotonic() + seconds

    def client(tid: int):
        session = requests.Session()
        session.headers.update({"X-API-Key": processes.API_KEY})
        i = 0
        while time.monotonic() < stop_at and i < 200_000 // connections:
            i += 1
            task_id = f"{prefix}_{tid}_{i}"
            body = dict(template, task_id=task_id, customer={"id": f"c_{task_id}"},
                        trigger=dict(template["trigger"], customer_id=f"c_{task_id}"))
            t = time.perf_counter()
            try:
                ok = session.post(url + path, json=body, timeout=10).status_code < 300
            except requests.RequestException:
                ok = False
            with lock:
                if ok:
                    lat.append(1000 * (time.perf_counter() - t))
                else:
                    errors[0] += 1

    start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(t,)) for t in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 30)
    elapsed = time.perf_counter() - start
    stats = common.percentiles(lat)
    return {"tool": "python threads", "requests": len(lat) + errors[0], "ok": len(lat), "errors": errors[0],
            "seconds": round(elapsed, 2), "per_second": round(len(lat) / elapsed, 1),
            "latency_ms": {k: stats[k] for k in ("p50", "p90", "p99", "max", "mean")}}


def _load(url: str, path: str, prefix: str, seconds: float, connections: int) -> dict:
    return (_wrk if common.which("wrk") else _pool)(url, path, prefix, seconds, connections)


def _count(db_url: str, sql: str, prefix: str) -> int:
    eng = create_engine(db_url)
    with eng.connect() as conn:
        n = conn.execute(text(sql), {"p": f"{prefix}%"}).scalar()
    eng.dispose()
    return int(n)


def run_db(bench, kind: str, progress) -> dict:
    from bench.bare_app import reset_table

    seconds = 3 if bench.quick else 20
    db_url = common.fresh_db(kind, "intake")
    reset_table(db_url)
    url = common.redis_url(common.REDIS_DB_SYSTEM)
    env = processes.base_env(db_url, url, **bench.env())
    settings = gunicorn_settings(env)
    connections = settings["workers"] * settings["threads"]
    tool = f"wrk -t1 -c{connections}" if common.which("wrk") else f"{connections} python threads"
    out = {"db": kind, "settings": {"web_line": stack.lines()["web"], "gunicorn": settings, "load": tool,
                                    "seconds": seconds}}
    run_id = uuid.uuid4().hex[:6]
    for name, target, health, path, sql in (
        ("app", "wsgi:app", "/api/health", "/api/task/receive",
         "SELECT count(*) FROM tasks WHERE task_id LIKE :p"),
        ("bare", "bench.bare_app:app", "/bare/health", "/bare/receive",
         "SELECT count(*) FROM bench_bare_tasks WHERE task_id LIKE :p"),
    ):
        with bench.scope():
            port = stores.free_port()
            system = bench.system(db_url, url)
            web = _web(system, target, port)
            base = f"http://127.0.0.1:{port}"
            _wait_http(base + health)
            _load(base, path, f"W{run_id}{name}", 1 if bench.quick else 3, connections)  # warm-up
            prefix = f"I{run_id}{name}"
            bench.profile(f"intake-{kind}-{name}", {"web": web}, seconds - 1)
            meter = cpu.Meter({"web": web}, redis.Redis.from_url(url), db_url).start()
            measured = _load(base, path, prefix, seconds, connections)
            measured["cpu_seconds"] = meter.used()
            measured["rows_in_sql"] = _count(db_url, sql, prefix)
            measured["cpu_ms_per_request"] = cpu.per_item(measured["cpu_seconds"], measured["ok"])
            out[name] = measured
            progress()
    out["ratio"] = round(out["app"]["per_second"] / out["bare"]["per_second"], 3)
    out["targets"] = {"ratio_to_bare": {"target": f">= {TARGET}", "value": out["ratio"],
                                        "pass": out["ratio"] >= TARGET}}
    return out
