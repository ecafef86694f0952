"""The 天网 callback client (CONTRACTS.md §1 "Callback"): sign, post, classify the answer."""
from __future__ import annotations

import hashlib
import hmac

import requests

TIMEOUT = (3.05, 10)
RETRYABLE_STATUS = frozenset({408, 429})


class CallbackRetryable(Exception):
    """Connection error, timeout, 408, 429 or 5xx: worth trying again."""


class CallbackRejected(Exception):
    """Any other non-2xx: 天网 will not take it; recorded, not retried."""


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post(session: requests.Session, url: str, event_id: str, body: str, secret: str | None) -> int:
    raw = body.encode()
    headers = {"Content-Type": "application/json; charset=utf-8", "X-Tianwang-Event-Id": event_id}
    if secret:
        headers["X-Tianwang-Signature"] = sign(raw, secret)
    try:
        answer = session.post(url, data=raw, headers=headers, timeout=TIMEOUT)
    except requests.RequestException as exc:
        raise CallbackRetryable(f"{type(exc).__name__}: {exc}") from None
    if 200 <= answer.status_code < 300:
        return answer.status_code
    if answer.status_code >= 500 or answer.status_code in RETRYABLE_STATUS:
        raise CallbackRetryable(f"HTTP {answer.status_code}")
    raise CallbackRejected(f"HTTP {answer.status_code}: {answer.text[:200]}")
