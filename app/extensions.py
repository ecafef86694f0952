"""Flask extensions, created unbound and initialised by the app factory."""
from __future__ import annotations

from celery import Celery, Task
from flask import Flask

from app.api.errors import EnvelopeApi
from app.schemas import LooseNumber, LooseText

api = EnvelopeApi()
# Documented by their metadata's anyOf (text or a whole number; a number or a numeric string), not as one type.
api.register_field(LooseText, None, None)
api.register_field(LooseNumber, None, None)


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
