"""The Celery app for `celery -A workers worker|beat|flower`, built by the Flask app factory."""
from app import create_app

flask_app = create_app()
celery_app = flask_app.extensions["celery"]

from celery import signals  # noqa: E402

from app.infra.logs import setup_logging  # noqa: E402


@signals.setup_logging.connect
def _json_logs(**_):
    """Celery's own loggers too write one JSON object per line."""
    setup_logging("worker")
