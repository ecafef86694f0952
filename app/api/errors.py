"""Every answer in the envelope `{"code", "message", "data"[, "errors"]}` — errors included, never HTML."""
from __future__ import annotations

import logging

import kombu.exceptions
import redis
from flask import jsonify
from flask_smorest import Api
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

from app.schemas import EnvelopeSchema

log = logging.getLogger(__name__)

MESSAGES = {400: "malformed request body", 401: "missing or wrong API key", 404: "not found",
            405: "method not allowed", 409: "conflict", 413: "request body over 1 MiB",
            422: "validation failed", 500: "internal error", 503: "service unavailable"}


def envelope(code: int, message: str, data=None, errors: dict | None = None):
    body = {"code": code, "message": message, "data": data}
    if errors:
        body["errors"] = errors
    response = jsonify(body)
    response.status_code = code
    return response


def flatten(messages, prefix: str = "") -> dict[str, list[str]]:
    """marshmallow's nested error dict as `{"trigger.keyword": [...]}`; `_schema` errors name their parent."""
    out: dict[str, list[str]] = {}
    if isinstance(messages, dict):
        for key, value in messages.items():
            key = str(key)
            path = prefix if key == "_schema" else (f"{prefix}.{key}" if prefix else key)
            for k, v in flatten(value, path).items():
                out.setdefault(k, []).extend(v)
    elif isinstance(messages, (list, tuple)):
        if all(isinstance(m, str) for m in messages):
            out[prefix or "body"] = list(messages)
        else:
            for item in messages:
                for k, v in flatten(item, prefix).items():
                    out.setdefault(k, []).extend(v)
    else:
        out[prefix or "body"] = [str(messages)]
    return out


class EnvelopeApi(Api):
    """flask-smorest's Api, answering its errors (webargs 422s included) in our envelope."""

    ERROR_SCHEMA = EnvelopeSchema  # and documenting them so in the OpenAPI document

    def handle_http_exception(self, error: HTTPException):
        code = error.code or 500
        data = getattr(error, "data", None) or {}
        errors = None
        if "messages" in data:  # webargs validation: {"json": {...}} or {"query": {...}}
            merged: dict = {}
            for location_errors in data["messages"].values():
                merged.update(flatten(location_errors))
            errors = merged
        message = data.get("message") or MESSAGES.get(code) or error.name
        if code == 400 and not data:
            message = MESSAGES[400]
        response = envelope(code, message, None, errors)
        for name, value in error.get_headers():  # e.g. a 405's Allow
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    def init_app(self, app, *args, **kwargs):
        super().init_app(app, *args, **kwargs)

        @app.errorhandler(OperationalError)
        def _database_down(exc):
            log.error("database unavailable: %s", exc.orig if hasattr(exc, "orig") else exc)
            return envelope(503, "database unavailable, nothing was written; try again")

        @app.errorhandler(redis.RedisError)
        @app.errorhandler(kombu.exceptions.OperationalError)
        def _queue_down(exc):
            log.error("Redis or the broker unavailable: %s", exc)
            return envelope(503, "Redis or the message broker is unavailable; try again")

        @app.errorhandler(Exception)
        def _unexpected(exc):
            if isinstance(exc, HTTPException):
                return self.handle_http_exception(exc)
            log.exception("unhandled error")
            return envelope(500, MESSAGES[500])
