"""The Procfile, the compose file and the local run command start the same processes the same way."""
import importlib.util
import re
import shlex
import shutil
import subprocess
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml
from packaging.markers import Marker

from celeryconfig import QUEUE_ORDER

ROOT = Path(__file__).resolve().parents[1]
PROCESSES = ("release", "web", "worker", "sweeper", "beat", "listener", "flower")


def procfile(path: Path) -> dict[str, str]:
    lines = [l for l in path.read_text().splitlines() if l.strip() and not l.startswith("#")]
    return dict((name.strip(), command.strip()) for name, command in (l.split(":", 1) for l in lines))


def test_procfile_has_every_process():
    assert tuple(procfile(ROOT / "Procfile")) == PROCESSES


def test_compose_parses_and_runs_the_procfile_commands():
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
    services = compose["services"]
    for name, command in procfile(ROOT / "Procfile").items():
        assert services[name]["command"] == command, name
    assert {"postgres", "redis"} <= set(services)
    for name in PROCESSES:
        assert services[name]["build"]["dockerfile"] == "docker/Dockerfile"


def test_the_worker_drains_queues_in_priority_order():
    worker = shlex.split(procfile(ROOT / "Procfile")["worker"])
    assert worker[worker.index("-Q") + 1].split(",") == list(QUEUE_ORDER)
    assert QUEUE_ORDER[0] == "maintenance"  # timers are never stuck behind a backlog of actions
    assert QUEUE_ORDER.index("actions") < QUEUE_ORDER.index("match")  # what has started finishes first


def test_the_local_run_command_starts_the_same_processes(monkeypatch):
    from scripts.up import procfile as local_procfile

    lines = dict(l.split(": ", 1) for l in local_procfile({"PORT": "8000"}, []).strip().splitlines())
    assert set(lines) == set(PROCESSES) - {"release"}
    worker = shlex.split(lines["worker"])
    assert worker[worker.index("-Q") + 1].split(",") == list(QUEUE_ORDER)


def test_dockerfile_runs_as_a_non_root_user_with_a_healthcheck():
    text = (ROOT / "docker" / "Dockerfile").read_text()
    assert "\nUSER bridge" in text and 'HEALTHCHECK' in text and "docker/healthcheck.py" in text


LONG_RUNNING = tuple(name for name in PROCESSES if name != "release")


def compose_services() -> dict:
    return yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())["services"]


def test_compose_starts_release_first_and_everything_else_once_it_completed():
    services = compose_services()
    assert services["release"]["restart"] == "no"
    assert services["release"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for name in LONG_RUNNING:
        assert services[name]["depends_on"]["release"] == {"condition": "service_completed_successfully"}, name
        assert services[name]["restart"] == "unless-stopped", name


def test_every_compose_process_has_a_healthcheck_that_the_script_knows():
    spec = importlib.util.spec_from_file_location("healthcheck", ROOT / "docker" / "healthcheck.py")
    healthcheck = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(healthcheck)
    services = compose_services()
    for name in LONG_RUNNING:
        test = services[name]["healthcheck"]["test"]
        assert test == ["CMD", "python", "docker/healthcheck.py", name], name
        assert name in healthcheck.CHECKS
    for name in ("postgres", "redis"):
        assert services[name]["healthcheck"]["test"][0] == "CMD"


def test_dockerignore_keeps_local_state_secrets_and_history_out_of_the_image():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".venv", "var", ".env", "docker/.env", ".git", "**/__pycache__", ".pytest_cache", ".hypothesis"} <= ignored
    assert "bench" in ignored or "bench/results" in ignored


def test_the_image_installs_the_lock_file_alone_before_the_code():
    instructions = [line.split(None, 1) for line in (ROOT / "docker" / "Dockerfile").read_text().splitlines()
                    if line.strip() and not line.startswith("#") and not line.startswith(" ")]
    copies = [(i, args) for i, (op, args) in enumerate(instructions) if op == "COPY"]
    install = next(i for i, (op, args) in enumerate(instructions) if op == "RUN" and "pip install" in args)
    assert copies[0][1].split() == ["requirements/base.lock.txt", "requirements/base.lock.txt"]
    assert copies[0][0] < install < copies[1][0]  # the code comes after: a code change keeps the layer
    assert "--no-deps -r requirements/base.lock.txt" in instructions[install][1]


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line or line.startswith("-r"):
            continue
        line, _, marker = line.partition(";")
        if marker and not Marker(marker).evaluate():
            continue  # for another Python than this one
        name, version = line.strip().split("==")
        pins[re.sub(r"[-_.]+", "-", name.split("[")[0]).lower()] = version
    return pins


def test_the_lock_file_pins_what_base_txt_asks_for_and_what_the_suite_runs():
    lock, base = _pins(ROOT / "requirements" / "base.lock.txt"), _pins(ROOT / "requirements" / "base.txt")
    for name, pinned in base.items():
        assert lock.get(name) == pinned, f"{name}: base.txt {pinned}, lock {lock.get(name)}"
    for name, pinned in lock.items():
        assert version(name) == pinned, f"{name}: the lock says {pinned}, the suite runs {version(name)}"


def test_docker_compose_accepts_the_file_where_the_client_has_compose(tmp_path):
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip("no `docker compose` client here: the compose file is checked by parsing only")
    result = subprocess.run([docker, "compose", "-f", str(ROOT / "docker" / "compose.yaml"), "config", "-q"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_ci_runs_exactly_readmes_test_command_after_its_setup():
    script = (ROOT / ".ci" / "run").read_text()
    commands = [line.strip() for line in script.splitlines() if line.strip() and not line.strip().startswith("#")]
    assert commands[-1] == "exec python3 manage.py test"
    assert "`python3 manage.py test`" in (ROOT / "README.md").read_text()
    assert "pg_ctlcluster --skip-systemctl-redirect" in script  # starts PostgreSQL where none answers
    assert subprocess.run(["bash", "-n", str(ROOT / ".ci" / "run")]).returncode == 0


def test_readme_links_only_to_files_in_the_repository():
    text = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)#]+)\)", text)
    assert targets, "no links found: the pattern is wrong"
    for target in targets:
        if target.startswith(("http://", "https://")):
            continue
        assert not target.startswith(".."), f"{target}: outside the repository"
        assert (ROOT / target).exists(), f"{target}: no such file"
    assert "../shared" not in text
