"""The 天网 task bridge: the Flask app factory."""
from __future__ import annotations

import logging

from flask import Flask

from app.config import Settings

__version__ = "0.1.0"
log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> Flask:
    from flask_swagger_ui import get_swaggerui_blueprint

    from app import runtime
    from app.api import dispatch, system, tasks
    from app.api.guard import init_guard
    from app.console import init_console
    from app.extensions import api, celery_init_app, init_limiter
    from app.metrics import metrics_view
    from app.services import callbacks
    from app.state import tasks as task_states

    settings = settings or Settings.from_env()
    settings.check()
    if not settings.auth_enabled:
        log.warning("!!! TIANWANG_AUTH=off: the intake API accepts requests WITHOUT an API key !!!")
    runtime.configure(settings)

    app = Flask(__name__)
    app.config.update(
        SETTINGS=settings,
        VERSION=__version__,
        MAX_CONTENT_LENGTH=1024 * 1024,
        API_TITLE="天网 task bridge",
        API_VERSION=__version__,
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api",
        OPENAPI_JSON_PATH="openapi.json",
        CELERY={"broker_url": settings.celery_broker_url, "result_backend": settings.celery_result_backend},
    )
    # Readable Chinese in every JSON answer (no \uXXXX escapes), and say the encoding.
    app.json.ensure_ascii = False
    app.json.mimetype = "application/json; charset=utf-8"
    celery_init_app(app)
    task_states.set_callback_hook(callbacks.wake)
    init_limiter(app, settings)
    init_guard(app, settings)
    api.init_app(app)
    api.register_blueprint(tasks.blp)
    api.register_blueprint(system.blp)
    api.register_blueprint(dispatch.blp)
    docs = get_swaggerui_blueprint("/api/docs", "/api/openapi.json", config={"app_name": "天网 task bridge",
                                                                                  "validatorUrl": None})
    app.register_blueprint(docs)
    app.add_url_rule("/api/docs", endpoint="docs_root", view_func=app.view_functions["swagger_ui.show"])
    app.add_url_rule("/metrics", endpoint="metrics", view_func=metrics_view)
    init_console(app, settings)
    if settings.trusted_proxies:
        # The client address, scheme and host the proxies saw, taken from the rightmost
        # `trusted_proxies` X-Forwarded-* entries only: what a client wrote itself is never trusted.
        from werkzeug.middleware.proxy_fix import ProxyFix

        hops = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)
    return app
