"""Why a task fired or did not (issue 11, CONTRACTS.md §1 `GET /api/task/{task_id}/explain`), pure.

A message's conditions are the matcher's own checks (app.domain.triggers.CHECKS, then lookback for
message triggers), run here without short-circuit, so an explanation cannot disagree with `matches`.
Beside them the task's state decides what a message alone does not: its status when the message came,
its deadline, and for time_reach its time. Times are epoch seconds; `when` formats them for people.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from app.domain import states
from app.domain.events import InboundEvent
from app.domain.triggers import (
    CHECKS,
    CUSTOM_EVENT,
    MESSAGE_TRIGGERS,
    NOT_APPLICABLE,
    TIME_REACH,
    TriggerSpec,
    check_lookback,
    same_json,
)

PASS, FAIL = "pass", "fail"  # and NOT_APPLICABLE
FIRED, WOULD_FIRE, WOULD_NOT_FIRE, WAITING = "fired", "would_fire", "would_not_fire", "waiting"
_VERDICT = {True: PASS, False: FAIL, NOT_APPLICABLE: NOT_APPLICABLE}
_KIND_LABEL = {"text": "a text message", "payment": "a payment event", "order": "an order event",
               "custom": "a custom event"}


@dataclass(frozen=True)
class TaskState:
    """What SQL knows of the task beside its trigger (epoch seconds)."""
    status: str
    created_at: float
    expires_at: float
    due_at: float | None = None  # time_reach
    triggered_at: float | None = None
    triggered_by: dict | None = None
    completed_at: float | None = None  # for cancelled and timeout: when that happened
    error_message: str | None = None


@dataclass(frozen=True)
class Condition:
    name: str
    verdict: str  # pass | fail | not_applicable
    expected: Any
    actual: Any
    note: str


@dataclass(frozen=True)
class Explanation:
    conditions: list[Condition]
    matched: bool  # the trigger's conditions (the matcher's checks and lookback) all pass
    outcome: str  # fired | would_fire | would_not_fire | waiting (no message yet, or not yet its time)
    conclusion: str
    event: InboundEvent | None = field(default=None, compare=False)


def utc_iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds")


def explain(spec: TriggerSpec, state: TaskState, event: InboundEvent | None, *, now: float,
            when: Callable[[float], str] = utc_iso, hypothetical: bool = False) -> Explanation:
    """Every condition of the task against `event` (None: the task alone, against the clock).

    `hypothetical`: the event did not happen (a body posted to explain); the conclusion says "would".
    """
    at = event.received_at if event is not None else now
    trigger = [_condition(check, spec, event) for check in _checks_of(spec)] if event else []
    fired_here = _fired_by(state, event)
    conditions = [_status(state, event, at, when, fired_here), *trigger, _deadline(state, at, when)]
    if spec["t"] == TIME_REACH and state.due_at is not None:
        conditions.append(_time(state.due_at, at, when))
    matched = bool(trigger) and all(c.verdict != FAIL for c in trigger)
    failures = [c for c in conditions if c.verdict == FAIL]
    if fired_here or (event is None and state.triggered_at is not None):
        outcome, conclusion = FIRED, f"did fire at {when(state.triggered_at)} ({_by(state.triggered_by)})"
    elif event is None and [c.name for c in failures] == ["time"]:
        outcome, conclusion = WAITING, f"will fire at {when(state.due_at)}"
    elif event is None and not failures and spec["t"] != TIME_REACH:
        awaited = "event" if spec["t"] == CUSTOM_EVENT else "message"
        outcome, conclusion = WAITING, f"waiting for a matching {awaited}"
    elif failures:
        outcome, conclusion = WOULD_NOT_FIRE, _why_not(state, event, failures, when, hypothetical)
    else:
        outcome, conclusion = WOULD_FIRE, "would fire"
    return Explanation(conditions, matched, outcome, conclusion, event)


def summary(alone: Explanation, recent: list[Explanation]) -> str:
    """One sentence for the task against its recent messages (newest first); `alone`: the task itself."""
    fired = next((e for e in recent if e.outcome == FIRED), alone if alone.outcome == FIRED else None)
    if fired is not None:
        return fired.conclusion
    would = next((e for e in recent if e.outcome == WOULD_FIRE), None)
    if would is not None:
        return f"would fire on message {would.event.msg_id or '(no msg_id)'}"
    if not recent:
        return f"{alone.conclusion}; no recent message to explain it against"
    if len(recent) == 1:
        return f"the only recent message {recent[0].conclusion}"
    return f"none of the {len(recent)} recent messages fires it; the newest {recent[0].conclusion}"


def _checks_of(spec: TriggerSpec) -> tuple:
    base = CHECKS.get(spec["t"], CHECKS[TIME_REACH])
    return base + (check_lookback,) if spec["t"] in MESSAGE_TRIGGERS else base


def _condition(check, spec: TriggerSpec, event: InboundEvent) -> Condition:
    verdict = _VERDICT[check(spec, event)]
    expected, actual = check.compared(spec, event)
    return Condition(check.condition, verdict, expected, actual,
                     _NOTES[check.condition](verdict, expected, actual, spec, event))


def _why_not(state: TaskState, event, failures: list[Condition], when, hypothetical: bool) -> str:
    if state.triggered_at is not None:  # fired, by something else
        done = f"did fire at {when(state.triggered_at)} ({_by(state.triggered_by)})"
        others = "; ".join(c.note for c in failures if c.name != "status")
        return f"{done}, not on this message: {others}" if others else f"{done}, before this message"
    reasons = "; ".join(c.note for c in failures)
    return f"{'would not' if hypothetical or event is None else 'did not'}: {reasons}"


# -- the task's state ------------------------------------------------------------------------------

def _fired_by(state: TaskState, event: InboundEvent | None) -> bool:
    by = state.triggered_by or {}
    return (event is not None and state.triggered_at is not None and event.msg_id is not None
            and by.get("msg_id") == event.msg_id)


def _by(triggered_by: dict | None) -> str:
    by = triggered_by or {}
    if by.get("msg_id"):
        return f"message {by['msg_id']}"
    if by.get("kind") == "custom":
        return f"event {by.get('event')}"
    return "its time" if by.get("kind") == "time" else "a trigger"


def _status(state: TaskState, event, at: float, when, fired_here: bool) -> Condition:
    """Was the task listening when the message came (or now, without one)?"""
    def made(verdict, actual, note):
        return Condition("status", verdict, states.WAITING, actual, note)

    now_is = f"; it is {state.status} now"
    if fired_here:
        return made(PASS, states.WAITING, f"fired by this message at {when(state.triggered_at)}{now_is}")
    if state.triggered_at is not None:
        fired = f"at {when(state.triggered_at)} by {_by(state.triggered_by)}"
        if event is not None and at < state.triggered_at:
            return made(PASS, states.WAITING, f"not yet fired when this message came (it fired later, {fired})")
        return made(FAIL, state.status, f"already fired {fired}: a task fires once{now_is}")
    if state.status in (states.CANCELLED, states.TIMEOUT):
        ended = state.completed_at if state.completed_at is not None else state.expires_at
        what = "cancelled" if state.status == states.CANCELLED else "timed out"
        if event is not None and at < ended:
            return made(PASS, states.WAITING,
                        f"still waiting when this message came ({what} later, at {when(ended)})")
        reason = f" ({state.error_message})" if state.error_message else ""
        return made(FAIL, state.status, f"{what} at {when(ended)}{reason}")
    if state.status == states.PENDING:
        return made(FAIL, state.status, "pending: stored but not yet listening (it is registered once Redis "
                                        "answers, then catches up on messages since it arrived)")
    return made(PASS, state.status, "waiting: listening for its trigger")


def _deadline(state: TaskState, at: float, when) -> Condition:
    ok = at < state.expires_at
    note = (f"before the deadline ({duration(state.expires_at - at)} left)" if ok
            else f"the deadline passed {duration(at - state.expires_at)} before")
    return Condition("deadline", PASS if ok else FAIL, when(state.expires_at), when(at), note)


def _time(due: float, at: float, when) -> Condition:
    ok = at >= due
    note = (f"due at {when(due)}: reached" if ok
            else f"not yet reached: due at {when(due)}, in {duration(due - at)}")
    return Condition("time", PASS if ok else FAIL, when(due), when(at), note)


def duration(seconds: float) -> str:
    """3 s, 2 min 5 s, 4 h 10 min, 2 d 3 h."""
    s = max(0, round(seconds))
    for unit, size, sub, sub_size in (("d", 86400, "h", 3600), ("h", 3600, "min", 60), ("min", 60, "s", 1)):
        if s >= size:
            rest = (s % size) // sub_size
            return f"{s // size} {unit}" + (f" {rest} {sub}" if rest else "")
    return f"{s} s"


# -- what each of the matcher's conditions saw, in words -------------------------------------------

def _q(value) -> str:
    return json.dumps(value, ensure_ascii=False)


def _kinds(accepted) -> str:
    return " or ".join(_KIND_LABEL.get(k, k) for k in accepted)


def _message_type(verdict, expected, actual, spec, event) -> str:
    label = _KIND_LABEL.get(actual, f"a message of type {actual}")
    if verdict == PASS:
        return label
    if not expected:
        return f"a {spec['t']} task fires at its time, not on a message or event"
    return f"this was {label}, the task wants {_kinds(expected)}"


def _equal(what: str, none: str, na: str):
    def note(verdict, expected, actual, spec, event) -> str:
        if verdict == NOT_APPLICABLE:
            return na
        if verdict == PASS:
            return f"the {what} is {actual}"
        was = f"the {what} was {actual}" if actual is not None else none
        return f"{was}, the task wants {expected}"
    return note


def _keyword(verdict, expected, actual, spec, event) -> str:
    words, exact = expected["keywords"], expected["match"] == "exact"
    if verdict == NOT_APPLICABLE:
        return f"the {event.kind} event fires it by itself (keywords are for texts)"
    if actual is None:
        return "no text to look for a keyword in"
    shown = ", ".join(_q(w) for w in words)
    if exact:
        if verdict == PASS:
            return f"the text {_q(actual)} equals the keyword (exact_match)"
        inside = any(w in actual for w in words)
        return f"the text {_q(actual)} is not exactly {shown}" + (
            " (it contains one, but exact_match wants the whole text)" if inside else "")
    found = [w for w in words if w in actual]
    if found:
        return f"the text {_q(actual)} contains {_q(found[0])}"
    return f"the text {_q(actual)} contains none of {shown}" if len(words) > 1 else \
        f"the text {_q(actual)} does not contain {shown}"


def _lookback(verdict, expected, actual, spec, event) -> str:
    if actual <= 0:
        return f"arrived {duration(-actual)} after the task"
    if verdict == PASS:
        return f"arrived {duration(actual)} before the task, within lookback_seconds {expected:g}"
    if not expected:
        return f"arrived {duration(actual)} before the task, which has no lookback_seconds"
    return f"arrived {duration(actual)} before the task, more than its lookback_seconds {expected:g}"


def _event_data(verdict, expected, actual, spec, event) -> str:
    if verdict == NOT_APPLICABLE:
        return "the task matches any data"
    if verdict == PASS:
        return f"the data has {_q(expected)}"
    wrong = [f"data.{k} is missing, the task wants {_q(v)}" if k not in actual
             else f"data.{k} was {_q(actual[k])}, the task wants {_q(v)}"
             for k, v in expected.items() if k not in actual or not same_json(actual[k], v)]
    return "; ".join(wrong)


_NOTES = {
    "message_type": _message_type,
    "shop": _equal("shop", "the message names no shop", "the task names no shop: any shop"),
    "customer_id": _equal("customer", "the message names no customer", "any customer"),
    "customer_name": _equal("name", "the message carries no name", "the task names no customer name"),
    "keyword": _keyword,
    "lookback": _lookback,
    "event_name": _equal("event", "this is not a custom event", "any event"),
    "event_data": _event_data,
}
