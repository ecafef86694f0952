"""Signing in and out, who is asking on each request, and what every console request passes first:
its CSRF token (every POST), a signed-in user (every page but the sign-in page and the static files),
and for actions the operator role."""
from __future__ import annotations

import logging
from functools import wraps
from urllib.parse import urlsplit

from flask import abort, current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user, logout_user
from flask_wtf.csrf import CSRFError

from app.console import users
from app.console.blueprint import bp
from app.console.throttle import LoginThrottle
from app.extensions import csrf, login_manager

log = logging.getLogger(__name__)
PUBLIC_ENDPOINTS = frozenset({"console.login", "console.static"})

login_manager.login_view = "console.login"
login_manager.login_message = "请先登录"
login_manager.login_message_category = "info"
login_manager.session_protection = "basic"


@login_manager.user_loader
def load_user(session_id: str):
    return users.by_session_id(current_app.config.get("CONSOLE_USERS", {}), session_id)


@bp.before_request
def _guard():
    csrf.protect()  # POST/PUT/PATCH/DELETE only; raises CSRFError (400) without a valid token
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    if not current_user.is_authenticated:
        return login_manager.unauthorized()
    return None


@bp.after_request
def _headers(response):
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")  # CSRF's HTTPS check reads the referrer
    if request.endpoint != "console.static":
        response.headers["Cache-Control"] = "no-store"
    return response


@bp.errorhandler(403)
def _forbidden(_error):
    return render_template("console/error.html", code=403, title="无权操作",
                           message="只读账号（viewer）只能查看，不能操作任务。"), 403


@bp.errorhandler(404)
def _not_found(error):
    return render_template("console/error.html", code=404, title="找不到",
                           message=error.description or "没有这个页面。"), 404


@bp.errorhandler(CSRFError)
def _csrf_refused(error):
    log.warning("console: %s %s refused: %s", request.method, request.path, error.description,
                extra={"event": "console_csrf"})
    return render_template("console/error.html", code=400, title="安全校验失败",
                           message="表单的安全令牌（CSRF）缺失或已失效：请刷新页面后重试。"), 400


def operator_required(view):
    """Only the operator role may act; a viewer is refused (403) before anything is done."""
    @wraps(view)
    def checked(*args, **kwargs):
        if not current_user.can_act:
            log.warning("console: %s (%s) may not %s", current_user.name, current_user.role, request.path,
                        extra={"event": "console_forbidden"})
            abort(403)
        return view(*args, **kwargs)
    return checked


def throttle() -> LoginThrottle:
    """The sign-in throttle of this app (app.extensions["console_login_throttle"] replaces it)."""
    found = current_app.extensions.get("console_login_throttle")
    if found is None:
        found = LoginThrottle(current_app.config["SETTINGS"].console_login_max_failures)
        current_app.extensions["console_login_throttle"] = found
    return found


@bp.route("/login", methods=["GET", "POST"])
def login():
    if request.method == "GET":
        if current_user.is_authenticated:
            return redirect(url_for("console.overview"))
        return _login_page()
    name = request.form.get("username", "").strip()[:64]
    password = request.form.get("password", "")
    address = request.remote_addr
    wait = throttle().retry_after(name, address)
    if wait:
        log.warning("console sign-in refused for %r from %s: too many failures", name, address,
                    extra={"event": "console_login_throttled"})
        response = _login_page(f"登录失败次数过多，请 {-(-wait // 60)} 分钟后再试。", 429, name)
        response.headers["Retry-After"] = str(wait)
        return response
    user = users.authenticate(current_app.config["CONSOLE_USERS"], name, password)
    if user is None:
        throttle().failed(name, address)
        log.warning("console sign-in failed for %r from %s", name, address, extra={"event": "console_login_failed"})
        return _login_page("用户名或密码错误。", 401, name)
    throttle().succeeded(name)
    session.clear()  # nothing of the anonymous session (its CSRF token) carries over
    login_user(user)
    session.permanent = True  # lasts CONSOLE_SESSION_HOURS, not just until the browser closes
    log.info("console sign-in: %s (%s) from %s", user.name, user.role, address, extra={"event": "console_login"})
    return redirect(_local_next() or url_for("console.overview"), 303)


@bp.route("/logout", methods=["POST"])
def logout():
    log.info("console sign-out: %s", current_user.name, extra={"event": "console_logout"})
    logout_user()
    session.clear()
    flash("已退出登录。", "info")
    return redirect(url_for("console.login"), 303)


def _login_page(error: str | None = None, status: int = 200, name: str = ""):
    insecure = current_app.config["SESSION_COOKIE_SECURE"] and not request.is_secure
    response = current_app.make_response(render_template("console/login.html", error=error, name=name,
                                                         insecure=insecure))
    response.status_code = status
    return response


def _local_next() -> str | None:
    """`next` when it is a console page of this site (never another site: no open redirect)."""
    target = request.args.get("next") or ""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        if parts.netloc != request.host:
            return None
    if not parts.path.startswith("/console/") or "\\" in target:
        return None
    return parts.path + (f"?{parts.query}" if parts.query else "")
