"""The clock, and stored times (naive UTC) shown or counted (parsing wire times is app.domain.times)."""
from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def iso(moment: datetime | None, zone: str = "Asia/Shanghai") -> str | None:
    """A stored time as ISO 8601 with the offset of `zone`."""
    if moment is None:
        return None
    return moment.replace(tzinfo=timezone.utc).astimezone(ZoneInfo(zone)).isoformat(timespec="milliseconds")


def epoch(moment: datetime) -> float:
    return moment.replace(tzinfo=timezone.utc).timestamp()
