"""What an action sends, step by step (CONTRACTS.md §1 `action.type`). Pure.

A step is what one 轻简 send does; `app.clients.qingjian` turns it into a wire frame. The step's index
is part of its req_id, so a retry resumes at the first step 轻简 has not acknowledged.
"""
from __future__ import annotations

SEND_ACTIONS = ("send_message", "send_file", "send_link")


def plan_steps(action: dict) -> list[dict]:
    kind = action["type"]
    steps: list[dict] = []
    message = (action.get("message") or "").strip()
    if kind == "send_message":
        return [{"kind": "text", "content": action["message"]}]
    if message:
        steps.append({"kind": "text", "content": action["message"]})
    if kind == "send_file":
        steps.append({"kind": "file", "file_url": action["file_url"],
                      "file_name": action.get("file_name") or _name_from_url(action["file_url"])})
    elif kind == "send_link":
        steps.append({"kind": "link", "url": action["link_url"], "title": action.get("title") or "",
                      "desc": action.get("desc") or ""})
    else:
        raise ValueError(f"{kind} is not a send action")
    return steps


def _name_from_url(url: str) -> str:
    tail = url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    return tail or "file"


def req_id(task_id: str, step: int, attempt: int) -> str:
    """`<task_id>:<step>:<attempt>`; the part before the last colon names the step across retries."""
    return f"{task_id}:{step}:{attempt}"
