"""The Procfile, the compose file and the local run command start the same processes the same way."""
import shlex
from pathlib import Path

import yaml

from celeryconfig import QUEUE_ORDER

ROOT = Path(__file__).resolve().parents[1]
PROCESSES = ("release", "web", "worker", "beat", "listener", "flower")


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
    assert "\nUSER bridge" in text and "HEALTHCHECK" in text
