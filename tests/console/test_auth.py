"""Signing in to the console: its own users (not the API key), signed sessions scoped to /console,
CSRF on every POST, failed sign-ins logged without the password and refused after too many."""
import logging

import pytest

from app import create_app, runtime
from app.console import throttle
from devkit import processes
from tests.conftest import make_settings
from tests.console.conftest import PASSWORDS, console_settings, csrf_token, sign_in, text

PAGES = ["/console/", "/console/tasks", "/console/tasks/T_1", "/console/customers/c1", "/console/dispatches"]


@pytest.mark.parametrize("page", PAGES)
def test_every_page_wants_a_signed_in_user(console_app, page):
    answer = console_app.test_client().get(page)
    assert answer.status_code == 302
    assert answer.location.startswith("/console/login?next=")


def test_the_api_key_is_not_a_console_login(console_app):
    client = console_app.test_client()
    answer = client.get("/console/", headers={"X-API-Key": processes.API_KEY})
    assert answer.status_code == 302 and "/console/login" in answer.location
    assert sign_in(client, "alice", processes.API_KEY).status_code == 401


def test_signing_in_sets_a_session_for_the_console_only_and_goes_where_it_was_asked(console_app):
    client = console_app.test_client()
    token = csrf_token(client)
    answer = client.post("/console/login?next=/console/dispatches?status=failed",
                         data={"username": "alice", "password": PASSWORDS["alice"], "csrf_token": token})
    assert answer.status_code == 303 and answer.location == "/console/dispatches?status=failed"
    cookie = answer.headers["Set-Cookie"]
    assert "tw_console=" in cookie and "Path=/console" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    page = client.get("/console/")
    assert page.status_code == 200 and "alice" in text(page) and "operator" in text(page)


@pytest.mark.parametrize("target", ["https://evil.example/console/", "//evil.example/console/", "/api/task/list",
                                    "/console\\@evil.example"])
def test_next_never_leads_off_the_console(console_app, target):
    client = console_app.test_client()
    token = csrf_token(client)
    answer = client.post("/console/login", query_string={"next": target},
                         data={"username": "bob", "password": PASSWORDS["bob"], "csrf_token": token})
    assert answer.status_code == 303 and answer.location == "/console/"


def test_a_wrong_password_is_refused_and_logged_without_it(console_app, caplog):
    client = console_app.test_client()
    with caplog.at_level(logging.WARNING, logger="app.console.auth"):
        answer = sign_in(client, "alice", "guess-Xq7")
    assert answer.status_code == 401 and "用户名或密码错误" in text(answer)
    assert client.get("/console/").status_code == 302
    logged = [r.getMessage() for r in caplog.records]
    assert any("sign-in failed for 'alice'" in line for line in logged), logged
    assert not any("guess-Xq7" in line for line in logged)


def test_too_many_failures_lock_the_name_even_with_the_right_password(console_app):
    limit = console_app.config["SETTINGS"].console_login_max_failures
    client = console_app.test_client()
    for _ in range(limit):
        assert sign_in(client, "alice", "wrong").status_code == 401
    locked = sign_in(client, "alice")
    assert locked.status_code == 429 and "登录失败次数过多" in text(locked)
    assert 0 < int(locked.headers["Retry-After"]) <= throttle.WINDOW_SECONDS
    assert sign_in(client, "bob").status_code == 303  # another name from the same address still may
    runtime.current().redis.flushdb()  # the window over
    assert sign_in(console_app.test_client(), "alice").status_code == 303


def test_an_address_is_locked_after_many_failures_across_names(console_app):
    limit = console_app.config["SETTINGS"].console_login_max_failures * throttle.ADDRESS_FACTOR
    client = console_app.test_client()
    for number in range(limit):
        assert sign_in(client, f"stranger{number}", "x").status_code == 401
    assert sign_in(client, "bob").status_code == 429
    elsewhere = console_app.test_client()
    elsewhere.environ_base["REMOTE_ADDR"] = "10.0.0.9"
    assert sign_in(elsewhere, "bob").status_code == 303


def test_a_post_without_the_csrf_token_is_refused(console_app):
    client = console_app.test_client()
    client.get("/console/login")
    answer = client.post("/console/login", data={"username": "alice", "password": PASSWORDS["alice"]})
    assert answer.status_code == 400 and "CSRF" in text(answer)
    answer = client.post("/console/login", data={"username": "alice", "password": PASSWORDS["alice"],
                                                  "csrf_token": "forged"})
    assert answer.status_code == 400
    assert client.get("/console/").status_code == 302


def test_sign_out_is_a_post_with_the_token(operator):
    assert operator.get("/console/logout").status_code == 405
    assert operator.post("/console/logout").status_code == 400
    assert operator.get("/console/").status_code == 200
    answer = operator.post("/console/logout", data={"csrf_token": csrf_token(operator, "/console/")})
    assert answer.status_code == 303
    assert operator.get("/console/").status_code == 302


def test_the_json_api_needs_no_csrf_token_and_gets_no_cookie(console_app):
    api = console_app.test_client()  # the API of the app whose console is on
    api.environ_base["HTTP_X_API_KEY"] = processes.API_KEY
    answer = api.post("/api/task/receive", json={
        "task_id": "T_api", "type": "t", "trigger": {"type": "customer_reply", "keyword": "好"},
        "action": {"type": "send_message", "message": "m"}})
    assert answer.status_code == 200, answer.get_json()
    assert "Set-Cookie" not in answer.headers
    assert api.post("/api/task/cancel", json={"task_id": "T_api"}).status_code == 200


def test_pages_carry_security_headers_and_are_not_cached(operator):
    answer = operator.get("/console/")
    assert "default-src 'self'" in answer.headers["Content-Security-Policy"]
    assert answer.headers["X-Frame-Options"] == "DENY" and answer.headers["Cache-Control"] == "no-store"
    script = operator.get("/console/static/console.js")
    assert script.status_code == 200 and b"data-confirm" in script.data


def test_without_a_secret_the_console_is_off_and_says_so(db_url, redis_base, caplog):
    with caplog.at_level(logging.WARNING, logger="app.console"):
        application = create_app(make_settings(db_url, f"{redis_base}/8"))
    assert any("console off: CONSOLE_SECRET_KEY is not set" in r.getMessage() for r in caplog.records)
    for page in ("/console", "/console/", "/console/tasks/T_1"):
        answer = application.test_client().get(page, follow_redirects=True)
        assert answer.status_code == 503 and "CONSOLE_SECRET_KEY" in text(answer)


def test_a_bad_users_entry_stops_the_start_with_its_reason(db_url, redis_base):
    with pytest.raises(ValueError, match="CONSOLE_USERS entry 1: role 'root'"):
        create_app(console_settings(db_url, f"{redis_base}/8", "alice:root:scrypt:1$a$b"))
