"""The system under test as real processes: Celery workers, beat, the listener and gunicorn, each
with its output in a log file, started with the environment a test or benchmark gives them."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from celeryconfig import QUEUE_ORDER
from devkit.stores import ROOT, free_port, wait_until

API_KEY = "test-key-1"


def base_env(db_url: str, redis_url: str, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIANWANG_", "QINGJIAN_", "TUHUI_"))}
    env.update({
        "DATABASE_URL": db_url, "REDIS_URL": redis_url, "TIANWANG_API_KEYS": API_KEY,
        "QINGJIAN_SEND_TIMEOUT": "3", "QINGJIAN_DEFAULT_ACC_ID": "shop_001", "ACTION_LEASE_SECONDS": "6",
        "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1", "LOG_LEVEL": "INFO",
    })
    env.update({k: str(v) for k, v in extra.items() if v is not None})
    return env


class Proc:
    """A child process of the system under test, its output kept in a log file."""

    def __init__(self, name: str, args: list[str], env: dict, log_dir: Path):
        self.name = name
        self.log_path = log_dir / f"{name}-{time.time_ns()}.log"
        self._log = open(self.log_path, "wb")
        self.p = subprocess.Popen(args, env=env, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT,
                                  start_new_session=True)

    def alive(self) -> bool:
        return self.p.poll() is None

    def kill9(self) -> None:
        """kill -9 the whole process group (a Celery worker's pool children too)."""
        try:
            os.killpg(self.p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.p.wait(10)
        self._log.close()

    def stop(self, timeout: float = 15) -> None:
        if self.alive():
            try:
                os.killpg(self.p.pid, signal.SIGTERM)
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
                return
            except ProcessLookupError:
                pass
        self._log.close()

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")


class System:
    """Workers, beat and listener as real processes against one database and one Redis."""

    QUEUES = ",".join(QUEUE_ORDER)

    def __init__(self, db_url: str, redis_url: str, log_dir: Path, **env):
        self.env = base_env(db_url, redis_url, **env)
        self.log_dir = log_dir
        self.procs: list[Proc] = []
        self.celery = shutil.which("celery", path=str(Path(sys.executable).parent)) or "celery"

    def _start(self, name: str, args: list[str]) -> Proc:
        proc = Proc(name, args, self.env, self.log_dir)
        self.procs.append(proc)
        return proc

    def worker(self, name: str = "worker", concurrency: int = 2, pool: str = "prefork",
               queues: tuple[str, ...] | None = None) -> Proc:
        """A Celery worker of `queues` (default: every queue, as one process does it all in tests)."""
        queues_arg = ",".join(queues) if queues else self.QUEUES
        return self._start(name, [self.celery, "-A", "workers", "worker", "-Q", queues_arg, "-c",
                                  str(concurrency), "-P", pool, "-n", f"{name}-{time.time_ns()}@%h",
                                  "--without-gossip", "--without-mingle", "-l", "INFO"])

    def beat(self, name: str = "beat") -> Proc:
        schedule = self.log_dir / f"{name}-{time.time_ns()}-schedule"
        return self._start(name, [self.celery, "-A", "workers", "beat", "-s", str(schedule), "-l", "INFO"])

    def web(self, port: int, name: str = "web", workers: int = 2, threads: int = 4) -> Proc:
        gunicorn = str(Path(sys.executable).parent / "gunicorn")
        return self._start(name, [gunicorn, "wsgi:app", "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
                                  "--threads", str(threads)])

    def listener(self, name: str = "listener") -> Proc:
        return self._start(name, [sys.executable, "-m", "workers.listener"])

    def stop(self) -> None:
        for proc in self.procs:
            proc.stop()

    def dump_logs(self) -> str:
        return "\n".join(f"===== {p.name} =====\n{p.output()[-4000:]}" for p in self.procs)


@contextmanager
def gunicorn(db_url: str, redis_url: str, log_path: Path, workers: int = 2, threads: int = 4):
    """A real `gunicorn wsgi:app` on a free loopback port (the Procfile's settings); yields its base URL."""
    import requests

    port = free_port()
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "wsgi:app", "--bind", f"127.0.0.1:{port}", "-w",
         str(workers), "--threads", str(threads), "--graceful-timeout", "5", "--timeout", "30"],
        env=base_env(db_url, redis_url), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"

    def healthy():
        if proc.poll() is not None:
            raise AssertionError("gunicorn exited:\n" + log_path.read_text(errors="replace")[-4000:])
        try:
            return requests.get(f"{base}/api/health", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    try:
        wait_until(healthy, 30, 0.1, "gunicorn to answer /api/health")
        yield base
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # the master, which stops its workers gracefully
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        log.close()
