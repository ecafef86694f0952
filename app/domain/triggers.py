"""Trigger matching (CONTRACTS.md §1 "Trigger types"), pure.

A task's trigger is compiled once into a small `spec` (TriggerSpec, stored in Redis beside the index) and an
inbound event into an `InboundEvent` (app.domain.events); `matches(spec, event)` decides with the trigger type's named
checks (`CHECKS`), which app.domain.explain runs too, to say why. `index_keys(spec)` says under which
Redis keys the task is found, so a message only ever looks at tasks that could match it.
"""
from __future__ import annotations

from typing import Callable, Iterable, TypedDict

from app.domain.events import InboundEvent, normalize

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


class TriggerSpec(TypedDict, total=False):
    """A waiting task's trigger as the index keeps it (app.registry: the `spec` hash). The keys are one
    letter long because the index holds one per waiting task, a million of them in one Redis:

    id  task_id                                 t   trigger type (TRIGGER_TYPES)
    p   priority rank (PRIORITY_RANK: 0 urgent)  ts  since when it listens (epoch s: received or re-armed)
    a   the shop account it is bound to         c   the customer it is bound to (None: any customer)
    lb  lookback_seconds                        n   the name the sender must have (specified reply)
    k   normalised keywords                     x   exact match (else contains)
    e   custom event name                       m   custom event data that must match
    """

    id: str
    t: str
    p: int
    ts: float
    a: str
    c: str | None
    lb: float
    n: str
    k: list[str]
    x: bool
    e: str
    m: dict


def compile_spec(
    *, task_id: str, trigger: dict, customer_id: str | None, priority: str, created_at: float,
    payment_keywords: Iterable[str], order_keywords: Iterable[str], acc_id: str | None = None,
) -> TriggerSpec:
    """The matching-relevant part of a validated task, in a compact JSON-able form.

    `customer_id` is the customer every message trigger is bound to (CONTRACTS.md: `customer.id`, or
    `trigger.customer_id` for specified_customer_reply), or None for "any customer"; `acc_id` the shop
    account the task is bound to (its messages and events only), or None for any account.
    """
    kind = trigger["type"]
    spec: TriggerSpec = {"id": task_id, "t": kind, "p": PRIORITY_RANK.get(priority, 2), "ts": created_at}
    if acc_id:
        spec["a"] = acc_id
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


# -- the conditions of a match ----------------------------------------------------------------------
# A check is a named function (spec, event) -> verdict: True (pass), False (fail) or NOT_APPLICABLE
# (the task sets no such condition; truthy, so it never stops a match). `check.compared(spec, event)`
# gives the (expected, actual) values the check compares. `matches` runs the checks of the spec's
# trigger type in order and stops at the first failure; app.domain.explain runs all of them and says
# what each one saw.
NOT_APPLICABLE = "not_applicable"
Check = Callable[[dict, InboundEvent], "bool | str"]

# What fires each trigger type: a text, the payment/order event itself, a custom event; time_reach: none.
ACCEPTS: dict[str, tuple[str, ...]] = {
    SPECIFIED_CUSTOMER_REPLY: ("text",), CUSTOMER_REPLY: ("text",), CUSTOMER_KEYWORD: ("text",),
    CUSTOMER_PAYMENT: ("text", "payment"), CUSTOMER_ORDER: ("text", "order"), TIME_REACH: (),
    CUSTOM_EVENT: ("custom",),
}


def _condition(name: str, compared: Callable[[dict, InboundEvent], tuple]) -> Callable[[Check], Check]:
    def named(check: Check) -> Check:
        check.condition, check.compared = name, compared  # type: ignore[attr-defined]
        return check
    return named


@_condition("message_type", lambda spec, event: (ACCEPTS.get(spec["t"], ()), event.message_type))
def check_message_type(spec: TriggerSpec, event: InboundEvent) -> bool:
    return event.message_type in ACCEPTS.get(spec["t"], ())


@_condition("shop", lambda spec, event: (spec.get("a"), event.acc_id))
def check_shop(spec: TriggerSpec, event: InboundEvent) -> bool | str:
    return event.acc_id == spec["a"] if "a" in spec else NOT_APPLICABLE


@_condition("customer_id", lambda spec, event: (spec["c"], event.from_id))
def check_customer_id(spec: TriggerSpec, event: InboundEvent) -> bool | str:
    want = spec["c"]  # compile_spec sets it (None: any customer) for every message trigger
    return event.from_id == want if want else NOT_APPLICABLE


@_condition("customer_name", lambda spec, event: (spec.get("n"), event.from_name))
def check_customer_name(spec: TriggerSpec, event: InboundEvent) -> bool | str:
    return event.from_name == spec["n"] if "n" in spec else NOT_APPLICABLE


@_condition("keyword", lambda spec, event: (
    {"keywords": spec["k"], "match": "exact" if spec.get("x") else "contains"}, event.text))
def check_keyword(spec: TriggerSpec, event: InboundEvent) -> bool | str:
    """Normalised keywords against the normalised text: equal to one (exact_match) or contained."""
    text = event.text
    if text is None:  # a payment/order event fires its trigger by itself; nothing else without text does
        return NOT_APPLICABLE if event.kind == EVENT_KIND_OF.get(spec["t"]) else False
    if "x" in spec and spec["x"]:
        return text in spec["k"]
    for word in spec["k"]:
        if word in text:
            return True
    return False


@_condition("event_name", lambda spec, event: (spec["e"], event.event))
def check_event_name(spec: TriggerSpec, event: InboundEvent) -> bool:
    return event.event == spec["e"]


@_condition("event_data", lambda spec, event: (spec.get("m") or {}, event.data))
def check_event_data(spec: TriggerSpec, event: InboundEvent) -> bool | str:
    want, data = spec.get("m"), event.data
    if not want:
        return NOT_APPLICABLE
    for key, value in want.items():
        if key not in data or not same_json(data[key], value):
            return False
    return True


def within_lookback(spec: TriggerSpec, event: InboundEvent) -> bool:
    """Whether a message received before the task arrived still counts for it."""
    return event.received_at >= spec["ts"] - spec.get("lb", 0.0)


# Expected: lookback_seconds; actual: how long before the task the message arrived (< 0: after it).
check_lookback = _condition(
    "lookback", lambda spec, event: (spec.get("lb", 0.0), round(spec["ts"] - event.received_at, 3)))(within_lookback)

_BY_MESSAGE = (check_message_type, check_shop, check_customer_id, check_keyword)
CHECKS: dict[str, tuple[Check, ...]] = {
    SPECIFIED_CUSTOMER_REPLY: (check_message_type, check_shop, check_customer_id, check_customer_name,
                               check_keyword),
    CUSTOMER_REPLY: _BY_MESSAGE, CUSTOMER_KEYWORD: _BY_MESSAGE,
    CUSTOMER_PAYMENT: _BY_MESSAGE, CUSTOMER_ORDER: _BY_MESSAGE,
    TIME_REACH: (check_message_type,),  # accepts nothing: it fires on its time
    CUSTOM_EVENT: (check_message_type, check_shop, check_event_name, check_event_data),
}


# The matcher's plan, by trigger type and the message type it accepts: the checks after
# check_message_type (a type it does not accept fails that check); an event that fires its own
# payment/order trigger skips check_keyword, which would only say NOT_APPLICABLE.
_PLANS: dict[str, dict[str, tuple[Check, ...]]] = {
    kind: {accepted: tuple(c for c in CHECKS[kind][1:] if accepted == "text" or c is not check_keyword)
           for accepted in ACCEPTS[kind]}
    for kind in CHECKS
}


def matches(spec: TriggerSpec, event: InboundEvent) -> bool:
    """Every check of the trigger type passes (lookback_seconds aside: `within_lookback`)."""
    plan = (_PLANS.get(spec["t"]) or {}).get(event.message_type)  # time_reach: accepts none
    if plan is None:
        return False
    for check in plan:
        if not check(spec, event):
            return False
    return True


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


def index_keys(spec: TriggerSpec) -> list[tuple[str, str]]:
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


def firing_order(specs: Iterable[TriggerSpec]) -> list[TriggerSpec]:
    """Priority first (urgent before low), then the oldest task first."""
    return sorted(specs, key=lambda s: (s["p"], s["ts"], s["id"]))
