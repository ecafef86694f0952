"""Who a request is counted against, and the 429 it gets past its budget (the limiter: app.extensions).

- An /api request with a valid API key counts against that key (a digest of it, never the key itself):
  `RATE_LIMIT_PER_KEY`, all /api routes together.
- An /api request without a valid key (the OpenAPI document and docs page, and wrong or missing keys,
  which are then refused with 401) counts against its client address: `RATE_LIMIT_PER_IP`. The address
  is the one ProxyFix gives (`TRUSTED_PROXIES`); an IPv6 client by its /64, what one subscriber holds.
  With `TIANWANG_AUTH=off` every caller is an address, and gets the per-key budget.
- Never counted: the probes `/api/health` and `/api/ready`, and `/metrics`. A load balancer or
  Prometheus asking every second from one address must never be turned away into a false "down", and
  a probe must answer while Redis (where the counters live) does not.
- Pages outside /api (the console) are counted only where they ask for it (`login_limit`).
"""
from __future__ import annotations

import hashlib
import ipaddress
import math
import time

from flask import current_app, g, request
from flask_limiter import ApplicationLimit, RateLimitExceeded

from app.api.errors import envelope
from app.api.guard import key_is_valid, presented_key

UNLIMITED = frozenset({"/api/health", "/api/ready", "/metrics"})


def _settings():
    return current_app.config["SETTINGS"]


def client_address() -> str:
    """The client's address as ProxyFix gives it; an IPv6 one as its /64."""
    raw = request.remote_addr or "unknown"
    try:
        address = ipaddress.ip_address(raw)
    except ValueError:
        return raw
    if address.version == 6:
        if address.ipv4_mapped:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def caller() -> str:
    """`key:<digest>` for a valid API key, else `ip:<address>`; worked out once per request."""
    if "rate_caller" not in g:
        settings = _settings()
        key = presented_key()
        if settings.auth_enabled and key_is_valid(key, settings.api_keys):
            g.rate_caller = "key:" + hashlib.sha256(key.encode()).hexdigest()[:20]
        else:
            g.rate_caller = "ip:" + client_address()
    return g.rate_caller


def address() -> str:
    return "ip:" + client_address()


def unlimited() -> bool:
    """A probe or /metrics: no limit is even looked up (so no Redis round trip)."""
    return request.path in UNLIMITED


def _api() -> bool:
    return request.path == "/api" or request.path.startswith("/api/")


def _keyed() -> bool:
    return caller().startswith("key:") or not _settings().auth_enabled


def application_limits() -> list[ApplicationLimit]:
    """The two budgets shared by every /api route; each is read from the settings per request, so a
    limit set to `off` (None) is no limit."""
    return [
        ApplicationLimit(lambda: _settings().rate_limit_per_key or "", key_function=caller, scope="per-key",
                         exempt_when=lambda: not (_api() and _keyed())),
        ApplicationLimit(lambda: _settings().rate_limit_per_ip or "", key_function=caller, scope="per-ip",
                         exempt_when=lambda: not (_api() and not _keyed())),
    ]


def login_budget() -> str:
    return _settings().rate_limit_login or ""


def endpoint_or_path() -> str:
    """What Flask-Limiter calls the request: its endpoint, or (unrouted: a 404) a name of its own, since
    the library leaves a request without an endpoint out of every limit."""
    return request.endpoint or "unrouted"


def too_many_requests(error: RateLimitExceeded, limiter):
    """429 in the envelope, with `Retry-After`: when the budget allows the next request."""
    wait = 1
    breached = limiter.current_limit
    if breached is not None:
        try:
            wait = max(1, math.ceil(breached.reset_at - time.time()))
        except Exception:  # the counters' store went away meanwhile: a second is as good a guess as any
            wait = 1
    response = envelope(429, f"too many requests: {error.description} allowed; retry after {wait} s")
    response.headers["Retry-After"] = str(wait)
    return response
