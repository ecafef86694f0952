"""Trigger matching (CONTRACTS.md §1 "Trigger types"), pure.

A task's trigger is compiled once into a small `spec` dict (stored in Redis beside the index) and an
inbound event into an `InboundEvent`; `matches(spec, event)` decides. `index_keys(spec)` says under which
Redis keys the task is found, so a message only ever looks at tasks that could match it.
"""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from typing import Iterable, Iterator

SPECIFIED_CUSTOMER_REPLY = "specified_customer_reply"
CUSTOMER_REPLY = "customer_reply"
CUSTOMER_KEYWORD = "customer_keyword"
CUSTOMER_PAYMENT = "customer_payment"
CUSTOMER_ORDER = "customer_order"
TIME_REACH = "time_reach"
CUSTOM_EVENT = "custom_event"

TRIGGER_TYPES = (
    SPECIFIED_CUSTOMER_REPLY, CUSTOMER_REPLY, CUSTOMER_KEYWORD, CUSTOMER_PAYMENT,
    CUSTOMER_ORDER, TIME_REACH, CUSTOM_EVENT,
)
# Triggers fired by what a customer sends (text, payment, order): these honour customer binding
# and lookback_seconds.
MESSAGE_TRIGGERS = frozenset({
    SPECIFIED_CUSTOMER_REPLY, CUSTOMER_REPLY, CUSTOMER_KEYWORD, CUSTOMER_PAYMENT, CUSTOMER_ORDER,
})
EVENT_KIND_OF = {CUSTOMER_PAYMENT: "payment", CUSTOMER_ORDER: "order"}

PRIORITY_RANK = {"urgent": 0, "high": 1, "normal": 2, "low": 3}


def normalize(text: str) -> str:
    """NFKC (full-width == half-width), trimmed, Latin letters case-folded."""
    return unicodedata.normalize("NFKC", text).strip().lower()


@dataclass(frozen=True)
class InboundEvent:
    kind: str  # message | payment | order | custom
    msg_id: str | None = None
    acc_id: str | None = None
    from_id: str | None = None
    from_name: str | None = None
    text: str | None = None  # normalised; only for text messages
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
        text = None
        if frame_event == "message" and data.get("msg_type", "text") == "text":
            content = data.get("content")
            if not isinstance(content, str):
                raise ValueError("text message without string content")
            text = normalize(content)
        return cls(
            kind=frame_event,
            msg_id=_str_or_none(data.get("msg_id")),
            acc_id=_str_or_none(data.get("acc_id")),
            from_id=from_id,
            from_name=_str_or_none(data.get("from_name")),
            text=text,
            received_at=received_at,
        )

    def as_dict(self) -> dict:
        return {
            "kind": self.kind, "msg_id": self.msg_id, "acc_id": self.acc_id,
            "from_id": self.from_id, "from_name": self.from_name, "text": self.text,
            "received_at": self.received_at, "event": self.event, "data": self.data,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "InboundEvent":
        return cls(**{k: d.get(k) for k in (
            "kind", "msg_id", "acc_id", "from_id", "from_name", "text", "event")},
            received_at=float(d.get("received_at") or 0.0), data=d.get("data") or {})


def _str_or_none(value) -> str | None:
    return value if isinstance(value, str) and value else (str(value) if isinstance(value, int) else None)


def compile_spec(
    *, task_id: str, trigger: dict, customer_id: str | None, priority: str, created_at: float,
    payment_keywords: Iterable[str], order_keywords: Iterable[str],
) -> dict:
    """The matching-relevant part of a validated task, in a compact JSON-able form.

    `customer_id` is the customer every message trigger is bound to (CONTRACTS.md: `customer.id`, or
    `trigger.customer_id` for specified_customer_reply), or None for "any customer".
    """
    kind = trigger["type"]
    spec: dict = {"id": task_id, "t": kind, "p": PRIORITY_RANK.get(priority, 2), "ts": created_at}
    if kind in MESSAGE_TRIGGERS:
        spec["c"] = trigger["customer_id"] if kind == SPECIFIED_CUSTOMER_REPLY else customer_id
        spec["lb"] = float(trigger.get("lookback_seconds") or 0)
    if kind == SPECIFIED_CUSTOMER_REPLY and trigger.get("customer_name"):
        spec["n"] = trigger["customer_name"]
    if kind in (SPECIFIED_CUSTOMER_REPLY, CUSTOMER_REPLY):
        spec["k"] = [normalize(trigger["keyword"])]
        spec["x"] = bool(trigger.get("exact_match", False))
    elif kind == CUSTOMER_KEYWORD:
        spec["k"] = _unique(normalize(k) for k in trigger["keywords"])
    elif kind in EVENT_KIND_OF:
        defaults = payment_keywords if kind == CUSTOMER_PAYMENT else order_keywords
        spec["k"] = _unique(normalize(k) for k in (trigger.get("keywords") or defaults))
    elif kind == CUSTOM_EVENT:
        spec["e"] = trigger["event"]
        spec["m"] = trigger.get("match") or {}
    return spec


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(i for i in items if i))


def matches(spec: dict, event: InboundEvent) -> bool:
    kind = spec["t"]
    if kind == CUSTOM_EVENT:
        return (
            event.kind == "custom" and event.event == spec["e"]
            and all(k in event.data and same_json(event.data[k], v) for k, v in spec.get("m", {}).items())
        )
    if kind not in MESSAGE_TRIGGERS or event.kind == "custom":
        return False
    if spec.get("c") and event.from_id != spec["c"]:
        return False
    if kind == SPECIFIED_CUSTOMER_REPLY and spec.get("n") and event.from_name != spec["n"]:
        return False
    if kind in EVENT_KIND_OF and event.kind == EVENT_KIND_OF[kind]:
        return True
    if event.kind != "message" or event.text is None:
        return False
    if spec.get("x"):
        return event.text in spec["k"]
    return any(k in event.text for k in spec["k"])


def same_json(a, b) -> bool:
    """JSON equality: unlike Python's ==, true is not 1 and false is not 0."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b  # 1 and 1.0 are the same JSON number
    return type(a) is type(b) and a == b


def within_lookback(spec: dict, event: InboundEvent) -> bool:
    """Whether a message received before the task arrived still counts for it."""
    return event.received_at >= spec["ts"] - spec.get("lb", 0.0)


def index_keys(spec: dict) -> list[tuple[str, str]]:
    """Where the task is filed in the Redis index: ("cust", id), ("kw", word), ("evt", kind), ("ce", name)."""
    kind = spec["t"]
    if kind == CUSTOM_EVENT:
        return [("ce", spec["e"])]
    if kind not in MESSAGE_TRIGGERS:
        return []
    if spec.get("c"):
        return [("cust", spec["c"])]
    keys = [("kw", k) for k in spec.get("k", [])]
    if kind in EVENT_KIND_OF:
        keys.append(("evt", EVENT_KIND_OF[kind]))
    return keys


def substrings(text: str, lengths: Iterable[int]) -> Iterator[str]:
    """Every substring of `text` whose length is one of `lengths`: the keyword-index probes."""
    n = len(text)
    for length in sorted({int(l) for l in lengths}):
        if length <= 0 or length > n:
            continue
        for start in range(n - length + 1):
            yield text[start:start + length]


def firing_order(specs: Iterable[dict]) -> list[dict]:
    """Priority first (urgent before low), then the oldest task first."""
    return sorted(specs, key=lambda s: (s["p"], s["ts"], s["id"]))
