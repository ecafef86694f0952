"""Enqueue Celery work by task name, so service code never imports the worker modules; and the two
inboxes (app.infra.inbox) through which the listener's steady stream reaches matching and actions.

Every message is sent with `ignore_result=True`: nobody waits for these results, and with the Redis
result backend each send would otherwise subscribe to a result channel (two extra round trips).
"""
from __future__ import annotations

from celery import current_app

from app import runtime
from app.infra.inbox import Inbox

MATCH_QUEUE = "match"
ACTIONS_QUEUE = "actions"
CALLBACK_QUEUE = "callbacks"
MAINTENANCE_QUEUE = "maintenance"
DISPATCH_QUEUE = "dispatch"


# inbox name -> (the task that drains it, its queue)
INBOXES = {"match": ("messages.drain", MATCH_QUEUE), "answers": ("actions.drain", ACTIONS_QUEUE)}


def _send(name: str, args: list, queue: str) -> None:
    current_app.send_task(name, args=args, queue=queue, ignore_result=True)


def inbox(name: str) -> Inbox:
    rt = runtime.current()
    where = (name, id(rt.redis), rt.keys.prefix)  # the Inbox holds the client, so its id stays its own
    found = _inboxes.get(where)
    if found is None:
        task, queue = INBOXES[name]
        found = _inboxes[where] = Inbox(rt.redis, rt.keys, name, wake=lambda slot: _send(task, [slot], queue))
    return found


_inboxes: dict[tuple[str, int, str], Inbox] = {}  # per Redis client and key prefix (tests configure several)


def enqueue_match(arrivals: list[dict]) -> None:
    """Inbound events for matching (app.services.firing.process_batch), through the `match` inbox."""
    inbox("match").put(arrivals)


def enqueue_advance(answers: list[tuple[str, bool, str | None]]) -> None:
    """轻简's answers to action sends (app.services.actions.advance), through the `answers` inbox."""
    inbox("answers").put([list(a) for a in answers])


def enqueue_resume(task_ids: list[str]) -> None:
    """Running tasks whose lease lapsed (a retry due, a lost worker or answer), for `actions.resume`."""
    _send("actions.resume", [list(task_ids)], ACTIONS_QUEUE)


def enqueue_callback_flush() -> None:
    _send("callbacks.flush", [], CALLBACK_QUEUE)


def enqueue_dispatch(dispatch_id: str, token: str) -> None:
    """Drive a dispatch; `token` is the lease handed to this message (app.services.dispatch)."""
    _send("dispatch.advance", [dispatch_id, token], DISPATCH_QUEUE)
