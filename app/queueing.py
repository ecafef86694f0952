"""Enqueue Celery work by task name, so service code never imports the worker modules."""
from __future__ import annotations

from celery import current_app

ACTION_QUEUES = {"urgent": "actions.urgent", "high": "actions.high", "normal": "actions.normal",
                 "low": "actions.low"}
MATCH_QUEUE = "match"
CALLBACK_QUEUE = "callbacks"
MAINTENANCE_QUEUE = "maintenance"


def enqueue_action(task_id: str, priority: str) -> None:
    current_app.send_task("tasks.run_action", args=[task_id],
                          queue=ACTION_QUEUES.get(priority, ACTION_QUEUES["normal"]))


def enqueue_match(event: dict) -> None:
    current_app.send_task("messages.match", args=[event], queue=MATCH_QUEUE)


def enqueue_callback(event_id: str) -> None:
    current_app.send_task("callbacks.deliver", args=[event_id], queue=CALLBACK_QUEUE)
