"""The console's blueprint, on which its modules (auth, pages, actions) put their routes."""
from __future__ import annotations

from flask import Blueprint

from app.console.display import register_filters

bp = Blueprint("console", __name__, url_prefix="/console", template_folder="templates",
               static_folder="static", static_url_path="/static")
register_filters(bp)
