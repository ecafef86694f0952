"""messages.match: an inbound customer or custom event finds and fires its tasks."""
from celery import shared_task
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import OperationalError

from app.domain.triggers import InboundEvent
from app.services import firing

# Infrastructure hiccups are worth retrying; a bug in the event is not (it would fail again).
TRANSIENT = (RedisConnectionError, RedisTimeoutError, OperationalError)


@shared_task(name="messages.match", autoretry_for=TRANSIENT, retry_backoff=True, retry_backoff_max=60,
             retry_jitter=True, max_retries=10)
def match(event: dict) -> list[str]:
    """Fire every waiting task the event matches (claims are CAS, so a redelivery fires nothing twice)."""
    return firing.process_event(InboundEvent.from_dict(event))
