"""One row of the legacy bridge's SQLite `tasks` table as a task of this service. Pure.

The legacy table (seed 000/001, 数据库表结构) holds the columns our `tasks` table was modelled on; a row
becomes the body 天网 would have posted (so a row still waiting is validated by the intake schema and
fires like any task) plus the columns only the legacy bridge knew (its times, retry count, error and
result). A "live" row is one still pending or waiting there.

| legacy column | here |
|---|---|
| task_id, type, created_by, priority | the same fields (priority defaults to normal) |
| customer_id, customer_name | `customer.id`, `customer.name` |
| specified_customer_id, specified_customer_name (seed 000's table only) | `trigger.customer_id`, `trigger.customer_name` of a specified_customer_reply; without them `customer_id` binds it |
| trigger_type | `trigger.type` |
| trigger_keyword | `trigger.keyword` of the reply types; for keyword/payment/order a one-word list when trigger_keywords is empty |
| trigger_keywords (a JSON array) | `trigger.keywords` |
| action_type, action_file_url, action_message | `action.type`, `.file_url`, `.message`; a live send_link becomes send_message of its message (the legacy bridge sent links as plain text) |
| timeout_hours | `timeout_hours` (default 24); the deadline is created_at + timeout_hours |
| max_retry, retry_count | kept (a live row starts with retry_count 0: nothing was tried here yet) |
| status | pending/waiting: a waiting task (`timeout` if its deadline has passed); completed/failed/cancelled/timeout: history; anything else is refused |
| created_at, triggered_at, completed_at | the same times; one without an offset is read in the given zone |
| error_message | error_message |
| result (JSON) | a JSON object as it is, other JSON as `{"value": ...}`, text that is not JSON as `{"text": ...}` |

The legacy table has no column for `exact_match` (imported as false, its default), for a time_reach
task's time or a custom_event's name (refused while they would still wait: nothing says when or on
what they fire; kept as history once finished or past their deadline), or for a shop (`acc_id`: none,
any shop, as in the legacy bridge). Whatever else cannot be mapped unambiguously is refused with the
column and the reason, never guessed.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from app.domain import states
from app.domain.actions import SEND_ACTIONS
from app.domain.times import parse_wire_time, to_utc_naive
from app.domain.triggers import (
    CUSTOM_EVENT,
    CUSTOMER_KEYWORD,
    CUSTOMER_ORDER,
    CUSTOMER_PAYMENT,
    CUSTOMER_REPLY,
    PRIORITY_RANK,
    SPECIFIED_CUSTOMER_REPLY,
    TIME_REACH,
    TRIGGER_TYPES,
)

REQUIRED_COLUMNS = ("task_id", "type", "status", "trigger_type", "action_type", "created_at")
LIVE = frozenset({"pending", "waiting"})  # still waiting for their trigger in the legacy bridge
HISTORY = frozenset({states.COMPLETED, states.FAILED, states.CANCELLED, states.TIMEOUT})
ACTION_TYPES = (*SEND_ACTIONS, "transfer_to_designer")
TASK_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}\Z")  # app.schemas.TASK_ID: the task must be reachable by URL
MAX_TIMEOUT_HOURS = 720
CLOCK_TOLERANCE = timedelta(minutes=5)  # the two machines' clocks may differ a little
OVERDUE_ERROR = "deadline passed before the trigger fired (legacy created_at + timeout_hours)"
# What an import assumed for a row, by code: the report counts them.
NOTES = {
    "exact_match": "reply triggers imported with exact_match false (the legacy table does not record it)",
    "send_link": "live send_link rows imported as send_message of their message (the legacy bridge sent "
                 "links as plain text)",
}


class Refused(ValueError):
    """A row that cannot be imported as it is; the message says what could not be mapped."""


@dataclass(frozen=True)
class Mapped:
    task_id: str
    status: str  # here: waiting, or timeout (a live row past its deadline), or the history status
    body: dict  # the intake body: what 天网 would have posted
    created_at: datetime  # naive UTC, like every stored time
    expires_at: datetime
    legacy_status: str
    triggered_at: datetime | None = None
    completed_at: datetime | None = None
    error_message: str | None = None
    result: dict | None = None
    retry_count: int = 0
    notes: tuple[str, ...] = field(default=())  # keys of NOTES

    @property
    def waits(self) -> bool:
        """Fires here (registered in the index) rather than being kept as history."""
        return self.status == states.WAITING

    @property
    def overdue(self) -> bool:
        return self.legacy_status in LIVE and self.status == states.TIMEOUT


def map_row(row: dict, *, zone: str, now: datetime) -> Mapped:
    """The task a legacy row becomes; raises Refused. `now` is naive UTC (deadlines are judged at it)."""
    task_id = _text(row.get("task_id"))
    if task_id is None:
        raise Refused("no task_id")
    if not TASK_ID.match(task_id):
        raise Refused(f"task_id {task_id!r} is not 1-128 characters of A-Z a-z 0-9 _ . : -")
    legacy_status = _text(row.get("status")) or "pending"  # the legacy column's default
    if legacy_status == states.RUNNING:
        raise Refused("running in the legacy bridge: its action may have been sent or not; let it finish "
                      "there (or set its status there) and import again")
    if legacy_status not in LIVE | HISTORY:
        raise Refused(f"status {legacy_status!r} is not a legacy status (pending, waiting, completed, failed, "
                      f"cancelled, timeout)")
    created_at = _time(row, "created_at", zone, required=True)
    if created_at > now + CLOCK_TOLERANCE:
        # Read in the wrong zone, a task would not fire on messages until its creation time came.
        raise Refused(f"created_at {row['created_at']!r} is later than now in {zone}: are the legacy times "
                      f"in another zone (--timezone)?")
    timeout_hours = _number(row, "timeout_hours", 24)
    if not 0 < timeout_hours <= MAX_TIMEOUT_HOURS:
        raise Refused(f"timeout_hours {row.get('timeout_hours')!r} is not more than 0 and at most 720")
    expires_at = created_at + timedelta(hours=timeout_hours)
    if expires_at <= created_at:  # a positive timeout under a microsecond: no deadline after creation
        raise Refused(f"timeout_hours {row.get('timeout_hours')!r} is shorter than a microsecond")
    times = {name: _time(row, name, zone) for name in ("triggered_at", "completed_at")}
    live = legacy_status in LIVE
    if live and any(times.values()):
        # A waiting row that says it fired: the legacy bridge may have sent its action already.
        raise Refused(f"status {legacy_status} but {' and '.join(k for k, v in times.items() if v)} set: "
                      "it may have fired in the legacy bridge")
    status = legacy_status
    if live:  # past its deadline it is history too: a timeout
        status = states.WAITING if expires_at > now else states.TIMEOUT
    body, notes = _body(row, status == states.WAITING, timeout_hours)
    return Mapped(
        task_id=task_id, status=status, body=body, created_at=created_at, expires_at=expires_at,
        legacy_status=legacy_status, triggered_at=times["triggered_at"], completed_at=times["completed_at"],
        error_message=_text(row.get("error_message"), strip=False),
        result=_result(row.get("result")),
        retry_count=0 if live else int(_number(row, "retry_count", 0, whole=True)),
        notes=notes,
    )


def _body(row: dict, waits: bool, timeout_hours: float) -> tuple[dict, tuple[str, ...]]:
    kind = _short(row, "type", 64)
    if kind is None:
        raise Refused("no type")
    trigger, notes = _trigger(row, waits)
    action, action_notes = _action(row, waits)
    body = {"task_id": _text(row["task_id"]), "type": kind}
    customer = {k: v for k, v in (("id", _short(row, "customer_id", 128)),
                                  ("name", _short(row, "customer_name", 128))) if v is not None}
    if customer:
        body["customer"] = customer
    body.update(trigger=trigger, action=action, priority=_one_of(row, "priority", PRIORITY_RANK, "normal"),
                timeout_hours=int(timeout_hours) if timeout_hours.is_integer() else timeout_hours,
                max_retry=int(_number(row, "max_retry", 3, whole=True)))
    created_by = _short(row, "created_by", 128)
    if created_by is not None:
        body["created_by"] = created_by
    return body, notes + action_notes


def _trigger(row: dict, waits: bool) -> tuple[dict, tuple[str, ...]]:
    kind = _one_of(row, "trigger_type", TRIGGER_TYPES)
    keyword = _text(row.get("trigger_keyword"), strip=False)
    keywords = _keywords(row.get("trigger_keywords"))
    trigger: dict = {"type": kind}
    notes: tuple[str, ...] = ()
    if kind in (SPECIFIED_CUSTOMER_REPLY, CUSTOMER_REPLY):
        if kind == SPECIFIED_CUSTOMER_REPLY:
            bound = _text(row.get("specified_customer_id")) or _text(row.get("customer_id"))
            name = _text(row.get("specified_customer_name"))
            trigger.update({k: v for k, v in (("customer_id", bound), ("customer_name", name)) if v is not None})
        if keyword is not None:
            trigger["keyword"] = keyword
        trigger["exact_match"] = False
        notes = ("exact_match",) if waits else ()
    elif kind in (CUSTOMER_KEYWORD, CUSTOMER_PAYMENT, CUSTOMER_ORDER):
        words = keywords or ([keyword] if keyword is not None else None)
        if words:
            trigger["keywords"] = words
    elif waits and kind == TIME_REACH:
        raise Refused("time_reach: the legacy table has no column for its time; re-send it through the API")
    elif waits and kind == CUSTOM_EVENT:
        raise Refused("custom_event: the legacy table has no column for its event name; "
                      "re-send it through the API")
    return trigger, notes


def _action(row: dict, waits: bool) -> tuple[dict, tuple[str, ...]]:
    kind = _one_of(row, "action_type", ACTION_TYPES)
    message = _text(row.get("action_message"), strip=False)
    file_url = _text(row.get("action_file_url"))
    notes: tuple[str, ...] = ()
    if waits and kind == "send_link":
        # No column holds a link's URL: the legacy bridge sent the message as plain text (seed 001).
        if file_url is not None:
            raise Refused("send_link with action_file_url set: the link may be in either column")
        if message is None:
            raise Refused("send_link without action_message: the legacy table holds no link to send")
        kind, notes = "send_message", ("send_link",)
    action: dict = {"type": kind}
    if file_url is not None:
        action["file_url"] = file_url
    if message is not None:
        action["reason" if kind == "transfer_to_designer" else "message"] = message
    return action, notes


def _one_of(row: dict, column: str, allowed, default: str | None = None) -> str:
    value = _text(row.get(column)) or default
    if value not in allowed:
        raise Refused(f"{column} {row.get(column)!r} is not one of {', '.join(allowed)}")
    return value


def _short(row: dict, column: str, limit: int) -> str | None:
    value = _text(row.get(column))
    if value is not None and len(value) > limit:
        raise Refused(f"{column} is longer than {limit} characters")
    return value


def _keywords(raw) -> list[str] | None:
    text = _text(raw)
    if text is None:
        return None
    try:
        words = json.loads(text)
    except ValueError:
        raise Refused(f"trigger_keywords {text[:60]!r} is not a JSON array") from None
    if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
        raise Refused(f"trigger_keywords {text[:60]!r} is not a JSON array of strings")
    return words or None


def _result(raw) -> dict | None:
    text = _text(raw, strip=False)
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return {"text": text}
    return value if isinstance(value, dict) else {"value": value}


def _time(row: dict, name: str, zone: str, required: bool = False) -> datetime | None:
    text = _text(row.get(name))
    if text is None:
        if required:
            raise Refused(f"no {name}")
        return None
    try:
        return to_utc_naive(parse_wire_time(text), zone)
    except ValueError:
        raise Refused(f"{name} {text!r} is not a time (YYYY-MM-DD HH:MM:SS or ISO 8601)") from None


def _number(row: dict, name: str, default: float, whole: bool = False) -> float:
    """A numeric column (NULL: its legacy default); `whole` ones are counts, so not negative either."""
    raw = row.get(name)
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return float(default)
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value) or (whole and not (value.is_integer() and value >= 0)):
        raise Refused(f"{name} {raw!r} is not a {'count' if whole else 'number'}")
    return value


def _text(value, strip: bool = True) -> str | None:
    """A column as text: None for NULL and blank; numbers (SQLite's affinity may give them) as text."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value)
    if not text.strip():
        return None
    return text.strip() if strip else text
