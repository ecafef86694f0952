"""Before every /api request: the API key, and a body that is a JSON object (CONTRACTS.md §1)."""
from __future__ import annotations

import hmac
import json

from flask import Flask, current_app, request

from app.api.errors import envelope

PUBLIC = frozenset({"/api/health", "/api/ready", "/api/openapi.json", "/metrics"})


def presented_key() -> str | None:
    key = request.headers.get("X-API-Key")
    if key:
        return key
    auth = request.headers.get("Authorization", "")
    return auth[7:].strip() if auth.lower().startswith("bearer ") else None


def key_is_valid(presented: str | None, keys) -> bool:
    if not presented:
        return False
    # Compare against every key (no early exit) in constant time per key.
    ok = False
    for key in keys:
        ok |= hmac.compare_digest(presented.encode(), key.encode())
    return ok


def init_guard(app: Flask, settings) -> None:
    @app.before_request
    def _guard():
        path = request.path
        if not path.startswith("/api"):
            return None
        if settings.auth_enabled and path not in PUBLIC and not path.startswith("/api/docs"):
            if not key_is_valid(presented_key(), settings.api_keys):
                return envelope(401, "missing or wrong API key")
        if request.routing_exception is not None:
            return None  # 404 / 405 first: a body is only judged on a route that takes one
        if "\x00" in path:
            return envelope(404, "not found")
        if any("\x00" in value for value in request.args.values()):
            return envelope(422, "validation failed", None, {"query": ["NUL characters are not allowed"]})
        if request.method in ("POST", "PUT", "PATCH"):
            return _check_json_object()
        return None


def _check_json_object():
    raw = request.get_data(cache=True)  # raises 413 past MAX_CONTENT_LENGTH when Content-Length says so
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if request.content_length is None and len(raw) >= limit:
        # A chunked body has no Content-Length: werkzeug stops reading at the limit instead.
        return envelope(413, "request body over 1 MiB")
    try:
        body = json.loads(raw) if raw else None
    except (ValueError, UnicodeDecodeError):
        return envelope(400, "body is not valid JSON")
    if not isinstance(body, dict):
        return envelope(400, "body must be a JSON object")
    # JSON escapes can spell what no database stores: a lone surrogate (not Unicode) or NUL.
    for text in _strings(body):
        if "\x00" in text:
            return envelope(400, "body holds a NUL character (\\u0000), which cannot be stored")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return envelope(400, "body holds a lone surrogate (\\ud800-\\udfff): not valid Unicode")
    if not request.is_json:
        return envelope(400, "Content-Type must be application/json")
    return None


def _strings(value):
    """Every string in a parsed JSON value, keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
