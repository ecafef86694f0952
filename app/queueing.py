"""Enqueue Celery work by task name, so service code never imports the worker modules.

Every message is sent with `ignore_result=True`: nobody waits for these results, and with the Redis
result backend each send would otherwise subscribe to a result channel (two extra round trips).
"""
from __future__ import annotations

from celery import chain, current_app

ACTION_QUEUES = {"urgent": "actions.urgent", "high": "actions.high", "normal": "actions.normal",
                 "low": "actions.low"}
MATCH_QUEUE = "match"
CALLBACK_QUEUE = "callbacks"
MAINTENANCE_QUEUE = "maintenance"
DISPATCH_QUEUE = "dispatch"


def _send(name: str, args: list, queue: str) -> None:
    current_app.send_task(name, args=args, queue=queue, ignore_result=True)


def enqueue_action(task_id: str, priority: str) -> None:
    _send("tasks.run_action", [task_id], ACTION_QUEUES.get(priority, ACTION_QUEUES["normal"]))


def enqueue_actions(actions: list[tuple[str, str]]) -> None:
    """Several (task_id, priority) actions to run one after another, in this order: a Celery chain,
    each link in its own priority queue, the next one sent when the previous has finished."""
    if len(actions) <= 1:
        for task_id, priority in actions:
            enqueue_action(task_id, priority)
        return
    chain(*(current_app.signature("tasks.run_action", args=[task_id], immutable=True,
                                  queue=ACTION_QUEUES.get(priority, ACTION_QUEUES["normal"]))
            for task_id, priority in actions)).apply_async(ignore_result=True)


def enqueue_match(event: dict) -> None:
    _send("messages.match", [event], MATCH_QUEUE)


def enqueue_callback_flush() -> None:
    _send("callbacks.flush", [], CALLBACK_QUEUE)


def enqueue_dispatch(dispatch_id: str, token: str) -> None:
    """Drive a dispatch; `token` is the lease handed to this message (app.services.dispatch)."""
    _send("dispatch.advance", [dispatch_id, token], DISPATCH_QUEUE)
