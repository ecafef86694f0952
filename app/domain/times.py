"""Times on the wire (CONTRACTS.md: ISO 8601 with an offset; a time without one is read in APP_TIMEZONE)
and their stored form (naive UTC). Pure: the clock itself is app.infra.timeutil.utcnow."""
from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo


def to_utc_naive(moment: datetime, default_zone: str) -> datetime:
    """A wire time to the stored form; a time without an offset is read in `default_zone`."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(default_zone))
    return moment.astimezone(timezone.utc).replace(tzinfo=None)


def parse_wire_time(text: str) -> datetime:
    """`YYYY-MM-DD HH:MM:SS` or ISO 8601 (a trailing Z included); raises ValueError."""
    text = text.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    moment = datetime.fromisoformat(text)
    # Near the ends of datetime's range a zone shift or a deadline would overflow; no task lives there.
    if not 1970 <= moment.year <= 9998:
        raise ValueError(f"year {moment.year} is out of range (1970-9998)")
    return moment
