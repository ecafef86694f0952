"""Every Procfile line runs on a fresh clone after `release` alone (issue 10 item 1, DESIGN.md rule 12).

As honcho, systemd (deploy/systemd) and Docker run them: each line through `sh -c` in the clone's root,
the virtualenv's programs on PATH, settings only from the environment, no PYTHONPATH, and nothing that
`manage.py up` would have created first (no var/: the database lives elsewhere, as in production).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis
import requests

from devkit import processes, stores
from devkit.fakes.qingjian import FakeQingjian
from scripts import procfile
from tests.deploy.clone import fresh_clone, stop_groups, system_path

READY_TIMEOUT = 90  # workers, beat's first tick and the listener's first heartbeat, on a loaded machine


@pytest.fixture
def database(tmp_path):
    """PostgreSQL (a private database) where it answers, as in production; else SQLite outside the clone."""
    if stores.postgres_available():
        url = stores.create_private_database()
        yield url
        stores.drop_database(url)
    else:
        yield f"sqlite:///{tmp_path / 'bridge.db'}"


def _sh(command: str, cwd: Path, env: dict, log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen(["/bin/sh", "-c", f"exec {command}"], cwd=cwd, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def test_every_procfile_line_runs_on_a_fresh_clone_after_release(tmp_path, database, redis_base):
    project = fresh_clone(tmp_path / "project")
    lines = procfile.read(project / "Procfile")
    redis_url = f"{redis_base}/7"
    redis.Redis.from_url(redis_url).flushdb()
    qingjian = FakeQingjian().start()
    port, flower_port = stores.free_port(), stores.free_port()
    env = {"HOME": os.environ.get("HOME", str(tmp_path)), "LANG": "C.UTF-8",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{system_path()}",
           "DATABASE_URL": database, "REDIS_URL": redis_url, "TIANWANG_API_KEYS": processes.API_KEY,
           "QINGJIAN_WS_URL": qingjian.url, "QINGJIAN_DEFAULT_ACC_ID": "shop_001",
           "PORT": str(port), "WEB_HOST": "127.0.0.1", "FLOWER_PORT": str(flower_port), "WORKER_CONCURRENCY": "1"}
    running: dict[str, subprocess.Popen] = {}

    def logs() -> str:
        return "\n".join(f"===== {name} =====\n{(tmp_path / f'{name}.log').read_text(errors='replace')[-3000:]}"
                         for name in ("release", *running))

    try:
        release = _sh(lines["release"], project, env, tmp_path / "release.log")
        assert release.wait(120) == 0, logs()
        assert not (project / "var").exists(), "release made var/: the test would no longer show a line needs it"
        for name, command in lines.items():
            if name != "release":
                running[name] = _sh(command, project, env, tmp_path / f"{name}.log")

        def all_up_and(condition):
            def check():
                dead = {name: proc.returncode for name, proc in running.items() if proc.poll() is not None}
                assert not dead, f"Procfile lines exited on a fresh clone: {dead}\n{logs()}"
                return condition()
            return check

        base = f"http://127.0.0.1:{port}"
        stores.wait_until(all_up_and(lambda: _answers(f"{base}/api/ready")), READY_TIMEOUT, 0.5,
                           "/api/ready to turn 200 (database, Redis, broker, listener and beat heartbeats)")
        stores.wait_until(all_up_and(lambda: _answers(f"http://127.0.0.1:{flower_port}/healthcheck")), 60, 0.5,
                           "flower to answer")
        all_up_and(lambda: True)()
        assert set(running) == set(lines) - {"release"}
        # Docker's healthcheck of each process agrees, and says so when one is not there.
        for name in running:
            check = subprocess.run([sys.executable, "docker/healthcheck.py", name], cwd=project, env=env,
                                   capture_output=True, text=True, timeout=60)
            assert check.returncode == 0, (name, check.stdout, check.stderr)
        closed = subprocess.run([sys.executable, "docker/healthcheck.py", "web"], cwd=project, capture_output=True,
                                text=True, env={**env, "PORT": str(stores.free_port())})
        assert closed.returncode == 1 and "/api/health" in closed.stdout
    finally:
        stop_groups(running.values())
        qingjian.stop()
