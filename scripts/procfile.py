"""The Procfile, read once for everything that starts its processes: `manage.py up` (under honcho),
the systemd units (deploy/systemd), and the tests that keep Docker's compose file in step.

Standard library only: the systemd installer runs this before any virtualenv exists.
"""
from __future__ import annotations

import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROCFILE = ROOT / "Procfile"
# The programs a Procfile line may start with, all installed into the virtualenv's bin/.
VENV_PROGRAMS = ("alembic", "celery", "gunicorn", "python")


def read(path: Path = PROCFILE) -> dict[str, str]:
    """{process name: command}, in the file's order."""
    processes = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, command = line.partition(":")
        if not sep or not name.strip().isidentifier() or not command.strip():
            raise ValueError(f"{path}:{number}: not a `name: command` line: {line!r}")
        processes[name.strip()] = command.strip()
    return processes


def in_venv(command: str, bindir: Path) -> str:
    """The command with its program taken from the virtualenv `bindir` (`python` too), so it runs the
    pinned versions whatever PATH says. The rest of the line is left to the shell, as honcho does."""
    program, _, rest = command.partition(" ")
    if program not in VENV_PROGRAMS:
        raise ValueError(f"{command!r} starts with {program!r}, not one of {VENV_PROGRAMS}")
    return f"{shlex.quote(str(bindir / program))} {rest}".rstrip()
