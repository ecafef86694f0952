"""An inbound event as matching sees it: a customer's message, payment or order from 轻简, or a custom
event posted to the API. Pure."""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from functools import cached_property

from app.domain.probes import MAX_PROBED_CHARS


def normalize(text: str) -> str:
    """NFKC (full-width == half-width), trimmed, Latin letters case-folded."""
    return unicodedata.normalize("NFKC", text).strip().lower()


def message_text(content: str) -> str:
    """What matching reads of a text message: normalised, and only its first MAX_PROBED_CHARS characters,
    whether its task is found by customer or by keyword (app.domain.probes bounds the work per message)."""
    return normalize(content[: 4 * MAX_PROBED_CHARS])[:MAX_PROBED_CHARS]


@dataclass(frozen=True)
class InboundEvent:
    kind: str  # message | payment | order | custom
    msg_id: str | None = None
    acc_id: str | None = None
    from_id: str | None = None
    from_name: str | None = None
    text: str | None = None  # normalised; only for text messages
    msg_type: str | None = None  # a message's msg_type as 轻简 sent it (text, image, file, ...)
    received_at: float = 0.0  # the listener's receipt time (epoch seconds)
    event: str | None = None  # custom event name
    data: dict = field(default_factory=dict)

    @classmethod
    def from_wire(cls, frame_event: str, data: dict, received_at: float) -> "InboundEvent":
        """A 轻简 `message`/`payment`/`order` frame's data; raises ValueError if it is not usable."""
        if frame_event not in ("message", "payment", "order"):
            raise ValueError(f"not a customer event: {frame_event!r}")
        if not isinstance(data, dict):
            raise ValueError("data is not an object")
        from_id = data.get("from_id")
        if not isinstance(from_id, str) or not from_id:
            raise ValueError("from_id missing")
        text = msg_type = None
        if frame_event == "message":
            msg_type = data.get("msg_type", "text")
            msg_type = msg_type if isinstance(msg_type, str) else None
        if msg_type == "text":
            content = data.get("content")
            if not isinstance(content, str):
                raise ValueError("text message without string content")
            text = message_text(content)
        return cls(kind=frame_event, msg_id=_str_or_none(data.get("msg_id")),
                   acc_id=_str_or_none(data.get("acc_id")), from_id=from_id,
                   from_name=_str_or_none(data.get("from_name")), text=text, msg_type=msg_type,
                   received_at=received_at)

    @cached_property  # computed once per event, which is matched against every candidate task
    def message_type(self) -> str:
        """text, image, file, ... for a message (as 轻简 named it); payment, order or custom for an event."""
        if self.kind != "message":
            return self.kind
        return "text" if self.text is not None else (self.msg_type or "non-text")

    def as_dict(self) -> dict:
        return {
            "kind": self.kind, "msg_id": self.msg_id, "acc_id": self.acc_id,
            "from_id": self.from_id, "from_name": self.from_name, "text": self.text,
            "received_at": self.received_at, "event": self.event, "data": self.data,
            "msg_type": self.msg_type,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "InboundEvent":
        return cls(**{k: d.get(k) for k in (
            "kind", "msg_id", "acc_id", "from_id", "from_name", "text", "event", "msg_type")},
            received_at=float(d.get("received_at") or 0.0), data=d.get("data") or {})


def _str_or_none(value) -> str | None:
    return value if isinstance(value, str) and value else (str(value) if isinstance(value, int) else None)
