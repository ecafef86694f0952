"""messages.drain (and messages.match): inbound customer (or custom) events find and fire their tasks."""
from celery import shared_task
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import OperationalError

from app import queueing
from app.services import firing

# Infrastructure hiccups are worth retrying; a bug in the event is not (it would fail again).
TRANSIENT = (RedisConnectionError, RedisTimeoutError, OperationalError)


@shared_task(name="messages.drain", autoretry_for=TRANSIENT, retry_backoff=True, retry_backoff_max=30,
             retry_jitter=True, max_retries=10)
def drain(slot: int = 0) -> int:
    """Match the events waiting in the `match` inbox, a batch at a time, until it is empty."""
    return queueing.inbox("match").drain(firing.process_batch, slot, transient=TRANSIENT)


@shared_task(name="messages.match", autoretry_for=TRANSIENT, retry_backoff=True, retry_backoff_max=30,
             retry_jitter=True, max_retries=10)
def match(arrivals: list) -> list[str]:
    """A batch of events queued as one message (by a listener of the previous version): matched as a drain
    matches them (claims are CAS: a redelivery fires nothing twice)."""
    if isinstance(arrivals, dict):  # one event, as a listener of the previous version queued it
        arrivals = [{"event": arrivals}]
    return firing.process_batch(arrivals)
