"""The 企业微信 group robot client (CONTRACTS.md §4): post a markdown notice, read `errcode`.

The robot answers HTTP 200 even when it refuses: `errcode` 0 is success, 45009 is its rate limit
(about 20 messages a minute) and anything else non-zero is a refusal. The webhook URL carries the
robot's key in its query string, so neither the URL nor a requests message quoting it is ever put
into an exception.
"""
from __future__ import annotations

import requests

TIMEOUT = (3.05, 10)
RATE_LIMITED = 45009
MAX_MARKDOWN_BYTES = 4096


class WecomError(Exception):
    """The robot refused the message (a non-zero errcode other than 45009, or a 4xx)."""


class WecomUnavailable(WecomError):
    """Connection error, timeout or 5xx: worth trying again."""


class RateLimited(WecomError):
    """errcode 45009: too many messages; back off and try again."""


def post_markdown(session: requests.Session, url: str, content: str, timeout=TIMEOUT) -> None:
    body = {"msgtype": "markdown", "markdown": {"content": content}}
    try:
        answer = session.post(url, json=body, timeout=timeout)
    except requests.Timeout:
        raise WecomUnavailable("企业微信 robot: no answer in time") from None
    except requests.RequestException as exc:
        raise WecomUnavailable(f"企业微信 robot unreachable ({type(exc).__name__})") from None
    if answer.status_code >= 500 or answer.status_code in (408, 429):
        raise WecomUnavailable(f"企业微信 robot: HTTP {answer.status_code}")
    if not 200 <= answer.status_code < 300:
        raise WecomError(f"企业微信 robot: HTTP {answer.status_code}")
    try:
        result = answer.json()
    except ValueError:
        raise WecomError("企业微信 robot: answer is not JSON") from None
    errcode = result.get("errcode") if isinstance(result, dict) else None
    if errcode == 0:
        return
    errmsg = str(result.get("errmsg") or "")[:200] if isinstance(result, dict) else ""
    if errcode == RATE_LIMITED:
        raise RateLimited(f"企业微信 robot rate limited (errcode {RATE_LIMITED}: {errmsg})")
    raise WecomError(f"企业微信 robot refused the notice (errcode {errcode}: {errmsg})")
