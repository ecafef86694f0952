"""What one run decided for a batch of running tasks, written in one transaction, then carried out.

Each task's write is a compare-and-set on the lease token the run read: a task someone else moved in the
meantime is left alone, with no trace of this run in its history.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from app import runtime
from app.domain import actions as plan
from app.domain import states
from app.infra.db import session_scope
from app.models import Task
from app.state import tasks as task_states


class Unrecoverable(Exception):
    """A failure no retry can cure (e.g. nobody to send to)."""


def recipient(task: Task) -> tuple[str, str]:
    """(acc_id, to_id): the customer who triggered the task, on the task's account or theirs."""
    settings = runtime.current().settings
    by = task.triggered_by or {}
    customer = (task.raw or {}).get("customer") or {}
    to_id = by.get("customer_id") or customer.get("id") or task.customer_id
    acc_id = task.acc_id or by.get("acc_id") or settings.qingjian_default_acc_id
    if not to_id:
        raise Unrecoverable("no customer to send to: the event named none and the task has no customer.id")
    if not acc_id:
        raise Unrecoverable("no shop account to send from: set acc_id or QINGJIAN_DEFAULT_ACC_ID")
    return acc_id, to_id


@dataclass
class _Plan:
    task: Task
    token: str | None = None
    kind: str = ""  # send | finish | retry | hand_over | leave | rejoin
    progress: dict = field(default_factory=dict)
    history: list = field(default_factory=list)  # (kind, detail) lines for the task's history
    step: int | None = None
    fresh: bool = False  # a first send right after this process's claim: the claim's lease still holds
    status: str | None = None
    error: str | None = None
    delay: float = 0.0
    owner: str | None = None


@dataclass
class Won:
    """What the winners of a batch need done outside SQL."""

    sends: list = field(default_factory=list)  # (step, acc_id, to_id, req_id)
    hand_overs: list = field(default_factory=list)  # (task, token, acc_id, to_id)
    completed_latencies: list = field(default_factory=list)  # the triggering message's receipt time
    left_lanes: list = field(default_factory=list)  # ((acc_id, to_id), task_id)
    joined_lanes: list = field(default_factory=list)


class Batch:
    def __init__(self, now: datetime, lease: timedelta):
        self.now, self.lease = now, lease
        self.plans: dict[str, _Plan] = {}

    def _plan(self, task: Task, token=None) -> _Plan:
        found = self.plans.get(task.task_id)
        if found is None:
            found = self.plans[task.task_id] = _Plan(task, token, progress=dict(task.progress or {}))
        if token is not None:
            found.token = token
        return found

    # -- what the run decided ------------------------------------------------------------------
    def progress_of(self, task: Task) -> dict:
        return self._plan(task).progress

    def lane_of(self, task: Task) -> tuple[str, str]:
        return recipient(task)

    def note_send(self, task: Task, step: int, req_id: str, ok: bool, error: str | None) -> None:
        p = self._plan(task)
        p.progress[str(step)] = {"req_id": req_id, "ok": bool(ok)}
        p.history.append(("send", {"step": step, "req_id": req_id, "ok": bool(ok),
                                   **({} if ok else {"error": error or "refused"})}))

    def note_failed_attempt(self, task: Task, error: str) -> None:
        self._plan(task).history.append(("attempt_failed", {"attempt": task.retry_count, "error": error}))

    def send(self, task: Task, token, step: int, *, fresh: bool = False) -> None:
        p = self._plan(task, token)
        p.kind, p.step, p.fresh = "send", step, fresh

    def finish(self, task: Task, token, status: str, *, error: str | None = None) -> None:
        p = self._plan(task, token)
        p.kind, p.status, p.error = "finish", status, error

    def retry_later(self, task: Task, token, delay: float, error: str, *, owner: str) -> None:
        p = self._plan(task, token)
        p.kind, p.delay, p.error, p.owner = "retry", delay, error, owner

    def hand_over(self, task: Task, token) -> None:
        self._plan(task, token).kind = "hand_over"

    def leave_lane(self, task: Task) -> None:
        self._plan(task).kind = "leave"

    def rejoin(self, task: Task) -> None:
        self._plan(task).kind = "rejoin"

    # -- writing it ----------------------------------------------------------------------------
    def commit(self) -> Won:
        won, winners = Won(), []
        if not any(self._writes(p) for p in self.plans.values()):  # e.g. first sends right after a claim
            for p in self.plans.values():
                self._effects(p, won)
            return won
        completed = [p for p in self.plans.values()
                     if p.kind == "finish" and p.status == states.COMPLETED and p.token is not None]
        with session_scope() as session:
            if completed:  # the common end: one CAS statement for the batch
                done = set(task_states.move_many(
                    session, [p.task.task_id for p in completed], states.RUNNING, states.COMPLETED,
                    owners={p.task.task_id: p.token for p in completed},
                    per_task={p.task.task_id: {"progress": p.progress, "result": self._result(p)} for p in completed},
                    history={p.task.task_id: p.history for p in completed}, now=self.now))
                winners += [p for p in completed if p.task.task_id in done]
            batched = {id(p) for p in completed}
            for p in self.plans.values():
                if id(p) not in batched and self._write(session, p):
                    winners.append(p)
        for p in winners:
            self._effects(p, won)
        return won

    @staticmethod
    def _writes(p: _Plan) -> bool:
        """Whether carrying `p` out writes to SQL (hand-overs, lane moves and fresh first sends do not)."""
        return p.kind in ("finish", "retry") or (p.kind == "send" and not (p.fresh and not p.history))

    def _write(self, session, p: _Plan) -> bool:
        task_id = p.task.task_id
        held = (Task.lease_owner.is_(None),) if p.token is None else (Task.lease_owner == p.token,)
        if p.kind == "send":
            if p.fresh and not p.history:
                return True  # claimed a moment ago: the claim's lease covers this first send
            ok = task_states.update_running(session, task_id, where=held, progress=p.progress,
                                            lease_owner=uuid.uuid4().hex, lease_expires_at=self.now + self.lease)
        elif p.kind == "finish":
            result = self._result(p) if p.status == states.COMPLETED else None
            return task_states.move(session, task_id, p.status, only_from={states.RUNNING}, where=held,
                                    error=p.error, result=result, values={"progress": p.progress},
                                    history=p.history, now=self.now).won
        elif p.kind == "retry":
            ok = task_states.update_running(
                session, task_id, where=held, retry_count=p.task.retry_count + 1, error_message=p.error,
                progress=p.progress, lease_owner=p.owner, lease_expires_at=self.now + timedelta(seconds=p.delay))
        else:
            return True  # hand_over (the dispatch takes the lease itself), leave, rejoin: nothing to write
        if ok:
            for kind, detail in p.history:
                task_states.record(session, task_id, kind, detail, now=self.now)
        return ok

    def _result(self, p: _Plan) -> dict:
        acc_id, to_id = recipient(p.task)
        steps = sorted(p.progress.items(), key=lambda item: int(item[0]))
        return {"sent": [record["req_id"] for _, record in steps], "to_id": to_id, "acc_id": acc_id}

    def _effects(self, p: _Plan, won: Won) -> None:
        task = p.task
        try:
            lane = recipient(task)
        except Unrecoverable:
            lane = None
        if p.kind == "send":
            step = plan.plan_steps(task.action)[p.step]
            won.sends.append((step, lane[0], lane[1], plan.req_id(task.task_id, p.step, task.retry_count)))
        elif p.kind == "hand_over":
            if lane is not None:
                won.hand_overs.append((task, p.token, *lane))
            if lane is not None:
                won.left_lanes.append((lane, task.task_id))
        elif p.kind == "rejoin":
            if lane is not None:
                won.joined_lanes.append((lane, task.task_id))
        elif lane is not None:  # finish, retry, leave: the customer's next action may go
            won.left_lanes.append((lane, task.task_id))
        if p.kind == "finish" and p.status == states.COMPLETED and (task.triggered_by or {}).get("received_at"):
            won.completed_latencies.append(float(task.triggered_by["received_at"]))
