"""callbacks.flush: deliver every due callback of the outbox to 天网, in batches."""
from celery import shared_task

from app.services import callbacks
from workers.tasks.messages import TRANSIENT


@shared_task(name="callbacks.flush", autoretry_for=TRANSIENT, retry_backoff=True, retry_jitter=True,
             max_retries=10)
def flush() -> dict:
    """Post the due callbacks; a retryable failure leaves its row due later (beat wakes it)."""
    done = callbacks.flush()
    if done.get("more"):
        callbacks.wake()
    return done
