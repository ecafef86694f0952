"""Fake 图绘 dispatch API (CONTRACTS.md §3).

Holds online designers and tasks in memory. Controls inject errors, slowness and the nasty
"created, but the answer never arrived" case, so the bridge's dispatch workflow can prove it
looks in /dispatch/queue before creating a task twice.

    python -m devkit.fakes.tuhui --port 9531 --api-key K --designers 橘子,婷婷

Path rules for `fail_next` / `slow`: a prefix of the path ("/tasks" also matches
"/tasks/ab12cd34/assign"), optionally led by a method ("POST /tasks"); a trailing "$" makes it
exact ("POST /tasks$" is only the create call).
"""
from __future__ import annotations

import argparse
import hmac
import re
import uuid
from typing import Any

from devkit.fakes._http import FakeHTTPServer, Request, emit, json_body, serve_until_signal

_TASK_PATH = re.compile(r"^/tasks/([^/]+)(/assign|/complete)?$")
_AUTO = object()  # suggestion not set: use the first online designer


def _rule_matches(rule: str, method: str, path: str) -> bool:
    rule_method, _, rule_path = rule.rpartition(" ")
    if rule_method and rule_method.upper() != method:
        return False
    if rule_path.endswith("$"):
        return path == rule_path[:-1]
    return path.startswith(rule_path)


class FakeTuhui(FakeHTTPServer):
    label = "图绘 fake"

    def __init__(self, api_key: str = "test-tuhui-key", designers: list[str] | None = None,
                 port: int = 0, host: str = "127.0.0.1") -> None:
        super().__init__(host, port)
        self.api_key = api_key
        self.online: list[str] = list(designers or [])
        self._designers = list(self.online)  # who is online again after reset_controls()
        self.tasks: dict[str, dict[str, Any]] = {}
        self.created: list[dict[str, Any]] = []  # the task records, in creation order
        self.assignments: list[dict[str, Any]] = []  # task_id, designer_name, notes, time
        self.unauthorized = 0
        self._bare_list = False
        self._suggestion: Any = _AUTO
        self._failures: list[list[Any]] = []  # [rule, status, remaining]
        self._slow: dict[str, float] = {}
        self._create_hang = 0.0

    @property
    def url(self) -> str:
        """The TUHUI_BASE_URL to configure."""
        return self.base_url

    # -- controls --------------------------------------------------------------------------
    def set_online(self, designers: list[str], *, bare_list: bool = False) -> None:
        """Who is online; bare_list=True answers /online/designers with a bare JSON list."""
        with self._cond:
            self.online, self._bare_list = list(designers), bare_list

    def set_suggestion(self, name: str | None) -> None:
        """Fix the queue's `suggestion` (None = null)."""
        with self._cond:
            self._suggestion = name

    def reset_suggestion(self) -> None:
        with self._cond:
            self._suggestion = _AUTO

    def reset_controls(self) -> None:
        """Everyone online again, the automatic suggestion, no failures, slowness or lost answers."""
        with self._cond:
            self.online, self._bare_list, self._suggestion = list(self._designers), False, _AUTO
            self._failures, self._slow, self._create_hang = [], {}, 0.0

    def fail_next(self, path_prefix: str, status: int = 500, n: int = 1) -> None:
        with self._cond:
            self._failures.append([path_prefix, status, n])

    def slow(self, path_prefix: str, seconds: float) -> None:
        """Delay every matching request by `seconds` (0 removes the rule)."""
        with self._cond:
            if seconds > 0:
                self._slow[path_prefix] = seconds
            else:
                self._slow.pop(path_prefix, None)

    def create_succeeds_but_times_out(self, seconds: float) -> None:
        """The next POST /tasks creates the task, then waits `seconds` before answering."""
        with self._cond:
            self._create_hang = seconds

    # -- queries ---------------------------------------------------------------------------
    def wait_for_assignments(self, n: int, timeout: float = 10) -> bool:
        return self.wait_until(lambda: len(self.assignments) >= n, timeout)

    def find_tasks(self, text: str) -> list[dict[str, Any]]:
        """Tasks whose name or description contains `text` (e.g. our dispatch id)."""
        with self._cond:
            return [t for t in self.tasks.values()
                    if text in (t.get("description") or "") or text in (t.get("task_name") or "")]

    # -- serving ---------------------------------------------------------------------------
    def handle(self, request: Request) -> tuple[int, Any]:
        given = request.header("X-API-Key") or ""
        if not hmac.compare_digest(given.encode(), self.api_key.encode()):
            with self._cond:
                self.unauthorized += 1
            emit(self.label, f"401 {request.method} {request.path} (bad X-API-Key)")
            return 401, {"detail": "invalid api key"}
        delay, failure = self._controls_for(request.method, request.path)
        self.sleep(delay)
        if failure is not None:
            emit(self.label, f"injected {failure} for {request.method} {request.path}")
            return failure, {"detail": f"injected failure {failure}"}
        return self._route(request)

    def _controls_for(self, method: str, path: str) -> tuple[float, int | None]:
        with self._cond:
            delay = max([s for r, s in self._slow.items() if _rule_matches(r, method, path)],
                        default=0.0)
            for failure in self._failures:
                if failure[2] > 0 and _rule_matches(failure[0], method, path):
                    failure[2] -= 1
                    return delay, failure[1]
        return delay, None

    def _route(self, request: Request) -> tuple[int, Any]:
        method, path = request.method, request.path
        if method == "GET" and path == "/online/designers":
            with self._cond:
                online, bare = list(self.online), self._bare_list
            return 200, online if bare else {"designers": online, "count": len(online)}
        if method == "GET" and path == "/dispatch/queue":
            return 200, self._queue()
        if method == "POST" and path == "/tasks":
            return self._create(request)
        match = _TASK_PATH.match(path)
        if not match:
            return 404, {"detail": f"no route {method} {path}"}
        task_id, verb = match.groups()
        with self._cond:
            task = self.tasks.get(task_id)
        if task is None:
            return 404, {"detail": f"task {task_id} not found"}
        if method == "GET" and verb is None:
            with self._cond:
                return 200, dict(task)
        if method == "POST" and verb == "/assign":
            return self._assign(task, request)
        if method == "POST" and verb == "/complete":
            body, _ = json_body(request)
            notes = body.get("notes") if isinstance(body, dict) else None
            with self._cond:
                task.update(status="completed", completion_notes=notes)
                self._cond.notify_all()
            emit(self.label, f"task {task_id} completed")
            return 200, {"success": True}
        return 405, {"detail": f"method {method} not allowed on {path}"}

    def _queue(self) -> dict[str, Any]:
        with self._cond:
            online = list(self.online)
            suggestion = self._suggestion
        if suggestion is _AUTO:
            suggestion = online[0] if online else None
        with self._cond:
            pending = [dict(t) for t in self.tasks.values() if t["status"] != "completed"]
        return {"pending_tasks": {"count": len(pending), "tasks": pending},
                "online_designers": {"count": len(online), "designers": online},
                "suggestion": suggestion}

    def _create(self, request: Request) -> tuple[int, Any]:
        body, error = json_body(request)
        if error or not isinstance(body, dict) or not body.get("task_name"):
            return 422, {"detail": error or "task_name required"}
        task_id = uuid.uuid4().hex[:8]
        task = {"task_id": task_id, "task_name": body["task_name"],
                "description": body.get("description", ""), "task_type": body.get("task_type"),
                "priority": body.get("priority"), "status": "pending", "assigned_to": None,
                "notes": None, "created_at": request.time}
        with self._cond:
            self.tasks[task_id] = task
            self.created.append(task)
            self._cond.notify_all()
        with self._cond:
            hang, self._create_hang = self._create_hang, 0.0
        emit(self.label, f"task {task_id} created: {task['task_name']}"
             + (f" (answer held back {hang}s)" if hang else ""))
        self.sleep(hang)  # the task exists; the client's timeout fires before it hears so
        return 200, {"task_id": task_id, "status": "pending"}

    def _assign(self, task: dict[str, Any], request: Request) -> tuple[int, Any]:
        body, error = json_body(request)
        if error or not isinstance(body, dict) or not body.get("designer_name"):
            return 422, {"detail": error or "designer_name required"}
        record = {"task_id": task["task_id"], "designer_name": body["designer_name"],
                  "notes": body.get("notes"), "time": request.time}
        with self._cond:
            task.update(status="assigned", assigned_to=body["designer_name"], notes=body.get("notes"))
            self.assignments.append(record)
            self._cond.notify_all()
        emit(self.label, f"task {task['task_id']} assigned to {body['designer_name']}")
        return 200, {"success": True}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9531)
    parser.add_argument("--api-key", required=True, help="the X-API-Key clients must send")
    parser.add_argument("--designers", default="", help="comma-separated online designers")
    args = parser.parse_args(argv)
    designers = [d.strip() for d in args.designers.split(",") if d.strip()]
    fake = FakeTuhui(api_key=args.api_key, designers=designers, port=args.port,
                     host=args.host).start()
    emit(fake.label, f"listening on {fake.url}, online: {', '.join(designers) or 'nobody'}")
    serve_until_signal(fake)


if __name__ == "__main__":
    main()
