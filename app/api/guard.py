"""Before every /api request: the API key, and a body that is a JSON object (CONTRACTS.md §1)."""
from __future__ import annotations

import hmac
import json

from flask import Flask, current_app, request

from app.api.errors import envelope

PUBLIC = frozenset({"/api/health", "/api/ready", "/api/openapi.json", "/metrics"})
MAX_DEPTH = 32  # nesting of objects and arrays in a body: far past any task's, far below the parser's limit


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
        body = json.loads(raw, parse_constant=_not_json) if raw else None
    except RecursionError:  # the parser's own nesting limit (about 1,000 levels)
        return envelope(400, f"body nested deeper than {MAX_DEPTH} levels")
    except (ValueError, UnicodeDecodeError):
        return envelope(400, "body is not valid JSON")
    if not isinstance(body, dict):
        return envelope(400, "body must be a JSON object")
    problem = _unstorable(body)
    if problem:
        return envelope(400, problem)
    if not request.is_json:
        return envelope(400, "Content-Type must be application/json")
    return None


def _not_json(constant: str):
    raise ValueError(f"{constant} is not a JSON number")  # Python's parser takes NaN and ±Infinity


def _unstorable(body: dict) -> str | None:
    """Why the parsed body cannot be taken whole, or None. Walked without recursion: nesting deeper than
    MAX_DEPTH is refused here, before validation, storage or matching recurse into it."""
    stack = [(body, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            items = value.items()
        elif isinstance(value, list):
            items = ((None, item) for item in value)
        else:
            problem = _bad_text(value) if isinstance(value, str) else None
            if problem:
                return problem
            continue
        if depth > MAX_DEPTH:
            return f"body nested deeper than {MAX_DEPTH} levels"
        for key, item in items:
            problem = _bad_text(key) if key is not None else None
            if problem:
                return problem
            stack.append((item, depth + 1))
    return None


def _bad_text(text: str) -> str | None:
    """JSON escapes can spell what no database stores: a lone surrogate (not Unicode) or NUL."""
    if "\x00" in text:
        return "body holds a NUL character (\\u0000), which cannot be stored"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "body holds a lone surrogate (\\ud800-\\udfff): not valid Unicode"
    return None
