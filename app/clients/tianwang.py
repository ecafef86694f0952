"""The 天网 callback client (CONTRACTS.md §1 "Callback"): sign, post, classify the answer."""
from __future__ import annotations

import hashlib
import hmac

import requests

CONNECT_TIMEOUT = 3.05
RETRYABLE_STATUS = frozenset({408, 429})


class CallbackRetryable(Exception):
    """Connection error, timeout, 3xx, 408, 429 or 5xx: worth trying again."""


class CallbackRejected(Exception):
    """Any other non-2xx: 天网 will not take it; recorded, not retried."""


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post(session: requests.Session, url: str, event_id: str, body: str, secret: str | None,
         timeout: float = 10.0) -> int:
    """POST one callback; only a 2xx to this very POST is delivery.

    Redirects are not followed: requests would turn a POST answered 301/302/303 into a GET of the new
    location and report that GET's answer. A 3xx is a failed attempt, retried like a 5xx.
    """
    raw = body.encode()
    headers = {"Content-Type": "application/json; charset=utf-8", "X-Tianwang-Event-Id": event_id}
    if secret:
        headers["X-Tianwang-Signature"] = sign(raw, secret)
    try:
        answer = session.post(url, data=raw, headers=headers, allow_redirects=False,
                              timeout=(min(CONNECT_TIMEOUT, timeout), timeout))
    except requests.RequestException as exc:
        raise CallbackRetryable(f"{type(exc).__name__}: {exc}") from None
    status = answer.status_code
    if 200 <= status < 300:
        return status
    if 300 <= status < 400:
        location = answer.headers.get("Location", "")
        raise CallbackRetryable(f"HTTP {status} redirect to {location[:200]!r} not followed")
    if status >= 500 or status in RETRYABLE_STATUS:
        raise CallbackRetryable(f"HTTP {status}")
    raise CallbackRejected(f"HTTP {status}: {answer.text[:200]}")
