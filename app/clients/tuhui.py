"""The 图绘 dispatch client (CONTRACTS.md §3): the only module that knows 图绘's wire format.

Every failure becomes a typed exception, so the workflow can tell what a retry may cure:
`TuhuiUnavailable` (connection error, timeout, 408/429/5xx: retryable), `TuhuiOutcomeUnknown` (a create
that timed out: the task may exist; look before creating again), `TuhuiNotFound` (404) and
`TuhuiError` (anything else). The API key travels in a header only; it is never put in a message.
"""
from __future__ import annotations

from urllib.parse import quote

import requests

DEFAULT_TIMEOUT = 10.0
CONNECT_TIMEOUT = 3.05
RETRYABLE_STATUS = frozenset({408, 429})


class TuhuiError(Exception):
    """图绘 answered something no retry will change (401, 4xx, a malformed answer)."""


class TuhuiUnavailable(TuhuiError):
    """Connection refused or reset, timeout, 408/429/5xx: worth trying again."""


class TuhuiOutcomeUnknown(TuhuiUnavailable):
    """A create whose answer never came: the task may have been created."""


class TuhuiNotFound(TuhuiError):
    """404: 图绘 has no such task."""


class TuhuiClient:
    def __init__(self, base_url: str, api_key: str | None, timeout: float = DEFAULT_TIMEOUT,
                 session: requests.Session | None = None):
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key or ""
        self.timeout = timeout
        self.http = session or requests.Session()

    def __repr__(self) -> str:  # never the key
        return f"TuhuiClient({self.base_url!r})"

    # -- calls -----------------------------------------------------------------------------
    def online_designers(self) -> list[str]:
        """Names of the designers online now (`{"designers": [...]}` or a bare list)."""
        answer = self._call("GET", "/online/designers")
        names = answer.get("designers") if isinstance(answer, dict) else answer
        if not isinstance(names, list):
            raise TuhuiError("图绘 GET /online/designers: answer has no designer list")
        return designer_names(names)

    def queue(self) -> dict:
        """The dispatch queue: pending tasks, online designers and a `suggestion`."""
        answer = self._call("GET", "/dispatch/queue")
        if not isinstance(answer, dict):
            raise TuhuiError("图绘 GET /dispatch/queue: answer is not an object")
        return answer

    def create_task(self, task_name: str, description: str, task_type: str = "image_process",
                    priority: int = 2) -> str:
        """Create a task; returns 图绘's task id. A timeout raises TuhuiOutcomeUnknown."""
        answer = self._call("POST", "/tasks", {"task_name": task_name, "description": description,
                                               "task_type": task_type, "priority": priority}, creates=True)
        task_id = answer.get("task_id") if isinstance(answer, dict) else None
        if not isinstance(task_id, (str, int)) or str(task_id) == "":
            raise TuhuiOutcomeUnknown("图绘 POST /tasks: answer carries no task_id")
        return str(task_id)

    def assign(self, task_id: str, designer_name: str, notes: str = "") -> None:
        answer = self._call("POST", f"/tasks/{quote(task_id, safe='')}/assign",
                            {"designer_name": designer_name, "notes": notes})
        if isinstance(answer, dict) and answer.get("success") is False:
            raise TuhuiError(f"图绘 refused to assign task {task_id} to {designer_name}")

    def get_task(self, task_id: str) -> dict:
        answer = self._call("GET", f"/tasks/{quote(task_id, safe='')}")
        if not isinstance(answer, dict):
            raise TuhuiError(f"图绘 GET /tasks/{task_id}: answer is not an object")
        return answer

    def complete(self, task_id: str, notes: str = "") -> None:
        self._call("POST", f"/tasks/{quote(task_id, safe='')}/complete", {"notes": notes})

    # -- plumbing --------------------------------------------------------------------------
    def _call(self, method: str, path: str, body: dict | None = None, *, creates: bool = False):
        what = f"图绘 {method} {path}"
        headers = {"X-API-Key": self._api_key, "Accept": "application/json"}
        try:
            answer = self.http.request(method, self.base_url + path, json=body, headers=headers,
                                       timeout=(min(CONNECT_TIMEOUT, self.timeout), self.timeout))
        except requests.ConnectTimeout:
            raise TuhuiUnavailable(f"{what}: could not connect within {self.timeout:g}s") from None
        except requests.Timeout:
            if creates:
                raise TuhuiOutcomeUnknown(f"{what}: no answer within {self.timeout:g}s "
                                          "(the task may have been created)") from None
            raise TuhuiUnavailable(f"{what}: no answer within {self.timeout:g}s") from None
        except requests.ConnectionError as exc:
            # Refused before anything was sent is safe; a connection cut after sending a create is not.
            refused = "refused" in str(exc).lower() or "Failed to establish" in str(exc)
            if creates and not refused:
                raise TuhuiOutcomeUnknown(f"{what}: connection lost (the task may have been created)") from None
            raise TuhuiUnavailable(f"{what}: {'connection refused' if refused else 'connection error'}") from None
        except requests.RequestException as exc:
            raise TuhuiError(f"{what}: {type(exc).__name__}") from None
        status = answer.status_code
        if status == 404:
            raise TuhuiNotFound(f"{what}: not found (HTTP 404)")
        if status in (401, 403):
            raise TuhuiError(f"{what}: 图绘 refused our API key (HTTP {status}); check TUHUI_API_KEY")
        if status >= 500 or status in RETRYABLE_STATUS:
            raise TuhuiUnavailable(f"{what}: HTTP {status}")
        if not 200 <= status < 300:
            raise TuhuiError(f"{what}: HTTP {status}: {self._scrub(answer.text[:200])}")
        try:
            return answer.json()
        except ValueError:
            if creates:
                raise TuhuiOutcomeUnknown(f"{what}: answer is not JSON (the task may have been created)") from None
            raise TuhuiError(f"{what}: answer is not JSON") from None

    def _scrub(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text


def designer_names(raw: list) -> list[str]:
    """Non-empty names, trimmed, each once, in 图绘's order."""
    seen: list[str] = []
    for item in raw:
        if isinstance(item, str) and item.strip() and item.strip() not in seen:
            seen.append(item.strip())
    return seen


def find_task(queue: dict, text: str) -> str | None:
    """The id of a pending task in a `/dispatch/queue` answer whose name or description contains `text`."""
    pending = queue.get("pending_tasks")
    tasks = pending.get("tasks") if isinstance(pending, dict) else pending
    for task in tasks if isinstance(tasks, list) else []:
        if not isinstance(task, dict):
            continue
        if text in str(task.get("description") or "") or text in str(task.get("task_name") or ""):
            found = task.get("task_id")
            if found not in (None, ""):
                return str(found)
    return None
