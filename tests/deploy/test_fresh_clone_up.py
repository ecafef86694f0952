"""README's first command as a new user runs it (issue 10 item 0): a fresh clone, no virtualenv,
`python3 manage.py up`; then README's demo; then SIGINT to up's PID, as a supervisor or `kill -INT`
sends it. It installs a fresh .venv (pip's download cache is reused), so it takes minutes: slow.

It catches what the suite's own venv hides: a requirement `up` needs but does not install, a folder
only a previous run made, a process that outlives `up`, a Redis database left dirty.
"""
from __future__ import annotations

import os
import random
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import redis
import requests

from devkit.stores import wait_until
from tests.deploy.clone import fresh_clone, kill_all, processes_under, system_path

INSTALL_AND_START_TIMEOUT = 900  # a fresh venv: pip installs every pinned requirement (from its cache)
pytestmark = [pytest.mark.slow, pytest.mark.timeout(INSTALL_AND_START_TIMEOUT + 300)]
STOP_TIMEOUT = 30  # honcho gives each process 5 s after SIGTERM, then SIGKILL; a worker's warm shutdown fits
DEMO_KEY = "dev-key"  # README's demo uses up's development key


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_port_run(length: int) -> int:
    """The first of `length` consecutive free ports (up's fakes listen on FAKE_PORT_BASE and the next 4),
    below the kernel's ephemeral range: `up` installs and starts for a minute or more before it listens,
    and meanwhile its own outgoing connections (pip, Redis, the broker) take ephemeral ports, one of
    which once was a port chosen here (seen: the fake 轻简's control port 'Address already in use')."""
    low, _ = ephemeral_range()
    for _ in range(200):
        base = random.randrange(10000, low - length)
        if all(_port_free(base + i) for i in range(length)):
            return base
    raise AssertionError("no run of free ports")


def ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def _get(url: str, **kwargs):
    try:
        return requests.get(url, timeout=2, **kwargs)
    except requests.RequestException:
        return None


def test_readme_up_runs_the_demo_from_a_fresh_clone_and_stops_on_sigint(tmp_path):
    python3 = shutil.which("python3", path=system_path())
    if python3 is None:
        pytest.skip("no python3 on PATH outside the test's virtualenv")
    project = fresh_clone(tmp_path / "project")
    assert not (project / ".venv").exists() and not (project / "var").exists()
    port, fake_base, flower_port, redis_port = free_port_run(1), free_port_run(5), free_port_run(1), free_port_run(1)
    env = {"HOME": os.environ.get("HOME", str(tmp_path)), "PATH": system_path(), "LANG": "C.UTF-8",
           # Ports of their own, so a developer's running `up` (8000, 5555, 9528-9532, 6389) is not in the way.
           "PORT": str(port), "FLOWER_PORT": str(flower_port), "FAKE_PORT_BASE": str(fake_base),
           "EMBEDDED_REDIS_PORT": str(redis_port)}
    for name in ("PIP_CACHE_DIR", "PIP_FIND_LINKS", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_CERT"):
        if name in os.environ:  # pip's own configuration (cache, mirror) as the machine has it
            env[name] = os.environ[name]
    log_path = tmp_path / "up.log"
    with open(log_path, "wb") as log:
        up = subprocess.Popen([python3, "manage.py", "up"], cwd=project, env=env, stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    try:
        def healthy():
            assert up.poll() is None, "manage.py up exited:\n" + log_path.read_text(errors="replace")[-4000:]
            answer = _get(f"{base}/api/health")
            return answer is not None and answer.status_code == 200

        wait_until(healthy, INSTALL_AND_START_TIMEOUT, 1, "/api/health of the fresh clone's up")
        print(f"fresh clone: /api/health answered {time.monotonic() - started:.0f} s after `up` (install included)")
        banner = log_path.read_text(errors="replace").split("天网 task bridge is starting:")[1].split("Ctrl-C")[0]
        assert DEMO_KEY not in banner, "the banner shows the API key"

        # README's demo: a task, the customer speaks through the 轻简 fake's /say, the task completes.
        task_id = f"FRESH_{uuid.uuid4().hex[:8]}"
        headers = {"X-API-Key": DEMO_KEY}
        answer = requests.post(f"{base}/api/task/receive", headers=headers, timeout=10, json={
            "task_id": task_id, "type": "send_file_after_reply", "customer": {"id": "customer_123", "name": "小明"},
            "trigger": {"type": "specified_customer_reply", "customer_id": "customer_123", "keyword": "好的"},
            "action": {"type": "send_file", "file_url": "https://example.com/a.zip", "message": "这是您要的文件"}})
        assert answer.status_code == 200, answer.text

        def status():
            return requests.get(f"{base}/api/task/status/{task_id}", headers=headers, timeout=5).json()["data"]["status"]

        wait_until(lambda: status() == "waiting", 30, 0.2, "the demo task to wait for its customer")
        said = requests.post(f"http://127.0.0.1:{fake_base + 1}/say", timeout=5, json={
            "from_id": "customer_123", "from_name": "小明", "content": "好的谢谢"})
        assert said.status_code == 200, said.text
        wait_until(lambda: status() == "completed", 60, 0.2, "the demo task to complete")

        claimed = re.search(r"redis +(redis://\S+)", log_path.read_text(errors="replace")).group(1)
        up.send_signal(signal.SIGINT)  # to the PID only, not the group
        try:
            up.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"manage.py up still running {STOP_TIMEOUT} s after SIGINT to its PID:\n"
                        + log_path.read_text(errors="replace")[-3000:])
        assert up.returncode == 0, log_path.read_text(errors="replace")[-3000:]
        try:  # a process just killed may take a moment to be reaped
            wait_until(lambda: not processes_under(project), 5, 0.2, "up's processes to be gone")
        except AssertionError:
            pytest.fail(f"processes left after up stopped: {processes_under(project)}")
        if "claimed for this run" in log_path.read_text(errors="replace"):
            assert redis.Redis.from_url(claimed).dbsize() == 0, f"up left data in {claimed}"
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
        kill_all(processes_under(project))
