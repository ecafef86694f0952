"""`python3 manage.py console-user NAME [--role operator|viewer]`: a console user's CONSOLE_USERS entry.

Asks for the password twice (on a terminal; piped, it reads one line from standard input) and prints
the line to put in the environment. Nothing is stored: the users live in CONSOLE_USERS only.
"""
from __future__ import annotations

import argparse
import getpass
import sys

from app.console import users


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="manage.py console-user", description=(
        "Print a console user's CONSOLE_USERS entry (name, role and password hash) for the environment."))
    parser.add_argument("name", help="the sign-in name (letters, digits, . _ @ -); the history shows it")
    parser.add_argument("--role", choices=users.ROLES, default=users.VIEWER,
                        help="operator: may cancel, retry and re-deliver; viewer: reads only (default)")
    return parser.parse_args(argv)


def read_password(stdin=sys.stdin) -> str:
    if not stdin.isatty():
        return stdin.readline().rstrip("\r\n")
    first = getpass.getpass("password: ")
    if first != getpass.getpass("again: "):
        raise ValueError("the two passwords differ")
    return first


def main(argv: list[str], stdin=sys.stdin, out=sys.stdout, err=sys.stderr) -> int:
    args = parse(argv)
    try:
        line = users.entry(args.name, args.role, read_password(stdin))
    except ValueError as exc:  # UsersError included
        print(f"console-user: {exc}", file=err)
        return 2
    # Single quotes: a shell, docker compose and python-dotenv all keep the hash's `$` as it is.
    print(f"CONSOLE_USERS='{line}'", file=out)
    print("Several users: join their entries with commas inside the quotes. Also set CONSOLE_SECRET_KEY "
          "(e.g. python3 -c 'import secrets; print(secrets.token_urlsafe(32))').", file=err)
    return 0
