"""deploy/systemd/install.sh for real, short of systemd itself: it creates the virtualenv from the lock
with the system's Python, the environment file and var/ for the service user, and writes the units;
then each unit's ExecStart runs as its User, in its WorkingDirectory, with its EnvironmentFile's
settings (systemd's sandboxing aside), and the bridge turns ready. Slow: a virtualenv is installed.

It needs root (the installer's `install -o` and `runuser`) and an unprivileged user to run as
(`nobody`); elsewhere it skips and says so. `systemctl` is a stand-in that records its calls.
"""
from __future__ import annotations

import configparser
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import redis
import requests

from devkit import stores
from devkit.fakes.qingjian import FakeQingjian
from tests.deploy.clone import stop_groups

ROOT = Path(__file__).resolve().parents[2]
SERVICE_USER = "nobody"
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture
def host_dir():
    """A folder the service user can reach (pytest's own tmp folders are private to root)."""
    if os.geteuid() != 0 or shutil.which("runuser") is None:
        pytest.skip("the installer needs root and runuser: not exercised here")
    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        pytest.skip(f"no user {SERVICE_USER!r} to install the services for")
    path = Path(tempfile.mkdtemp(prefix="tw-install-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def unit_settings(path: Path) -> dict[str, str]:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str
    parser.read_string(path.read_text())
    return dict(parser["Service"])


def start_unit(unit: Path, log: Path) -> subprocess.Popen:
    """The unit's ExecStart as systemd runs it: its User, WorkingDirectory, Environment= and
    EnvironmentFile= (`$$` is systemd's escape of `$`)."""
    service = unit_settings(unit)
    env = dict(line.split("=", 1) for line in Path(service["EnvironmentFile"]).read_text().splitlines()
               if line.strip() and not line.startswith("#"))
    env.update(pair.split("=", 1) for pair in service["Environment"].split())
    command = service["ExecStart"].replace("$$", "$")
    prefix = "/bin/sh -c '"
    argv = ["/bin/sh", "-c", command[len(prefix):-1]] if command.startswith(prefix) else command.split()
    with open(log, "wb") as out:
        return subprocess.Popen(["runuser", "-u", service["User"], "--", "env", "-i",
                                 *(f"{k}={v}" for k, v in env.items()), *argv],
                                cwd=service["WorkingDirectory"], stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def test_the_installer_sets_up_a_host_whose_units_run_as_the_service_user(host_dir, redis_base):
    fake_bin, app_dir, units = host_dir / "bin", host_dir / "app", host_dir / "units"
    env_file = host_dir / "etc" / "tianwang.env"
    fake_bin.mkdir()
    (fake_bin / "systemctl").write_text(f'#!/bin/sh\necho "$*" >> {host_dir}/systemctl.log\n')
    (fake_bin / "systemctl").chmod(0o755)
    install = subprocess.run(
        [str(ROOT / "deploy" / "systemd" / "install.sh"), "--dir", str(app_dir), "--user", SERVICE_USER,
         "--env-file", str(env_file), "--unit-dir", str(units)],
        env={**os.environ, "PATH": f"{fake_bin}:{os.environ['PATH']}"}, capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stdout + install.stderr
    assert (host_dir / "systemctl.log").read_text().split("\n")[:2] == ["daemon-reload", "enable tianwang.target"]
    group = pwd.getpwnam(SERVICE_USER).pw_gid
    assert (env_file.stat().st_mode & 0o777, env_file.stat().st_gid) == (0o640, group)
    assert (app_dir / "var").stat().st_uid == pwd.getpwnam(SERVICE_USER).pw_uid

    qingjian = FakeQingjian().start()
    port, redis_url = stores.free_port(), f"{redis_base}/6"
    redis.Redis.from_url(redis_url).flushdb()
    env_file.write_text(f"DATABASE_URL=sqlite:///{app_dir}/var/tianwang.db\nREDIS_URL={redis_url}\n"
                        f"TIANWANG_API_KEYS=install-test\nQINGJIAN_WS_URL={qingjian.url}\nWEB_HOST=127.0.0.1\n"
                        f"PORT={port}\nFLOWER_PORT={stores.free_port()}\nWORKER_CONCURRENCY=1\n")
    running = []
    try:
        release = start_unit(units / "tianwang-release.service", host_dir / "release.log")
        assert release.wait(120) == 0, (host_dir / "release.log").read_text()
        for unit in sorted(units.glob("tianwang-*.service")):
            if unit.name != "tianwang-release.service":
                running.append(start_unit(unit, host_dir / f"{unit.stem}.log"))

        def ready():
            dead = [p.args for p in running if p.poll() is not None]
            assert not dead, f"units exited: {dead}"
            try:
                return requests.get(f"http://127.0.0.1:{port}/api/ready", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        stores.wait_until(ready, 90, 0.5, "/api/ready from the installed units")
    finally:
        stop_groups(running)
        qingjian.stop()
        redis.Redis.from_url(redis_url).flushdb()
