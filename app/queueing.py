"""Enqueue Celery work by task name, so service code never imports the worker modules.

Every message is sent with `ignore_result=True`: nobody waits for these results, and with the Redis
result backend each send would otherwise subscribe to a result channel (two extra round trips).
"""
from __future__ import annotations

from celery import current_app

MATCH_QUEUE = "match"
ACTIONS_QUEUE = "actions"
CALLBACK_QUEUE = "callbacks"
MAINTENANCE_QUEUE = "maintenance"
DISPATCH_QUEUE = "dispatch"


def _send(name: str, args: list, queue: str) -> None:
    current_app.send_task(name, args=args, queue=queue, ignore_result=True)


def enqueue_match(arrivals: list[dict]) -> None:
    """A batch of inbound events for `messages.match` (app.services.firing.process_batch)."""
    _send("messages.match", [arrivals], MATCH_QUEUE)


def enqueue_advance(answers: list[tuple[str, bool, str | None]]) -> None:
    """轻简's answers to action sends, for `actions.advance`."""
    _send("actions.advance", [[list(a) for a in answers]], ACTIONS_QUEUE)


def enqueue_resume(task_ids: list[str]) -> None:
    """Running tasks whose lease lapsed (a retry due, a lost worker or answer), for `actions.resume`."""
    _send("actions.resume", [list(task_ids)], ACTIONS_QUEUE)


def enqueue_callback_flush() -> None:
    _send("callbacks.flush", [], CALLBACK_QUEUE)


def enqueue_dispatch(dispatch_id: str, token: str) -> None:
    """Drive a dispatch; `token` is the lease handed to this message (app.services.dispatch)."""
    _send("dispatch.advance", [dispatch_id, token], DISPATCH_QUEUE)
