"""deploy/systemd: units derived from the Procfile, checked by systemd's own verifier, and the installer."""
from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from scripts import procfile

ROOT = Path(__file__).resolve().parents[2]
SYSTEMD = ROOT / "deploy" / "systemd"
sys.path.insert(0, str(SYSTEMD))
import render_units  # noqa: E402


def parse(path: Path) -> configparser.ConfigParser:
    unit = configparser.ConfigParser(interpolation=None)
    unit.optionxform = str  # systemd keys are case-sensitive
    unit.read_string(path.read_text())
    return unit


@pytest.fixture
def units(tmp_path) -> dict[str, configparser.ConfigParser]:
    env_file = tmp_path / "tianwang.env"
    env_file.write_text("TIANWANG_API_KEYS=k\n")
    written = render_units.render(ROOT, "tianwang", env_file, tmp_path / "units")
    return {path.name: parse(path) for path in written}


def test_one_unit_per_procfile_line_and_a_target_that_wants_them_all(units):
    names = list(procfile.read())
    assert set(units) == {f"tianwang-{name}.service" for name in names} | {"tianwang.target"}
    assert units["tianwang.target"]["Unit"]["Wants"].split() == [f"tianwang-{name}.service" for name in names]
    assert units["tianwang.target"]["Install"]["WantedBy"] == "multi-user.target"


def test_release_is_a_oneshot_that_every_other_unit_requires_and_follows(units):
    release = units["tianwang-release.service"]["Service"]
    assert release["Type"] == "oneshot" and "Restart" not in release
    for name, unit in units.items():
        if name in ("tianwang-release.service", "tianwang.target"):
            continue
        assert unit["Unit"]["Requires"] == "tianwang-release.service", name
        assert unit["Unit"]["After"].split()[0] == "tianwang-release.service", name
        assert unit["Service"]["Restart"] == "always", name
        assert unit["Unit"]["StartLimitIntervalSec"] == "0", name  # never gives up restarting


def test_every_unit_runs_the_venvs_program_with_the_environment_file_on_a_read_only_system(units, tmp_path):
    venv_bin = f"{ROOT}/.venv/bin/"
    for name, unit in units.items():
        if name == "tianwang.target":
            continue
        service = unit["Service"]
        start = service["ExecStart"]
        program = start.split("'exec ")[1].split()[0] if start.startswith("/bin/sh -c") else start.split()[0]
        assert program.startswith(venv_bin), (name, start)
        assert service["EnvironmentFile"] == str(tmp_path / "tianwang.env")
        assert service["User"] == "tianwang" and service["WorkingDirectory"] == str(ROOT)
        assert service["NoNewPrivileges"] == "yes" and service["PrivateTmp"] == "yes"
        assert service["ProtectSystem"] == "strict" and service["ReadWritePaths"] == f"-{ROOT}/var"
        assert service["CapabilityBoundingSet"] == ""


def test_shell_expansions_of_the_procfile_reach_the_shell_not_systemd(units):
    worker = units["tianwang-worker.service"]["Service"]["ExecStart"]
    assert "$${WORKER_CONCURRENCY:-2}" in worker and worker.startswith("/bin/sh -c 'exec ")


def test_a_new_procfile_line_becomes_a_unit_with_no_other_edit(tmp_path):
    source = tmp_path / "Procfile"
    source.write_text((ROOT / "Procfile").read_text() + "callbacks: celery -A workers worker -Q callbacks\n")
    written = render_units.render(ROOT, "tianwang", tmp_path / "env", tmp_path / "units", source)
    assert tmp_path / "units" / "tianwang-callbacks.service" in written
    assert "tianwang-callbacks.service" in parse(tmp_path / "units" / "tianwang.target")["Unit"]["Wants"].split()


def test_systemd_analyze_verify_accepts_the_units(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd): the units are not verified here")
    env_file = tmp_path / "tianwang.env"
    env_file.write_text("TIANWANG_API_KEYS=k\n")
    written = render_units.render(ROOT, "tianwang", env_file, tmp_path / "units")
    result = subprocess.run([analyze, "verify", "--man=no", *map(str, written)], capture_output=True, text=True,
                            cwd=tmp_path / "units")
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), result.stdout + result.stderr


def test_systemd_analyze_verify_would_catch_a_broken_unit(tmp_path):
    """The check above can fail: a unit whose program is missing is refused."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    written = render_units.render(tmp_path / "nowhere", "tianwang", tmp_path / "env", tmp_path / "units")
    result = subprocess.run([analyze, "verify", "--man=no", str(written[1])], capture_output=True, text=True)
    assert result.returncode != 0 and "is not executable" in result.stdout + result.stderr


def test_the_installer_dry_run_writes_the_units_and_shows_each_host_change(tmp_path):
    unit_dir = tmp_path / "units"
    args = [str(SYSTEMD / "install.sh"), "--dry-run", "--unit-dir", str(unit_dir), "--dir", "/opt/tw-test",
            "--user", "twtest", "--env-file", "/etc/tw-test/tw.env"]
    shown = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    assert "+ useradd --system" in shown and "twtest" in shown
    assert "+ /opt/tw-test/.venv/bin/pip install" in shown and "--no-deps" in shown
    assert "-r /opt/tw-test/requirements/base.lock.txt" in shown
    assert "+ systemctl enable tianwang.target" in shown
    web = parse(unit_dir / "tianwang-web.service")["Service"]
    assert web["ExecStart"].startswith("/opt/tw-test/.venv/bin/gunicorn ") and web["User"] == "twtest"
    assert web["EnvironmentFile"] == "/etc/tw-test/tw.env"

    removed = subprocess.run([*args, "--uninstall"], capture_output=True, text=True, check=True).stdout
    for name in procfile.read():
        assert f"+ rm -f {unit_dir}/tianwang-{name}.service" in removed
    assert "+ systemctl disable --now tianwang.target" in removed
