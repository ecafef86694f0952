"""Enqueue Celery work by task name, so service code never imports the worker modules."""
from __future__ import annotations

from celery import chain, current_app

ACTION_QUEUES = {"urgent": "actions.urgent", "high": "actions.high", "normal": "actions.normal",
                 "low": "actions.low"}
MATCH_QUEUE = "match"
CALLBACK_QUEUE = "callbacks"
MAINTENANCE_QUEUE = "maintenance"
DISPATCH_QUEUE = "dispatch"


def enqueue_action(task_id: str, priority: str) -> None:
    current_app.send_task("tasks.run_action", args=[task_id],
                          queue=ACTION_QUEUES.get(priority, ACTION_QUEUES["normal"]))


def enqueue_actions(actions: list[tuple[str, str]]) -> None:
    """Several (task_id, priority) actions to run one after another, in this order: a Celery chain,
    each link in its own priority queue, the next one sent when the previous has finished."""
    if len(actions) <= 1:
        for task_id, priority in actions:
            enqueue_action(task_id, priority)
        return
    chain(*(current_app.signature("tasks.run_action", args=[task_id], immutable=True,
                                  queue=ACTION_QUEUES.get(priority, ACTION_QUEUES["normal"]))
            for task_id, priority in actions)).apply_async()


def enqueue_match(event: dict) -> None:
    current_app.send_task("messages.match", args=[event], queue=MATCH_QUEUE)


def enqueue_callback(event_id: str) -> None:
    current_app.send_task("callbacks.deliver", args=[event_id], queue=CALLBACK_QUEUE)


def enqueue_dispatch(dispatch_id: str, token: str) -> None:
    """Drive a dispatch; `token` is the lease handed to this message (app.services.dispatch)."""
    current_app.send_task("dispatch.advance", args=[dispatch_id, token], queue=DISPATCH_QUEUE)
