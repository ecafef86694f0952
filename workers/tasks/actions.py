"""tasks.run_action: perform a fired task's action, with retries under the task's max_retry."""
import os
import uuid

from celery import shared_task

from app.services import actions
from workers.tasks.messages import TRANSIENT


@shared_task(bind=True, name="tasks.run_action", autoretry_for=TRANSIENT, retry_backoff=True,
             retry_backoff_max=60, retry_jitter=True, max_retries=None)
def run_action(self, task_id: str) -> str | None:
    """Send the action's steps through 轻简; on failure retry with backoff or finish the task."""
    # A fresh owner per execution: a redelivered message must not inherit a dead run's lease.
    owner = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
    outcome = actions.run(task_id, owner)
    if not outcome.done:
        raise self.retry(countdown=outcome.retry_in, max_retries=None)
    return outcome.status
