"""Flask extensions, created unbound and initialised by the app factory."""
from __future__ import annotations

from celery import Celery, Task
from flask import Flask
from flask_limiter import Limiter, RateLimitExceeded
from flask_login import LoginManager
from flask_wtf.csrf import CSRFProtect

from app.api import ratelimits
from app.api.errors import EnvelopeApi
from app.schemas import LooseNumber, LooseText

api = EnvelopeApi()
# Documented by their metadata's anyOf (text or a whole number; a number or a numeric string), not as one type.
api.register_field(LooseText, None, None)
api.register_field(LooseNumber, None, None)
# The console's sign-in sessions and its CSRF tokens (app.console turns them on, for /console only).
login_manager = LoginManager()
csrf = CSRFProtect()


def celery_init_app(app: Flask) -> Celery:
    """The Celery app, configured from `celeryconfig` and the Flask config (Flask's examples/celery)."""

    class FlaskTask(Task):
        def __call__(self, *args, **kwargs):
            with app.app_context():
                return self.run(*args, **kwargs)

    celery_app = Celery(app.name, task_cls=FlaskTask)
    celery_app.config_from_object("celeryconfig")
    celery_app.conf.update(app.config["CELERY"])
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    return celery_app


# Request budgets (app.api.ratelimits says who is counted against what). Counters live in Redis (REDIS_URL,
# under REDIS_PREFIX), so every web process on every host shares them. Sliding windows: no burst of
# twice the budget across a window's edge, and two counters per caller, not a list of timestamps.
# While Redis does not answer, each process counts in its own memory (and logs it) rather than
# refusing or waving through every request; it goes back to Redis once Redis answers again.
limiter = Limiter(
    ratelimits.caller,
    application_limits=ratelimits.application_limits(),
    strategy="sliding-window-counter",
    swallow_errors=True,
    in_memory_fallback_enabled=True,
    request_identifier=ratelimits.endpoint_or_path,
)
limiter.request_filter(ratelimits.unlimited)

# For the console's login form: `@login_limit` on its view counts POSTs per client address
# (RATE_LIMIT_LOGIN); a GET of the form is not counted.
login_limit = limiter.limit(ratelimits.login_budget, key_func=ratelimits.address, methods=["POST"])


def init_limiter(app: Flask, settings) -> None:
    """Bind the limiter to `app`; before the key check, so that wrong keys are counted too."""
    from app.infra.keys import Keys

    app.config.update(
        RATELIMIT_STORAGE_URI=settings.redis_url,
        # A short timeout: a request must not wait long on a counter (it falls back to memory instead).
        RATELIMIT_STORAGE_OPTIONS={"key_prefix": Keys(settings.redis_prefix).rate_limits,
                                   "socket_timeout": 1, "socket_connect_timeout": 1},
    )
    limiter._storage_dead = False  # a new app starts on its own storage, not on an earlier app's fallback
    limiter.init_app(app)
    app.register_error_handler(RateLimitExceeded, lambda error: ratelimits.too_many_requests(error, limiter))
