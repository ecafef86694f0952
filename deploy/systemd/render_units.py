#!/usr/bin/env python3
"""Write one systemd unit per Procfile line, and a target that starts them all (deploy/systemd/install.sh
calls this; standard library only). A new Procfile line becomes a new unit with no edit here.

    python3 deploy/systemd/render_units.py --dir /opt/tianwang --user tianwang \
        --env-file /etc/tianwang/tianwang.env --out /etc/systemd/system

`release` is a oneshot that every other unit requires and starts after; the others restart always.
Each runs the virtualenv's program (`<dir>/.venv/bin/…`) as `--user`, with its settings from
`--env-file`, on a read-only system (only `<dir>/var` is writable, for a SQLite database).
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from scripts import procfile  # noqa: E402

PREFIX = "tianwang"
ONESHOT = "release"
# Seconds systemd waits after SIGTERM: a worker finishes its current task (warm shutdown), gunicorn
# its requests (graceful_timeout 30), the listener the answers to sends in flight.
STOP_TIMEOUT = 60

HARDENING = """\
NoNewPrivileges=yes
ProtectSystem=strict
ReadWritePaths=-{dir}/var
ProtectHome={protect_home}
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictSUIDSGID=yes
RestrictRealtime=yes
RestrictNamespaces=yes
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
LockPersonality=yes
SystemCallArchitectures=native
CapabilityBoundingSet=
UMask=0027
"""


def exec_start(command: str, bindir: Path) -> str:
    """The Procfile command as an ExecStart= line: the venv's program, run directly; through /bin/sh
    only where the line uses shell expansions (`${WORKER_CONCURRENCY:-2}`), as honcho would run it."""
    line = procfile.in_venv(command, bindir)
    if "'" in line or "\\" in line:
        raise ValueError(f"cannot put {command!r} in a unit: quotes and backslashes are not supported")
    line = line.replace("%", "%%")  # systemd specifiers
    if "$" in line:
        return "/bin/sh -c 'exec " + line.replace("$", "$$") + "'"
    return line


def unit(name: str, command: str, *, app_dir: Path, user: str, group: str, env_file: Path) -> str:
    release = f"{PREFIX}-{ONESHOT}.service"
    after = "network-online.target postgresql.service redis-server.service"
    if name == ONESHOT:
        needs, service = "", "Type=oneshot\nRemainAfterExit=yes\n"
    else:
        needs = f"Requires={release}\n"
        after = f"{release} {after}"
        service = f"Type=simple\nRestart=always\nRestartSec=2\nTimeoutStopSec={STOP_TIMEOUT}\n"
    protect_home = "read-only" if str(app_dir).startswith(("/home/", "/root/")) else "yes"
    return (
        f"# Written by deploy/systemd/render_units.py from the Procfile's `{name}` line; re-run install.sh\n"
        f"# after changing the Procfile instead of editing this file.\n"
        f"[Unit]\nDescription=天网 task bridge: {name}\n{needs}After={after}\nWants=network-online.target\n"
        f"PartOf={PREFIX}.target\nStartLimitIntervalSec=0\n\n"
        f"[Service]\n{service}User={user}\nGroup={group}\nWorkingDirectory={app_dir}\n"
        f"EnvironmentFile={env_file}\n"
        f"Environment=PATH={app_dir}/.venv/bin:/usr/bin:/bin PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1\n"
        f"ExecStart={exec_start(command, app_dir / '.venv' / 'bin')}\n"
        + HARDENING.format(dir=app_dir, protect_home=protect_home)
    )


def target(names: list[str]) -> str:
    services = " ".join(f"{PREFIX}-{name}.service" for name in names)
    return (f"# Written by deploy/systemd/render_units.py: every process of the Procfile.\n"
            f"[Unit]\nDescription=天网 task bridge (every Procfile process)\nWants={services}\n"
            f"After={services}\n\n[Install]\nWantedBy=multi-user.target\n")


def render(app_dir: Path, user: str, env_file: Path, out: Path, source: Path = procfile.PROCFILE,
           group: str | None = None) -> list[Path]:
    group = group or user
    for value in (str(app_dir), user, group, str(env_file)):
        if not re.fullmatch(r"[\w./@+-]+", value):
            raise ValueError(f"{value!r}: use a path or name without spaces or quotes")
    lines = procfile.read(source)
    if ONESHOT not in lines:
        raise ValueError(f"the Procfile has no `{ONESHOT}` line")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, command in lines.items():
        path = out / f"{PREFIX}-{name}.service"
        path.write_text(unit(name, command, app_dir=app_dir, user=user, group=group, env_file=env_file))
        written.append(path)
    path = out / f"{PREFIX}.target"
    path.write_text(target(list(lines)))
    return [*written, path]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", required=True, type=Path, help="the project's directory on this host")
    parser.add_argument("--user", required=True, help="the user the processes run as")
    parser.add_argument("--group", help="their group (default: named like the user)")
    parser.add_argument("--env-file", required=True, type=Path, help="the EnvironmentFile with the settings")
    parser.add_argument("--out", required=True, type=Path, help="where to write the units")
    parser.add_argument("--procfile", type=Path, help="the Procfile to read (default: the one in --dir)")
    args = parser.parse_args(argv)
    app_dir = args.dir.resolve()
    try:
        written = render(app_dir, args.user, args.env_file, args.out, args.procfile or app_dir / "Procfile",
                         args.group)
    except ValueError as exc:
        parser.error(str(exc))
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
