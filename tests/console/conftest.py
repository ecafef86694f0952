"""Fixtures of the console suite: an app with the console on (two users: an operator and a viewer),
against SQLite and the session's PostgreSQL like tests/api, and clients signed in as each."""
from __future__ import annotations

import re

import pytest

from app import create_app
from app.console import users
from tests.conftest import make_settings

SECRET = "console-test-secret-3c9e51b7a2"
PASSWORDS = {"alice": "alice-pass-41", "bob": "bob-pass-77"}  # alice operates, bob views
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture(scope="session")
def console_users_line() -> str:
    return ",".join([users.entry("alice", users.OPERATOR, PASSWORDS["alice"]),
                     users.entry("bob", users.VIEWER, PASSWORDS["bob"])])


def console_settings(db_url: str, redis_url: str, users_line: str, **overrides):
    return make_settings(db_url, redis_url, console_secret_key=SECRET, console_users=users_line,
                         console_cookie_secure=False, **overrides)


@pytest.fixture
def console_app(app, db_url, redis_base, console_users_line):
    """The suite's `app` (its stores emptied), made again with the console on."""
    application = create_app(console_settings(db_url, f"{redis_base}/8", console_users_line))
    application.config["TESTING"] = True
    return application


@pytest.fixture
def api(client, console_app):
    """The JSON API with the key (the suite's `client`, on the same stores), to make what the console shows."""
    return client


def csrf_token(client, path: str = "/console/login") -> str:
    found = CSRF_FIELD.search(client.get(path).get_data(as_text=True))
    assert found, f"no CSRF token on {path}"
    return found.group(1)


def sign_in(client, name: str, password: str | None = None):
    token = csrf_token(client)
    return client.post("/console/login", data={"username": name, "password": password or PASSWORDS[name],
                                                "csrf_token": token})


@pytest.fixture
def operator(console_app):
    client = console_app.test_client()
    answer = sign_in(client, "alice")
    assert answer.status_code == 303, answer.get_data(as_text=True)
    return client


@pytest.fixture
def viewer(console_app):
    client = console_app.test_client()
    assert sign_in(client, "bob").status_code == 303
    return client


def post_action(client, path: str, page: str, **form):
    """POST a console form the way the page does: with the CSRF token the page (`page`) carries."""
    return client.post(path, data={"csrf_token": csrf_token(client, page), **form})


def text(answer) -> str:
    return answer.get_data(as_text=True)
