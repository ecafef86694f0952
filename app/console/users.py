"""The console's users: names, roles and password hashes from CONSOLE_USERS, never from a table.

CONSOLE_USERS is `name:role:hash` entries separated by commas, e.g.
`alice:operator:scrypt:32768:8:1$salt$hex,bob:viewer:scrypt:...`; `python3 manage.py console-user NAME
--role ROLE` prints one. A hash is werkzeug's (`generate_password_hash`): it holds colons and `$` but
never a comma, so the first two colons of an entry end its name and role.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cache

from flask_login import UserMixin
from werkzeug.security import check_password_hash, generate_password_hash

OPERATOR, VIEWER = "operator", "viewer"
ROLES = (OPERATOR, VIEWER)
# Letters (any script), digits and . _ @ -: what a history line's "by" can show plainly.
NAME = re.compile(r"^[\w.@-]{1,64}$")
# Actors the services already use for 天网 and the API: an operator named so would be mistaken for them.
RESERVED = frozenset({"api", "天网"})
HASH_METHODS = ("scrypt:", "pbkdf2:")


class UsersError(ValueError):
    """CONSOLE_USERS cannot be read; the message names the entry and what is wrong with it."""


@dataclass(frozen=True)
class User(UserMixin):
    name: str
    role: str
    password_hash: str

    @property
    def can_act(self) -> bool:
        return self.role == OPERATOR

    def get_id(self) -> str:
        # The session holds the name and a fingerprint of the hash: a new password ends old sessions.
        return f"{self.name}:{fingerprint(self.password_hash)}"


def fingerprint(password_hash: str) -> str:
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


def hash_password(password: str) -> str:
    if not password:
        raise ValueError("the password is empty")
    return generate_password_hash(password)


def entry(name: str, role: str, password: str) -> str:
    """One CONSOLE_USERS entry; raises UsersError for a name or role the console would refuse."""
    user = _checked(name, role, hash_password(password), where=name)
    return f"{user.name}:{user.role}:{user.password_hash}"


def parse(text: str) -> dict[str, User]:
    """CONSOLE_USERS as users by name; raises UsersError naming the first bad entry."""
    users: dict[str, User] = {}
    for number, raw in enumerate((part.strip() for part in (text or "").split(",")), start=1):
        if not raw:
            continue
        name, role, password_hash = (raw.split(":", 2) + ["", ""])[:3]
        user = _checked(name.strip(), role.strip(), password_hash.strip(), where=f"entry {number}")
        if user.name in users:
            raise UsersError(f"CONSOLE_USERS entry {number}: {user.name!r} is named twice")
        users[user.name] = user
    return users


def _checked(name: str, role: str, password_hash: str, where: str) -> User:
    if not NAME.match(name):
        raise UsersError(f"CONSOLE_USERS {where}: the name must be 1-64 letters, digits or . _ @ -")
    if name.lower() in RESERVED:
        raise UsersError(f"CONSOLE_USERS {where}: {name!r} is reserved (the history uses it for 天网 and the API)")
    if role not in ROLES:
        raise UsersError(f"CONSOLE_USERS {where}: role {role!r} is not one of {', '.join(ROLES)}")
    if not password_hash.startswith(HASH_METHODS) or "$" not in password_hash:
        raise UsersError(f"CONSOLE_USERS {where}: not a password hash (make one with "
                         f"`python3 manage.py console-user {name} --role {role}`)")
    return User(name, role, password_hash)


def authenticate(users: dict[str, User], name: str, password: str) -> User | None:
    """The user if the password is theirs; a wrong name takes as long as a wrong password."""
    user = users.get(name)
    if user is None:
        check_password_hash(_dummy_hash(), password)
        return None
    return user if check_password_hash(user.password_hash, password) else None


@cache
def _dummy_hash() -> str:
    """Checked when the name is unknown, so a wrong name costs the time a wrong password does."""
    return generate_password_hash("not a password of anyone")


def by_session_id(users: dict[str, User], session_id: str) -> User | None:
    name, _, mark = session_id.rpartition(":")
    user = users.get(name)
    return user if user is not None and fingerprint(user.password_hash) == mark else None
