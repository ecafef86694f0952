"""The send frames our side sends the 轻简 fake: how a real 轻简 would judge them, how they read in
its log, and the record of every one with the questions tests ask of it.

Each send frame is recorded as a dict: action, req_id, step (the req_id before its last colon),
task_id, data, time, outcome (`delivered`, `refused`, `repeat`: the step had been delivered before),
repeat (bool), error (of a refusal) and answer: what became of its `send_result` (`sent`; `lost`: the
connection was gone; `muted`; `held` until release(); `pending` while delayed; None for no answer yet).
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable

SEND_ACTIONS = ("send_text", "send_file", "send_link")
# Fields each send must carry in `data` (besides acc_id and to_id); URLs must be http(s).
_REQUIRED = {"send_text": ("content",), "send_file": ("file_url",), "send_link": ("url",)}
_URL_FIELDS = ("file_url", "url")


def problem(action: str, data: Any) -> str | None:
    """Why a real 轻简 would refuse this send, or None."""
    if not isinstance(data, dict):
        return "data must be an object"
    for key in ("acc_id", "to_id") + _REQUIRED[action]:
        if not isinstance(data.get(key), str) or not data[key].strip():
            return f"missing {key}"
    for key in _URL_FIELDS:
        if key in data and not str(data[key]).startswith(("http://", "https://")):
            return f"{key} must be http(s)"
    return None


def describe(action: str, data: dict[str, Any]) -> str:
    if action == "send_text":
        text = data.get("content", "").replace("\n", "⏎")
        return f"send_text {text[:60]!r}" + ("…" if len(text) > 60 else "")
    if action == "send_file":
        return f"send_file {data.get('file_name') or data.get('file_url')}"
    return f"send_link {data.get('title') or ''} {data.get('url')}".replace("  ", " ")


def new_frame(action: str, req_id: str, data: Any) -> dict[str, Any]:
    """The record of one send frame, before the fake has judged it."""
    step = req_id.rsplit(":", 1)[0] if req_id.count(":") >= 2 else req_id
    return {"action": action, "req_id": req_id, "step": step, "task_id": step.rsplit(":", 1)[0], "data": data,
            "time": time.time(), "outcome": None, "repeat": False, "error": None, "answer": None}


class SendRecord:
    """Mixin of FakeQingjian: `frames` (every send frame), `sent` (what customers received, each step
    once), `failed` (refused sends), guarded by `_cond`."""

    frames: list[dict[str, Any]]
    sent: list[dict[str, Any]]
    failed: list[dict[str, Any]]
    _cond: threading.Condition

    def sent_to(self, to_id: str) -> list[dict[str, Any]]:
        """What `to_id` received (each step once)."""
        with self._cond:
            return [s for s in self.sent if s["data"].get("to_id") == to_id]

    def frames_for(self, to_id: str) -> list[dict[str, Any]]:
        """Every send frame our side addressed to `to_id`, repeats and refusals included."""
        with self._cond:
            return [f for f in self.frames if isinstance(f["data"], dict) and f["data"].get("to_id") == to_id]

    def frames_of(self, task_id: str) -> list[dict[str, Any]]:
        """Every send frame of one task (req_id `<task_id>:<step>:<attempt>`)."""
        with self._cond:
            return [f for f in self.frames if f["task_id"] == task_id]

    def repeats(self) -> list[dict[str, Any]]:
        """The frames of a step that had been delivered already (retransmissions and later attempts)."""
        with self._cond:
            return [f for f in self.frames if f["repeat"]]

    @property
    def duplicates_ignored(self) -> int:
        return len(self.repeats())

    def steps_sent_twice(self) -> dict[str, list[dict[str, Any]]]:
        """{step: all its frames} for every step our side sent again after it had been delivered."""
        with self._cond:
            twice = {f["step"] for f in self.frames if f["repeat"]}
            return {step: [f for f in self.frames if f["step"] == step] for step in sorted(twice)}

    def answer_lost(self, frame: dict[str, Any]) -> bool:
        """Our side never heard this frame's send_result (muted, or its connection died first)."""
        with self._cond:
            return frame["answer"] in ("lost", "muted")

    def wait_for_sends(self, n: int, timeout: float = 10) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.sent) >= n, timeout=timeout)

    def wait_for_frames(self, predicate: Callable[[list], Any], timeout: float = 10) -> bool:
        """Until predicate(frames) (called under the lock, with the list of every frame) is true."""
        with self._cond:
            return self._cond.wait_for(lambda: bool(predicate(self.frames)), timeout=timeout)
