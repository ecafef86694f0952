"""The web process: `gunicorn wsgi:app`."""
from app import create_app
from app.infra.logs import setup_logging

setup_logging("web")
app = create_app()
