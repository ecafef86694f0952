"""The operator console at /console (issue 11 item 3), served by the web process beside the API.

Server-rendered pages (Jinja) with a little vanilla JS of our own; nothing is loaded from elsewhere.
Operators sign in with a name and password from CONSOLE_USERS (not the 天网 API key); the session is a
cookie signed with CONSOLE_SECRET_KEY and sent to /console only; every POST carries a CSRF token
(Flask-WTF, checked for the console's routes only, so the JSON API is unaffected). A `viewer` reads;
an `operator` may also cancel, retry and re-deliver, and each such action is written to the task's
history with the operator's name. Without CONSOLE_SECRET_KEY the console is off and says so.
"""
from __future__ import annotations

import logging
from datetime import timedelta

from flask import Blueprint, Flask, Response

from app.console import users as console_users
from app.console.blueprint import bp

log = logging.getLogger(__name__)
off = Blueprint("console_off", __name__, url_prefix="/console")
OFF_TEXT = "控制台未启用：服务器未设置 CONSOLE_SECRET_KEY（见 README 的 Console 一节）。\n" \
           "The console is off: CONSOLE_SECRET_KEY is not set.\n"


@off.route("/", defaults={"rest": ""})
@off.route("/<path:rest>", methods=["GET", "POST"])
def console_is_off(rest):
    return Response(OFF_TEXT, status=503, content_type="text/plain; charset=utf-8")


def init_console(app: Flask, settings) -> None:
    """Turn the console on (with its session, login and CSRF settings) or, without a secret, off."""
    from app.extensions import csrf, login_manager

    if not settings.console_secret_key:
        log.warning("console off: CONSOLE_SECRET_KEY is not set (/console answers 503)")
        app.register_blueprint(off)
        return
    users = console_users.parse(settings.console_users)  # a bad entry stops the start with its reason
    if not users:
        log.warning("console on, but CONSOLE_USERS names nobody: nobody can sign in")
    app.secret_key = settings.console_secret_key
    app.config.update(
        CONSOLE_USERS=users,
        SESSION_COOKIE_NAME="tw_console",
        SESSION_COOKIE_PATH="/console",  # the API never sees it
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.console_cookie_secure,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=settings.console_session_hours),
        WTF_CSRF_CHECK_DEFAULT=False,  # checked by the console's own before_request only
        WTF_CSRF_TIME_LIMIT=None,  # a token lives as long as the session that holds it
    )
    login_manager.init_app(app)
    csrf.init_app(app)
    from app.console import actions, auth, pages  # noqa: F401  (their routes, on bp)

    app.register_blueprint(bp)
    log.info("console on at /console for %d user(s)", len(users))
