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


def parse_req_id(req_id: str) -> tuple[str, int, int] | None:
    """(task_id, step, attempt) of an action's req_id; None for anything else (a dispatch's, a stranger's)."""
    head, _, attempt = req_id.rpartition(":")
    task_id, _, step = head.rpartition(":")
    if not task_id or not step.isdigit() or not attempt.isdigit() or req_id.startswith("dispatch:"):
        return None
    return task_id, int(step), int(attempt)


def first_unacknowledged(progress: dict | None, steps: int) -> int:
    """The step an attempt starts (or resumes) at: the first that 轻简 has not acknowledged."""
    done = progress or {}
    return next((i for i in range(steps) if not (done.get(str(i)) or {}).get("ok")), steps)


# What happens to a running action next (app.services.actions carries it out).
SEND, COMPLETE, ATTEMPT_FAILED, IGNORE = "send", "complete", "attempt_failed", "ignore"
RETRY, FAIL, TIMEOUT = "retry", "fail", "timeout"


def after_answer(*, steps: int, progress: dict | None, attempt: int, answer_step: int, answer_attempt: int,
                 ok: bool) -> tuple[str, int | None]:
    """The move after 轻简 answers a send of attempt `answer_attempt`, step `answer_step`:
    (SEND, next step) or (COMPLETE, None) when it acknowledged the step in flight, (ATTEMPT_FAILED, None)
    when it refused it, (IGNORE, None) when the answer is not about the send in flight (an earlier
    attempt's, or a step already settled)."""
    if answer_attempt != attempt or answer_step != first_unacknowledged(progress, steps):
        return IGNORE, None
    if not ok:
        return ATTEMPT_FAILED, None
    following = answer_step + 1
    return (SEND, following) if following < steps else (COMPLETE, None)


def after_failure(*, retry_count: int, max_retry: int, past_deadline: bool) -> str:
    """A failed attempt: past the task's deadline it times out; out of retries it fails; else it is retried."""
    if past_deadline:
        return TIMEOUT
    return FAIL if retry_count >= max_retry else RETRY
