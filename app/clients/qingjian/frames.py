"""The 轻简 wire (CONTRACTS.md §2, protocol v1): inbound frames parsed, outbound frames built."""
from __future__ import annotations

import json


class FrameError(ValueError):
    """A frame that is not JSON, not an object, or lacks what its event needs."""


def parse_inbound(text: str | bytes) -> tuple[str, dict]:
    try:
        frame = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise FrameError(f"not JSON: {exc}") from None
    if not isinstance(frame, dict) or not isinstance(frame.get("event"), str):
        raise FrameError("not an object with an event name")
    data = frame.get("data")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise FrameError("data is not an object")
    return frame["event"], data


def send_frame(step: dict, *, acc_id: str, to_id: str, req_id: str) -> dict:
    """A domain step (app.domain.actions) as an outbound frame."""
    kind = step["kind"]
    data = {"acc_id": acc_id, "to_id": to_id}
    if kind == "text":
        return {"action": "send_text", "req_id": req_id, "data": {**data, "content": step["content"]}}
    if kind == "file":
        return {"action": "send_file", "req_id": req_id,
                "data": {**data, "file_url": step["file_url"], "file_name": step["file_name"]}}
    if kind == "link":
        return {"action": "send_link", "req_id": req_id, "data": {
            **data, "url": step["url"], "title": step["title"], "desc": step["desc"]}}
    raise ValueError(f"unknown step kind {kind!r}")


PING = json.dumps({"action": "ping"})
