"""The one place that writes a dispatch's status (DESIGN.md rule 1, as `app.state.tasks` for tasks).

A move is a compare-and-set `UPDATE dispatches SET status=:to WHERE dispatch_id=:id AND status=:from`
(plus the caller's extra conditions, e.g. that it still holds the dispatch's lease), in the caller's
transaction. When a dispatch that belongs to a task reaches `assigned` or `failed`, the task moves to
`completed` or `failed` through `app.state.tasks` in the same transaction, so the two never disagree.
"""
from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.domain import dispatch as flow
from app.domain import states
from app.infra.timeutil import utcnow
from app.models import Dispatch
from app.state import tasks as task_states
from app.state.cas import Swap, swap_status

log = logging.getLogger(__name__)


class DispatchNotFound(LookupError):
    pass


def move(session: Session, dispatch_id: str, target: str, *, only_from: frozenset[str] | set[str] | None = None,
         values: dict | None = None, error: str | None = None, where: tuple = (),
         now: datetime | None = None) -> Swap:
    """Move `dispatch_id` to `target` if its status allows it; raises DispatchNotFound for an unknown id."""
    allowed = flow.sources(target)
    if only_from is not None:
        allowed = allowed & frozenset(only_from)
    now = now or utcnow()
    row_values = {"status": target, "updated_at": now, **(values or {})}
    if error is not None:
        row_values["error"] = error
    if target in flow.TERMINAL:
        row_values.setdefault("completed_at", now)

    swap = swap_status(session, Dispatch, dispatch_id, allowed, row_values, where)
    if swap.previous is None:
        raise DispatchNotFound(dispatch_id)
    if not swap.won:
        return swap
    task_id = session.scalar(select(Dispatch.task_id).where(Dispatch.dispatch_id == dispatch_id))
    log.info("dispatch %s: %s -> %s%s", dispatch_id, swap.previous, target, f" ({error})" if error else "",
             extra={"task_id": task_id, "event": "dispatch_status"})
    if task_id and target in flow.TERMINAL:
        _settle_task(session, task_id, dispatch_id, target, error, values or {}, now)
    return swap


def _settle_task(session: Session, task_id: str, dispatch_id: str, target: str, error: str | None,
                 values: dict, now: datetime) -> None:
    """The task whose action started this dispatch ends with it."""
    if target == flow.ASSIGNED:
        row = session.execute(select(Dispatch.designer, Dispatch.tuhui_task_id)
                              .where(Dispatch.dispatch_id == dispatch_id)).first()
        result = {"dispatch_id": dispatch_id, "designer": values.get("designer", row.designer),
                  "tuhui_task_id": values.get("tuhui_task_id", row.tuhui_task_id)}
        moved = task_states.move(session, task_id, states.COMPLETED, only_from={states.RUNNING},
                                 result=result, detail={"dispatch_id": dispatch_id}, now=now)
    else:
        moved = task_states.move(session, task_id, states.FAILED, only_from={states.RUNNING},
                                 error=f"dispatch {dispatch_id} failed: {error}",
                                 result={"dispatch_id": dispatch_id}, detail={"dispatch_id": dispatch_id}, now=now)
    if not moved.won:
        log.warning("dispatch %s is %s but its task %s is %s; the task is left as it is", dispatch_id, target,
                    task_id, moved.previous, extra={"task_id": task_id, "event": "dispatch_task"})
