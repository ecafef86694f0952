"""The four checks every kill/restart drill ends with (issue 15), on a live system (tests/conftest.py
`LiveSystem`: its 轻简 and 天网 fakes and its database):

1. no task lost: every task of the drill reached the terminal status the drill expects, and a completed
   task's customer received each of its steps;
2. no step sent twice: after 轻简 delivered a step, our side never sent it again (per `<task_id>:<step>`),
   and nothing of a task was sent after it ended. The one documented exception, an answer lost with a
   dying listener or connection (the retry's repeat of the step is then recognised by 轻简, CONTRACTS.md
   §2), is allowed only where the drill names the step and says why, and only after every earlier frame
   of that step had its answer lost;
3. no callback lost: every move to `running` and to a terminal status in a task's history has its
   callback (the outbox row written with it) accepted by the 天网 fake;
4. no callback event posted twice, except where at-least-once allows it: again only after an attempt
   that got no 2xx answer (refused, connection dropped, or hung).

    check_drill(live, {task_id: "completed"}, repeats_allowed={f"{task_id}:0": "answer lost with the listener"})
"""
from __future__ import annotations

from collections import Counter
from datetime import timezone

from sqlalchemy import select

from app.infra.db import session_scope
from app.models import CallbackOutbox, Task, TaskEvent
from devkit.stores import wait_until

# CONTRACTS.md §1 "Callback": 天网 hears every move to running and to a terminal status.
CALLBACK_STATUSES = frozenset({"running", "completed", "failed", "cancelled", "timeout"})
SEND_ACTIONS = frozenset({"send_message", "send_file", "send_link"})


def check_drill(live, expected: dict[str, str], *, repeats_allowed: dict[str, str] | None = None,
                callback_timeout: float = 60.0) -> None:
    """All four checks for the tasks `expected` ({task_id: terminal status})."""
    tasks = no_task_lost(live, expected)
    no_step_sent_twice(live.qingjian, tasks, repeats_allowed or {})
    no_callback_lost(live, list(expected), callback_timeout)
    no_callback_posted_twice(live.tianwang, list(expected))


def no_task_lost(live, expected: dict[str, str]) -> dict[str, dict]:
    """Each task is in its expected status; a completed send action's steps each reached the customer
    once. Returns the tasks' rows (status, action, result, completed_at) by id."""
    tasks = _tasks(live, list(expected))
    statuses = {task_id: row["status"] if row else None for task_id, row in tasks.items()}
    assert statuses == expected, _differences("task statuses", expected, statuses)
    for task_id, row in tasks.items():
        if row["status"] != "completed" or row["action"].get("type") not in SEND_ACTIONS:
            continue
        settled = (row["result"] or {}).get("sent") or []
        assert settled, f"{task_id} completed without a sent step: {row['result']}"
        frames = live.qingjian.frames_of(task_id)
        answered_ok = {f["req_id"] for f in frames if f["outcome"] in ("delivered", "repeat")}
        assert set(settled) <= answered_ok, f"{task_id}: steps {settled} not all taken by 轻简: {_show(frames)}"
        delivered = [f["step"] for f in frames if f["outcome"] == "delivered"]
        assert sorted(delivered) == sorted(r.rsplit(":", 1)[0] for r in settled), \
            f"{task_id}: the customer did not receive each step once: {_show(frames)}"
    return tasks


def no_step_sent_twice(qingjian, tasks: dict[str, dict], repeats_allowed: dict[str, str]) -> None:
    """No step sent again once delivered, bar the named exceptions; no frame after a task ended."""
    unknown = [step for step in repeats_allowed if step.rsplit(":", 1)[0] not in tasks]
    assert not unknown, f"repeats allowed for steps of no task of this drill: {unknown}"
    for task_id, row in tasks.items():
        frames = qingjian.frames_of(task_id)
        for step in dict.fromkeys(f["step"] for f in frames):
            of_step = [f for f in frames if f["step"] == step]
            repeats = [f for f in of_step if f["repeat"]]
            if not repeats:
                continue
            assert step in repeats_allowed, f"step {step} was sent again after 轻简 delivered it: {_show(of_step)}"
            for repeat in repeats:
                heard_before = [f for f in of_step[:of_step.index(repeat)]
                                if f["outcome"] in ("delivered", "repeat") and not qingjian.answer_lost(f)]
                assert not heard_before, (
                    f"step {step} was sent again although our side had heard 轻简 take it "
                    f"({repeats_allowed[step]} does not cover that): {_show(of_step)}")
        if row["completed_at"] is not None:
            ended = row["completed_at"].replace(tzinfo=timezone.utc).timestamp()
            late = [f for f in frames if f["time"] > ended]
            assert not late, f"{task_id} ended {row['status']} before these sends: {_show(late)}"


def no_callback_lost(live, task_ids: list[str], timeout: float = 60.0) -> None:
    """Each callback-worthy move in a task's history has its outbox row, delivered and accepted by 天网."""
    moves = _history_moves(live, task_ids)

    def delivered() -> bool:
        rows = _outbox(live, task_ids)
        for task_id in task_ids:
            accepted = set(live.tianwang.accepted(task_id))
            mine = [r for r in rows if r["task_id"] == task_id]
            if Counter(r["status"] for r in mine) != moves[task_id] or \
                    {r["event_id"] for r in mine} != accepted or any(r["state"] != "delivered" for r in mine):
                return False
        return True

    try:
        wait_until(delivered, timeout, 0.2, "every callback delivered")
    except AssertionError:
        rows = _outbox(live, task_ids)
        report = {t: {"history": dict(moves[t]), "accepted": live.tianwang.statuses(t),
                      "outbox": [(r["status"], r["state"], r["attempts"], r["last_error"])
                                 for r in rows if r["task_id"] == t]} for t in task_ids}
        raise AssertionError(f"callbacks lost or not delivered within {timeout}s: {report}") from None


def no_callback_posted_twice(tianwang, task_ids: list[str]) -> None:
    """No callback event posted again after an attempt that got a 2xx answer at once."""
    again = {event_id: posts for event_id, posts in tianwang.posted_after_success().items()
             if posts[0]["body"].get("task_id") in set(task_ids)}
    assert not again, "callbacks posted again after a 2xx: " + str(
        {e: [(p["status"], p["hung"], p["dropped"]) for p in posts] for e, posts in again.items()})


# -- reading the database --------------------------------------------------------------------------

def _tasks(live, task_ids: list[str]) -> dict[str, dict | None]:
    live.use()
    with session_scope() as session:
        rows = {t.task_id: {"status": t.status, "action": t.action, "result": t.result,
                            "completed_at": t.completed_at}
                for t in session.scalars(select(Task).where(Task.task_id.in_(task_ids)))}
    return {task_id: rows.get(task_id) for task_id in task_ids}


def _history_moves(live, task_ids: list[str]) -> dict[str, Counter]:
    live.use()
    with session_scope() as session:
        moves = session.execute(select(TaskEvent.task_id, TaskEvent.to_status).where(
            TaskEvent.task_id.in_(task_ids), TaskEvent.kind == "status")).all()
    found = {task_id: Counter() for task_id in task_ids}
    for task_id, status in moves:
        if status in CALLBACK_STATUSES:
            found[task_id][status] += 1
    return found


def _outbox(live, task_ids: list[str]) -> list[dict]:
    live.use()
    with session_scope() as session:
        return [{"event_id": r.event_id, "task_id": r.task_id, "status": r.status, "state": r.state,
                 "attempts": r.attempts, "last_error": r.last_error}
                for r in session.scalars(select(CallbackOutbox).where(CallbackOutbox.task_id.in_(task_ids)))]


def _show(frames: list[dict]) -> list[tuple]:
    return [(f["req_id"], f["outcome"], f["answer"], round(f["time"], 3)) for f in frames]


def _differences(what: str, expected: dict, found: dict) -> str:
    return f"{what} differ: " + str({k: (expected.get(k), found.get(k)) for k in expected if expected[k] != found.get(k)})
