"""messages.match: a batch of inbound customer (or custom) events finds and fires its tasks."""
from celery import shared_task
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import OperationalError

from app.services import firing

# Infrastructure hiccups are worth retrying; a bug in the event is not (it would fail again).
TRANSIENT = (RedisConnectionError, RedisTimeoutError, OperationalError)


@shared_task(name="messages.match", autoretry_for=TRANSIENT, retry_backoff=True, retry_backoff_max=30,
             retry_jitter=True, max_retries=10)
def match(arrivals: list) -> list[str]:
    """Fire every waiting task the batch's events match (claims are CAS: a redelivery fires nothing twice)."""
    if isinstance(arrivals, dict):  # one event, as a listener of the previous version queued it
        arrivals = [{"event": arrivals}]
    return firing.process_batch(arrivals)
