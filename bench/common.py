"""Shared plumbing of the benchmarks: databases, Redis, the benchmark session (every process and fake it
starts is stopped when its scope ends, also on Ctrl-C), clocks and numbers, and the ways tasks are created.

Everything runs on this machine and only talks to 127.0.0.1. The system under test is started from the
Procfile (bench/stack.py); CPU is accounted from /proc (bench/cpu.py).
"""
from __future__ import annotations

import json
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import redis

from bench import stack
from bench.receiver import FastReceiver
from bench.spy import Spy
from devkit import processes, stores

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
REDIS_DB_SYSTEM = 14  # the system under test (index, broker, streams, counters)
REDIS_DB_REF = 15  # the reference (no-op) workers
PG_BENCH_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/bench")
PREFIX = "tw:"

# Production defaults where the test harness shortens them (devkit.processes.base_env sets 6 s / 3 s).
SYSTEM_ENV = {"ACTION_LEASE_SECONDS": "30", "QINGJIAN_SEND_TIMEOUT": "10", "LOG_LEVEL": "INFO"}
CALLBACK_SECRET = "bench-callback-secret"


def quiet_fakes() -> None:
    """The fakes print one line per frame; at thousands of frames a second that is noise (and cost)."""
    from devkit.fakes import _http, qingjian, tianwang

    def silent(*_a, **_k):
        return None

    _http.emit = qingjian.emit = tianwang.emit = silent


# -- databases ----------------------------------------------------------------------------------

def postgres_answers() -> bool:
    try:
        import psycopg

        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", connect_timeout=2):
            return True
    except Exception:
        return False


def ensure_bench_database() -> None:
    """CREATE DATABASE bench (once), so the test suite's `test` database is never touched."""
    import psycopg

    name = PG_BENCH_URL.rsplit("/", 1)[-1]
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True,
                         connect_timeout=5) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def fresh_db(kind: str, name: str) -> str:
    """An empty, migrated database of `kind` (sqlite: a file under bench/results; postgresql: `bench`)."""
    if kind == "sqlite":
        url = f"sqlite:///{RESULTS / f'bench-{name}.db'}"
    else:
        ensure_bench_database()
        url = PG_BENCH_URL
    _drop_pooled_connections()
    stores.reset_database(url)
    return url


def _drop_pooled_connections() -> None:
    """The in-process app's engine is reused for the same URL; its pooled connections would still point
    at the SQLite file just replaced (writes to a deleted file) or hold a session open on PostgreSQL."""
    from app.infra import db

    try:
        db.engine().dispose()
    except RuntimeError:  # no engine in this process yet
        pass


def redis_url(db: int, flush: bool = True) -> str:
    url = f"{stores.redis_base_url()}/{db}"
    if flush:
        redis.Redis.from_url(url).flushdb()
    return url


# -- time, numbers ------------------------------------------------------------------------------

def percentiles(values, ps=(50, 90, 99)) -> dict:
    import numpy as np

    if not len(values):
        return {f"p{p}": None for p in ps} | {"max": None, "mean": None, "n": 0}
    arr = np.asarray(values, dtype=float)
    out = {f"p{p}": float(np.percentile(arr, p)) for p in ps}
    out.update(max=float(arr.max()), min=float(arr.min()), mean=float(arr.mean()), n=int(arr.size))
    return out


def wait_until(predicate, timeout: float, interval: float = 0.005):
    """predicate()'s first truthy value and the time.time() it was seen; (None, t) on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        now = time.time()
        if value:
            return value, now
        if time.monotonic() > deadline:
            return None, now
        time.sleep(interval)


def paced(n: int, rate: float):
    """Yield 0..n-1 at a steady `rate` per second (absolute schedule: no drift)."""
    start = time.perf_counter()
    for i in range(n):
        target = start + i / rate
        delay = target - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        yield i


def counter(client: redis.Redis, name: str, field_: str) -> int:
    raw = client.hget(f"{PREFIX}stats:{name}", field_)
    return int(raw or 0)


# -- the benchmark session ----------------------------------------------------------------------

@dataclass
class Bench:
    quick: bool
    dbs: list[str]
    concurrency: int | None = None  # WORKER_CONCURRENCY for the Procfile's worker line; None: its default
    log_dir: Path = field(default_factory=lambda: RESULTS / "logs" / time.strftime("%Y%m%d-%H%M%S"))
    profiling: bool = False
    _closers: list = field(default_factory=list)

    def __post_init__(self):
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.spy = Spy(self.log_dir, self.on_close)

    def profile(self, label: str, procs: dict, seconds: float) -> None:
        """py-spy each Proc for `seconds` from now (only with --profile)."""
        if self.profiling:
            self.spy.record(label, procs, seconds)

    def collect_profiles(self) -> dict:
        return self.spy.collect()

    # every started thing registers how to stop it; close() runs them newest first
    def on_close(self, fn) -> None:
        self._closers.append(fn)

    def close(self) -> None:
        self._unwind(0)

    def _unwind(self, mark: int) -> None:
        while len(self._closers) > mark:
            fn = self._closers.pop()
            try:
                fn()
            except Exception as exc:  # keep stopping the rest
                print(f"warning: cleanup step failed: {exc!r}")

    @contextmanager
    def scope(self):
        """Stop everything started inside the block when it ends."""
        mark = len(self._closers)
        try:
            yield self
        finally:
            self._unwind(mark)

    # -- processes --------------------------------------------------------------------------
    def env(self, **extra) -> dict:
        """Settings of every system process: production defaults, the worker concurrency asked for."""
        concurrency = {"WORKER_CONCURRENCY": str(self.concurrency)} if self.concurrency else {}
        return {**SYSTEM_ENV, **concurrency, **extra}

    def system(self, db_url: str, redis_url_: str, **env) -> processes.System:
        system = processes.System(db_url, redis_url_, self.log_dir, **self.env(**env))
        self.on_close(system.stop)
        return system

    def stack(self, system: processes.System, **options) -> dict[str, processes.Proc]:
        """The Procfile's processes in `system` (bench.stack.start's options)."""
        return stack.start(system, **options)

    def proc(self, name: str, args: list[str], env: dict) -> processes.Proc:
        proc = processes.Proc(name, args, env, self.log_dir)
        self.on_close(proc.stop)
        return proc

    def fake_qingjian(self):
        from devkit.fakes.qingjian import FakeQingjian

        fake = FakeQingjian().start()
        self.on_close(fake.stop)
        return fake

    def fake_tianwang(self):
        from devkit.fakes.tianwang import FakeTianwang

        fake = FakeTianwang(secret=CALLBACK_SECRET).start()
        self.on_close(fake.stop)
        return fake

    def receiver(self) -> FastReceiver:
        rec = FastReceiver().start()
        self.on_close(rec.stop)
        return rec


def producer(broker_url: str):
    """A plain Celery producer with the project's celeryconfig, publishing to `broker_url`."""
    from celery import Celery

    app = Celery("bench-producer")
    app.config_from_object("celeryconfig")
    app.conf.update(broker_url=broker_url, result_backend=broker_url)
    return app


def worker_warm(client: redis.Redis, send, n: int = 20, timeout: float = 90) -> None:
    """Send `n` warm-up messages with `send(i)` and wait until `stats:match events` counted them."""
    base = counter(client, "match", "events")
    for i in range(n):
        send(i)
    got, _ = wait_until(lambda: counter(client, "match", "events") >= base + n, timeout, 0.05)
    if not got:
        raise RuntimeError(f"workers did not process {n} warm-up messages within {timeout}s")


def dump(path: Path, data) -> None:
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2, default=str))


def which(name: str) -> str | None:
    return shutil.which(name)
