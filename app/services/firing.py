"""From inbound events to fired tasks: look candidates up, match, claim the winners, start their actions.

The listener hands events over through the `match` inbox, drained a batch at a time (app.infra.inbox). A batch's winners are claimed
in one transaction (`waiting -> running`, a CAS: whoever's update hits wins), which also marks the
batch's messages matched in SQL with what each fired. Their actions start right away without a second
Celery hop, each in its customer's lane (app.lanes), so sends to one customer leave in the order the
messages arrived.
"""
from __future__ import annotations

import logging

import redis
from sqlalchemy import select

from app import runtime, stats
from app.domain import states
from app.domain.events import InboundEvent
from app.domain.triggers import MESSAGE_TRIGGERS, firing_order, matches, within_lookback
from app.infra.db import session_scope
from app.infra.timeutil import utcnow
from app.lanes import Lanes
from app.models import Task
from app.services import actions, inbound
from app.state import tasks as task_states

log = logging.getLogger(__name__)


def process_batch(arrivals: list[dict]) -> list[str]:
    """Fire every waiting task the batch's events match, in arrival order and, per event, in priority
    order; returns the ids fired. An arrival is `{"event": InboundEvent.as_dict(), "inbound_id": row id,
    "lane": [acc_id, customer_id], "mark": the message's lane entry}` (all but `event` optional).

    While the index is being rebuilt (Redis restarted empty) nothing is matched: the messages stay
    unmatched in SQL and beat hands them over again once the index is complete."""
    rt = runtime.current()
    if not rt.registry.is_built():
        log.warning("index not complete yet (Redis restarted?): %d events wait to be matched again",
                    len(arrivals), extra={"event": "index_incomplete"})
        return []
    taken: dict[str, dict] = {}  # task id -> its spec
    plans = []
    events = [InboundEvent.from_dict(arrival["event"]) for arrival in arrivals]
    for arrival, event, candidates in zip(arrivals, events, rt.registry.candidates_many(events)):
        hits = [spec for spec in firing_order(candidates)
                if spec["id"] not in taken and matches(spec, event)
                and (spec["t"] not in MESSAGE_TRIGGERS or within_lookback(spec, event))]
        taken.update((spec["id"], spec) for spec in hits)
        plans.append((arrival, event, [spec["id"] for spec in hits]))
    won, token = _claim({task_id: triggered_by(event) for _, event, ids in plans for task_id in ids},
                        {a["inbound_id"]: ids for a, _, ids in plans if a.get("inbound_id")}, taken)
    fired = [[task_id for task_id in ids if task_id in won] for _, _, ids in plans]
    _start_in_lanes([(a, ids) for (a, _, _), ids in zip(plans, fired)], token)
    stats.incr("match", "events", len(arrivals))
    return [task_id for ids in fired for task_id in ids]


def triggered_by(event: InboundEvent) -> dict:
    return {"kind": event.kind, "msg_id": event.msg_id, "customer_id": event.from_id,
            "customer_name": event.from_name, "acc_id": event.acc_id, "event": event.event,
            "received_at": event.received_at}


def _claim(by: dict[str, dict], matched: dict[int, list[str]], specs: dict[str, dict] | None = None
           ) -> tuple[set[str], str]:
    """`waiting -> running` for every task in `by` (task id -> what fired it), in one transaction with the
    messages' matched marks; returns the winners and the lease token they were claimed under. `specs`
    (task id -> its index entry) spare reading the entries back to take them out of the index."""
    rt = runtime.current()
    now, token = utcnow(), actions.new_token()
    with session_scope() as session:
        won = set(task_states.move_many(
            session, list(by), states.WAITING, states.RUNNING,
            values={"triggered_at": now, "lease_owner": token, "lease_expires_at": now + actions.lease()},
            per_task={task_id: {"triggered_by": fired_by} for task_id, fired_by in by.items()},
            detail_of={task_id: {"triggered_by": fired_by} for task_id, fired_by in by.items()}, now=now))
        inbound.mark_matched(session, {row: [t for t in ids if t in won] for row, ids in matched.items()}, now)
        lost = [task_id for task_id in by if task_id not in won]
        stale = list(session.scalars(select(Task.task_id).where(Task.task_id.in_(lost),
                                                                Task.status != states.PENDING))) if lost else []
    for task_id in won:
        log.info("task %s fired by %s", task_id, by[task_id].get("msg_id") or by[task_id]["kind"],
                 extra={"task_id": task_id, "event": "fired"})
    rt.registry.discard_many([*won, *stale], specs)  # fired, or stale entries of tasks that no longer wait
    return won, token


def _start_in_lanes(fired: list[tuple[dict, list[str]]], token: str) -> None:
    """Each message's place in its customer's lane goes to the tasks it fired; the heads start now.
    Tasks fired by an event without a lane entry (a custom event, a message matched again) queue at the
    tail of their recipient's lane."""
    rt = runtime.current()
    owned = {task_id: token for _, ids in fired for task_id in ids}
    with_lane = [(tuple(a["lane"]), a["mark"], ids) for a, ids in fired if a.get("lane") and a.get("mark")]
    heads = Lanes(rt.redis, rt.keys).resolve(with_lane) if with_lane else []
    queued = [task_id for a, ids in fired if not (a.get("lane") and a.get("mark")) for task_id in ids]
    if heads:
        actions.start(heads, owned)
    if queued:
        actions.queue(queued, owned)


def claim(task_id: str, event: InboundEvent | None) -> bool:
    """Fire one task (a catch-up, an operator's retry): `waiting -> running` for whoever gets there first;
    the winner's action queues in its customer's lane."""
    won, token = _claim({task_id: triggered_by(event) if event is not None else {"kind": "time"}}, {})
    if won:
        actions.queue([task_id], {task_id: token})
    return bool(won)


def catch_up(spec: dict) -> None:
    """Fire a just-registered task on a message that arrived since the task did (or within its
    lookback_seconds before it).

    The listener keeps the last hour of messages; one that arrived while the task was being
    registered may have found it still pending, so it is looked at again here.
    """
    if spec["t"] not in MESSAGE_TRIGGERS:
        return
    rt = runtime.current()
    since = spec["ts"] - spec.get("lb", 0.0)
    try:
        recent = rt.registry.recent(spec.get("c"), since)
    except redis.RedisError:
        return
    for event in recent:  # oldest first
        if matches(spec, event) and within_lookback(spec, event):
            claim(spec["id"], event)
            return
