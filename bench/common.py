"""Shared plumbing of the benchmarks: databases, Redis, the system under test, clocks, CPU accounting.

Everything runs on this machine and only talks to 127.0.0.1. Every process a benchmark starts goes
through `Bench.system()` / `Bench.proc()` (tests.processes.System / Proc) and is stopped by
`Bench.close()`, whatever happens.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import redis
from tqdm import tqdm

from devkit import processes, stores

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
REDIS_DB_SYSTEM = 14  # the system under test (index, broker, streams, counters)
REDIS_DB_REF = 15  # the reference (no-op) workers
PG_BENCH_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/bench")
PREFIX = "tw:"

# Production defaults where the test harness shortens them (tests.processes.base_env sets 6 s / 3 s).
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
    stores.reset_database(url)
    return url


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


# -- CPU accounting from /proc (read only) ------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def _proc_stat(pid: int):
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm_end = text.rindex(")")
    comm = text[text.index("(") + 1:comm_end]
    rest = text[comm_end + 2:].split()
    # rest[0] is state (field 3); pgrp is field 5, utime 14, stime 15
    return comm, int(rest[2]), (int(rest[11]) + int(rest[12])) / _TICK


def cpu_seconds(groups: dict[str, int], client: redis.Redis | None = None) -> dict:
    """A snapshot of CPU seconds used so far: per process of each group in `groups` (name -> pgid, i.e.
    a Proc and its children), per PostgreSQL process of the machine, Redis (INFO cpu) and this process.
    `cpu_delta(before, after)` turns two snapshots into seconds per name."""
    by_pgid = {pgid: name for name, pgid in groups.items()}
    pids: dict[int, tuple[str, float]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        stat = _proc_stat(int(entry.name))
        if stat is None:
            continue
        comm, pgrp, cpu = stat
        if pgrp in by_pgid:
            pids[int(entry.name)] = (by_pgid[pgrp], cpu)
        elif comm == "postgres":
            pids[int(entry.name)] = ("postgres", cpu)
    snap = {"_pids": pids, "_names": list(groups) + ["postgres"]}
    if client is not None:
        info = client.info("cpu")
        snap["redis"] = float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    t = os.times()
    snap["bench"] = t.user + t.system
    return snap


def cpu_delta(before: dict, after: dict) -> dict:
    """CPU seconds per name between two snapshots (a process that started in between counts whole)."""
    out = {name: 0.0 for name in after["_names"]}
    for pid, (name, cpu) in after["_pids"].items():
        prior = before["_pids"].get(pid)
        out[name] += cpu - (prior[1] if prior and prior[0] == name else 0.0)
    for key in ("redis", "bench"):
        if key in after:
            out[key] = after[key] - before.get(key, 0.0)
    return {k: round(v, 3) for k, v in out.items()}


# -- a fast callback receiver -------------------------------------------------------------------

class _FastHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real receiver behind a proxy would be
    # Headers and body go out in two writes: without TCP_NODELAY, Nagle holds the body back until the
    # client's delayed ACK (40 ms), and the receiver, not the bridge, would be what is measured.
    disable_nagle_algorithm = True

    def do_POST(self):  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        server = self.server
        with server.lock:  # type: ignore[attr-defined]
            server.count += 1  # type: ignore[attr-defined]
            server.last = time.time()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *_a):
        pass


class FastReceiver:
    """A minimal threaded HTTP server on 127.0.0.1 that answers every POST 200 and counts it."""

    def __init__(self):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _FastHandler)
        self.httpd.daemon_threads = True
        self.httpd.lock = threading.Lock()
        self.httpd.count = 0
        self.httpd.last = 0.0
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                       daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/callback"

    @property
    def count(self) -> int:
        return self.httpd.count

    def start(self) -> "FastReceiver":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# -- the benchmark session ----------------------------------------------------------------------

@dataclass
class Bench:
    quick: bool
    dbs: list[str]
    concurrency: int = 2
    log_dir: Path = field(default_factory=lambda: RESULTS / "logs" / time.strftime("%Y%m%d-%H%M%S"))
    profiling: bool = False
    _closers: list = field(default_factory=list)
    _profiles: list = field(default_factory=list)

    def __post_init__(self):
        self.log_dir.mkdir(parents=True, exist_ok=True)

    # -- py-spy (only with --profile: sampling costs CPU, so profiled runs are not the measured ones) --
    def profile(self, label: str, procs: dict, seconds: float) -> None:
        """Sample each Proc (and its children) with py-spy for `seconds`, from now."""
        if not self.profiling:
            return
        spy = Path(sys.executable).parent / "py-spy"
        folder = RESULTS / "profiles"
        folder.mkdir(parents=True, exist_ok=True)
        for name, proc in procs.items():
            out = folder / f"{label}-{name}.txt"
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
            self._profiles.append((f"{label}-{name}", spy_proc, out))

    def collect_profiles(self) -> dict:
        done = {}
        for key, proc, out in self._profiles:
            try:
                proc.p.wait(60)
            except Exception:
                pass
            if out.exists():
                done[key] = {"file": str(out), "top": summarize_profile(out)}
        self._profiles.clear()
        return done

    # every started thing registers how to stop it; close() runs them newest first
    def on_close(self, fn) -> None:
        self._closers.append(fn)

    def close(self) -> None:
        while self._closers:
            fn = self._closers.pop()
            try:
                fn()
            except Exception as exc:  # keep stopping the rest
                print(f"warning: cleanup step failed: {exc!r}", file=sys.stderr)

    @contextmanager
    def scope(self):
        """Stop everything started inside the block when it ends."""
        mark = len(self._closers)
        try:
            yield self
        finally:
            while len(self._closers) > mark:
                fn = self._closers.pop()
                try:
                    fn()
                except Exception as exc:
                    print(f"warning: cleanup step failed: {exc!r}", file=sys.stderr)

    # -- processes --------------------------------------------------------------------------
    def system(self, db_url: str, redis_url_: str, **env) -> processes.System:
        system = processes.System(db_url, redis_url_, self.log_dir, **{**SYSTEM_ENV, **env})
        self.on_close(system.stop)
        return system

    def worker(self, system: processes.System, name: str = "worker", include: str | None = None,
               concurrency: int | None = None) -> processes.Proc:
        """Like System.worker (same queues and flags), optionally with `-I <module>`."""
        args = [system.celery, "-A", "workers", "worker", "-Q", system.QUEUES, "-c",
                str(concurrency or self.concurrency), "-P", "prefork", "-n", f"{name}-{time.time_ns()}@%h",
                "--without-gossip", "--without-mingle", "-l", "INFO"]
        if include:
            args += ["-I", include]
        return system._start(name, args)

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


def summarize_profile(path: Path, top: int = 25) -> list[tuple[str, float, float]]:
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


def in_process_app(env: dict):
    """The Flask app (and Celery producer) of the system under test, inside this process."""
    from app import create_app
    from app.config import Settings

    app = create_app(Settings.from_env(env))
    celery_app = app.extensions["celery"]
    celery_app.set_current()
    celery_app.set_default()
    client = app.test_client()
    client.environ_base["HTTP_X_API_KEY"] = processes.API_KEY
    return app, client


def producer(broker_url: str):
    """A plain Celery producer with the project's celeryconfig, publishing to `broker_url`."""
    from celery import Celery

    app = Celery("bench-producer")
    app.config_from_object("celeryconfig")
    app.conf.update(broker_url=broker_url, result_backend=broker_url)
    return app


def create_tasks(client, bodies: list[dict], desc: str, threads: int = 4) -> dict:
    """POST every body to /api/task/receive through the app (in-process); returns timing and errors."""
    from concurrent.futures import ThreadPoolExecutor

    errors: list = []
    start = time.perf_counter()

    def post(body):
        answer = client.post("/api/task/receive", json=body)
        if answer.status_code != 200:
            errors.append((body["task_id"], answer.status_code, answer.get_data(as_text=True)[:200]))

    with ThreadPoolExecutor(threads) as pool, tqdm(total=len(bodies), desc=desc, leave=False,
                                                   unit="task", dynamic_ncols=True) as bar:
        for _ in pool.map(post, bodies):
            bar.update()
    elapsed = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"{len(errors)} task(s) refused by intake, e.g. {errors[:3]}")
    return {"tasks": len(bodies), "seconds": round(elapsed, 2), "per_second": round(len(bodies) / elapsed, 1)}


def bulk_tasks(bodies: list[dict], desc: str) -> dict:
    """Store tasks as `waiting` in one transaction, built by the app's own schema and intake constructor
    (TaskReceiveSchema, intake._new_task), and register them in the Redis index (registration.spec_of,
    Registry.register): what POST /api/task/receive leaves behind, minus its per-request round trips."""
    from app import runtime
    from app.infra.db import session_scope
    from app.schemas import TaskReceiveSchema
    from app.services import intake, registration

    start = time.perf_counter()
    rt = runtime.current()
    schema = TaskReceiveSchema()
    tasks = []
    for body in tqdm(bodies, desc=desc, leave=False, unit="task", dynamic_ncols=True):
        task = intake._new_task(schema.load(body), body, intake.body_hash(body), rt.settings)
        task.status = "waiting"
        tasks.append(task)
    with session_scope() as session:
        session.add_all(tasks)
    pipe = rt.redis.pipeline(transaction=False)
    from app.registry import Registry

    class _One:  # Registry.register's pipeline, folded into ours
        def pipeline(self, transaction=True):
            return self

        def __getattr__(self, name):
            return getattr(pipe, name)

        def execute(self):
            return None

    registry = Registry(_One(), rt.settings.redis_prefix)  # type: ignore[arg-type]
    for task in tasks:
        registry.register(registration.spec_of(task))
    pipe.execute()
    elapsed = time.perf_counter() - start
    return {"tasks": len(bodies), "seconds": round(elapsed, 2), "per_second": round(len(bodies) / elapsed, 1),
            "how": "bulk: app schema + intake._new_task, one INSERT batch, Registry.register"}


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


# -- a private PostgreSQL-backed system for the standalone drills (scale_out, soak) ----------------

@dataclass
class PrivateSystem:
    system: "processes.System"
    qingjian: object
    tianwang: object
    db_url: str
    redis_pid: int


@contextmanager
def private_system(name: str, report: dict, **env):
    """Its own redis-server and PostgreSQL database, the 轻简 and 天网 fakes, and a `processes.System`
    (no processes yet); on the way out everything is stopped and dropped, and `report` is written to
    bench/results/<name>.json whatever happened."""
    import tempfile

    from devkit.fakes.qingjian import FakeQingjian
    from devkit.fakes.tianwang import FakeTianwang

    quiet_fakes()
    if not stores.postgres_available():
        raise SystemExit(f"{name} needs PostgreSQL at {stores.PG_URL}")
    redis_proc, redis_url_ = stores.start_embedded_redis()
    db_url = stores.create_private_database()
    stores.migrate(db_url)
    qingjian, tianwang = FakeQingjian().start(), FakeTianwang().start()
    system = processes.System(db_url, f"{redis_url_}/0", Path(tempfile.mkdtemp(prefix=f"{name}_")),
                            QINGJIAN_WS_URL=qingjian.url, TIANWANG_CALLBACK_URL=tianwang.url,
                            LOG_LEVEL="WARNING", **env)
    try:
        yield PrivateSystem(system, qingjian, tianwang, db_url, redis_proc.pid)
    finally:
        system.stop()
        qingjian.stop()
        tianwang.stop()
        stores.drop_database(db_url)
        redis_proc.terminate()
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))


def web_healthy(base: str) -> bool:
    import requests

    try:
        return requests.get(f"{base}/api/health", timeout=1).status_code == 200
    except requests.RequestException:
        return False
