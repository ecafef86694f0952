"""callbacks.deliver: post one outbox row to 天网."""
from celery import shared_task

from app.services import callbacks
from workers.tasks.messages import TRANSIENT

# Short waits are Celery retries; longer ones are left to beat's re-drive of overdue rows (no long
# countdowns: with the Redis broker they are redelivered after the visibility timeout and run twice).
MAX_COUNTDOWN = 60


@shared_task(bind=True, name="callbacks.deliver", autoretry_for=TRANSIENT, retry_backoff=True,
             retry_jitter=True, max_retries=10)
def deliver(self, event_id: str) -> str:
    """Deliver a callback; retryable failures come back after a backoff."""
    outcome = callbacks.deliver(event_id)
    if outcome.state == "pending" and outcome.retry_in is not None and outcome.retry_in <= MAX_COUNTDOWN:
        raise self.retry(countdown=outcome.retry_in, max_retries=None)
    return outcome.state
