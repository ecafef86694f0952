"""Request schemas of the intake API (CONTRACTS.md §1), and the envelope of every answer; they also make the
OpenAPI document. What each answer's `data` holds: app.api.answers."""
from __future__ import annotations

import re

from marshmallow import EXCLUDE, INCLUDE, Schema, ValidationError, fields, pre_load, validate, validates_schema

from app.domain import states
from app.domain.probes import MAX_KEYWORD_CHARS
from app.domain.times import parse_wire_time
from app.domain.triggers import (
    CUSTOM_EVENT,
    CUSTOMER_KEYWORD,
    CUSTOMER_REPLY,
    MESSAGE_TRIGGERS,
    PRIORITY_RANK,
    SPECIFIED_CUSTOMER_REPLY,
    TIME_REACH,
    TRIGGER_TYPES,
    normalize,
)

TASK_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}\Z")  # \Z: "$" would let a trailing newline in
ACTION_TYPES = ("send_message", "send_file", "send_link", "transfer_to_designer")

# Every string field has a cap (422 past it, `maxLength` in the OpenAPI document): a column's VARCHAR(n)
# where one stores it, else room for any real value. Keywords: app.domain.probes.MAX_KEYWORD_CHARS.
NAME_CHARS = 128  # ids, names, accounts, creators, event names: VARCHAR(128) columns
URL_CHARS = 2048
MESSAGE_CHARS = 4096  # a text sent to a customer
NOTE_CHARS = 1000  # reasons, link descriptions
TITLE_CHARS = 256
FILE_NAME_CHARS = 255
TIME_CHARS = 64


def _not_blank(value: str) -> None:
    if not value.strip():
        raise ValidationError("must not be empty or whitespace")


def _http_url(value: str) -> None:
    if not re.fullmatch(r"https?://[^\s/$.?#][^\s]*", value, re.IGNORECASE):
        raise ValidationError("must be an http or https URL")


def _keyword(value: str) -> None:
    """Not blank, and short enough once normalised (NFKC can lengthen a character: ﷺ is 18)."""
    _not_blank(value)
    if len(value) <= MAX_KEYWORD_CHARS < len(normalize(value)):  # longer as given: Length says so
        raise ValidationError(f"longer than {MAX_KEYWORD_CHARS} characters once normalised")


def _text(limit: int, *more, **kwargs) -> fields.String:
    """A string field of at most `limit` characters."""
    return fields.String(validate=[validate.Length(max=limit), *more], **kwargs)


def _url(**kwargs) -> fields.String:
    return _text(URL_CHARS, _http_url, **kwargs)


# -- values a legacy caller sends loosely ------------------------------------------------------------
# Read where the meaning is unambiguous, before validation, and stored in the form the contract gives:
# the stored body is what matching reads, and two spellings of one task hash as one body.
DECIMAL = "[+-]?([0-9]+([.][0-9]*)?|[.][0-9]+)"  # "24", "1.5": no exponent, no inf/nan, ASCII digits
LOOSE_TEXT = "text; a whole number is taken as its decimal text (123 -> \"123\")"
LOOSE_NUMBER = "a number; a decimal numeric string is taken as its number (\"24\" -> 24)"


def _as_text(value):
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _as_number(value):
    if isinstance(value, str) and re.fullmatch(DECIMAL, value):
        number = float(value)
        return int(number) if number.is_integer() else number
    return value


def _as_boolean(value):
    """What marshmallow's Boolean reads ("true", "False", "1", 0 ...) stored as the boolean it means."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return value
    if value in fields.Boolean.truthy:
        return True
    if value in fields.Boolean.falsy:
        return False
    return value


# (object or None for the top level, field, how it is read)
LOOSE_TASK_FIELDS = (
    (None, "timeout_hours", _as_number),
    ("customer", "id", _as_text),
    ("trigger", "customer_id", _as_text),
    ("trigger", "exact_match", _as_boolean),
)


def loosen_task_body(body):
    """The task body with its loosely typed values in the contract's types (a copy, if any changed).

    Without this a stored `"exact_match": "false"` would read as true, and a customer id sent as a
    number would never equal the text id a message carries.
    """
    if not isinstance(body, dict):
        return body
    changes = []
    for section, name, read in LOOSE_TASK_FIELDS:
        holder = body if section is None else body.get(section)
        if isinstance(holder, dict) and name in holder and read(holder[name]) is not holder[name]:
            changes.append((section, name, read(holder[name])))
    if not changes:
        return body
    loosened = dict(body)
    for section, name, value in changes:
        if section is None:
            loosened[name] = value
        else:
            loosened[section] = {**loosened[section], name: value}
    return loosened


class StrictFloat(fields.Float):
    """A JSON number only: true is rejected, and so is "24" (for timeout_hours `loosen_task_body` has
    read it as 24 already), unlike marshmallow's Float."""

    def _validated(self, value):
        if isinstance(value, (str, bool)):
            raise self.make_error("invalid")
        return super()._validated(value)


class LooseText(fields.String):
    """A text field a legacy caller may send as a whole number (read before validation). The OpenAPI
    document gives both forms: app.extensions registers this class without a type of its own."""

    def __init__(self, max_length: int = 128, **kwargs):
        alternatives = [{"type": "string", "maxLength": max_length}, {"type": "integer"}]
        super().__init__(validate=[validate.Length(max=max_length), *kwargs.pop("validate", [])],
                         metadata={"anyOf": alternatives, "description": LOOSE_TEXT}, **kwargs)


class LooseNumber(StrictFloat):
    """A number a legacy caller may send as a numeric string (read before validation); documented as
    either, like LooseText."""

    def __init__(self, minimum: float, maximum: float, **kwargs):
        alternatives = [{"type": "number", "minimum": minimum, "exclusiveMinimum": True, "maximum": maximum},
                        {"type": "string", "pattern": f"^{DECIMAL}$"}]
        super().__init__(validate=validate.Range(min=minimum, max=maximum, min_inclusive=False),
                         metadata={"anyOf": alternatives, "description": LOOSE_NUMBER}, **kwargs)


class Lenient(Schema):
    class Meta:
        unknown = INCLUDE  # 天网 may add fields; they are kept with the task and otherwise ignored


class CustomerSchema(Lenient):
    id = LooseText()
    name = fields.String(allow_none=True, validate=validate.Length(max=128))


class TriggerSchema(Lenient):
    type = fields.String(required=True, validate=validate.OneOf(TRIGGER_TYPES))
    customer_id = LooseText(validate=[_not_blank])
    customer_name = _text(NAME_CHARS, allow_none=True)
    keyword = _text(MAX_KEYWORD_CHARS, _keyword)
    exact_match = fields.Boolean(load_default=False)
    keywords = fields.List(_text(MAX_KEYWORD_CHARS, _keyword), validate=validate.Length(min=1, max=50))
    time = _text(TIME_CHARS, metadata={"description": "YYYY-MM-DD HH:MM:SS or ISO 8601"})
    event = _text(NAME_CHARS, _not_blank)
    match = fields.Dict()
    lookback_seconds = StrictFloat(validate=validate.Range(min=0, max=3600))

    @validates_schema
    def _fields_for_type(self, data, **_):
        kind = data.get("type")
        errors: dict[str, list[str]] = {}

        def need(name):
            if data.get(name) in (None, "", []):
                errors.setdefault(name, []).append(f"required for {kind}")

        if kind == SPECIFIED_CUSTOMER_REPLY:
            need("customer_id")
            need("keyword")
        elif kind == CUSTOMER_REPLY:
            need("keyword")
        elif kind == CUSTOMER_KEYWORD:
            need("keywords")
        elif kind == TIME_REACH:
            need("time")
            if data.get("time"):
                try:
                    parse_wire_time(data["time"])
                except ValueError:
                    errors.setdefault("time", []).append("not a time: use YYYY-MM-DD HH:MM:SS or ISO 8601")
        elif kind == CUSTOM_EVENT:
            need("event")
        if "lookback_seconds" in data and kind not in MESSAGE_TRIGGERS:
            errors.setdefault("lookback_seconds", []).append(f"not allowed for {kind}")
        if errors:
            raise ValidationError(errors)


class ActionSchema(Lenient):
    type = fields.String(required=True, validate=validate.OneOf(ACTION_TYPES))
    message = _text(MESSAGE_CHARS, allow_none=True)
    file_url = _url()
    file_name = _text(FILE_NAME_CHARS, allow_none=True)
    link_url = _url()
    title = _text(TITLE_CHARS, allow_none=True)
    desc = _text(NOTE_CHARS, allow_none=True)
    reason = _text(NOTE_CHARS, allow_none=True)
    image_url = _url(allow_none=True)

    @validates_schema
    def _fields_for_type(self, data, **_):
        kind = data.get("type")
        required = {"send_message": "message", "send_file": "file_url", "send_link": "link_url"}.get(kind)
        value = data.get(required) if required else None
        if required and (not isinstance(value, str) or not value.strip()):
            raise ValidationError({required: [f"required for {kind}"]})


class TaskReceiveSchema(Lenient):
    task_id = fields.String(required=True, validate=validate.Regexp(
        TASK_ID, error="1-128 characters of A-Z a-z 0-9 _ . : -"), metadata={"maxLength": 128})
    type = fields.String(required=True, validate=validate.Length(min=1, max=64))
    customer = fields.Nested(CustomerSchema)
    acc_id = fields.String(allow_none=True, validate=validate.Length(max=128))
    trigger = fields.Nested(TriggerSchema, required=True)
    action = fields.Nested(ActionSchema, required=True)
    priority = fields.String(load_default="normal", validate=validate.OneOf(tuple(PRIORITY_RANK)))
    timeout_hours = LooseNumber(0, 720, load_default=24.0)
    max_retry = fields.Integer(strict=True, load_default=3, validate=validate.Range(min=0, max=10))
    created_by = fields.String(allow_none=True, validate=validate.Length(max=128))

    @pre_load
    def _loosen(self, data, **_):
        return loosen_task_body(data)

    @validates_schema
    def _customer_consistency(self, data, **_):
        trigger = data.get("trigger") or {}
        customer_id = (data.get("customer") or {}).get("id")
        if trigger.get("type") == SPECIFIED_CUSTOMER_REPLY and customer_id and trigger.get(
                "customer_id") and customer_id != trigger["customer_id"]:
            raise ValidationError({"customer": {"id": ["differs from trigger.customer_id"]}})
        if trigger.get("type") == TIME_REACH and not customer_id:
            raise ValidationError({"customer": {"id": ["required for time_reach"]}})


class CancelSchema(Schema):
    task_id = fields.String(required=True, validate=validate.Length(min=1, max=128))
    reason = fields.String(allow_none=True, validate=validate.Length(max=1000))


class RetrySchema(CancelSchema):
    """POST /api/task/retry: the same two fields as a cancel."""


class TaskListQuerySchema(Schema):
    customer_id = _text(NAME_CHARS)
    status = fields.String(validate=validate.OneOf(states.STATUSES))
    type = _text(64)
    trigger_type = fields.String(validate=validate.OneOf(TRIGGER_TYPES))
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=1_000_000))
    page_size = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))


class CustomEventSchema(Lenient):
    event = fields.String(required=True, validate=[validate.Length(min=1, max=128), _not_blank])
    customer_id = LooseText(allow_none=True)
    acc_id = fields.String(allow_none=True, validate=validate.Length(max=128))
    data = fields.Dict(load_default=dict)

    @pre_load
    def _loosen(self, data, **_):
        if isinstance(data, dict) and _as_text(data.get("customer_id")) is not data.get("customer_id"):
            return {**data, "customer_id": _as_text(data["customer_id"])}
        return data


class EnvelopeSchema(Schema):
    code = fields.Integer()
    message = fields.String()
    data = fields.Raw(allow_none=True)
    errors = fields.Dict()


class DispatchTransferSchema(Schema):
    """POST /api/dispatch/transfer (CONTRACTS.md §1, §3)."""

    class Meta:
        unknown = EXCLUDE  # 天网 may add fields; they are ignored

    customer_id = fields.String(required=True, validate=[validate.Length(min=1, max=128), _not_blank])
    acc_id = fields.String(allow_none=True, validate=validate.Length(max=128),
                           metadata={"description": "shop account; default QINGJIAN_DEFAULT_ACC_ID"})
    acc_type = fields.String(allow_none=True, validate=validate.Length(max=64))
    image_url = _url(allow_none=True)
    reason = fields.String(allow_none=True, validate=validate.Length(max=1000))


# -- /api/task/{task_id}/explain (issue 11) -----------------------------------------------------------

EXPLAIN_KINDS = ("message", "payment", "order", "custom")


def explain_kind(body: dict) -> str:
    """A posted message's kind: as given, else custom when it names an `event`, else a 轻简 message."""
    return body.get("kind") or ("custom" if "event" in body else "message")


class ExplainQuerySchema(Schema):
    msg_id = fields.String(validate=validate.Length(min=1, max=128),
                           metadata={"description": "explain against this recent message only"})
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100),
                           metadata={"description": "how many recent messages, newest first"})


class ExplainEventSchema(Schema):
    """A message to explain the task against, as if it arrived now: a 轻简 message (`kind` message, the
    default), a payment or order event, or a custom event as POST /api/event takes it (`kind` custom,
    the default when `event` is given)."""

    class Meta:
        unknown = EXCLUDE

    kind = fields.String(validate=validate.OneOf(EXPLAIN_KINDS))
    msg_id = fields.String(allow_none=True, validate=validate.Length(max=128))
    from_id = fields.String(validate=[validate.Length(min=1, max=128), _not_blank])
    from_name = fields.String(allow_none=True, validate=validate.Length(max=128))
    acc_id = fields.String(allow_none=True, validate=validate.Length(max=128))
    msg_type = fields.String(load_default="text", validate=validate.Length(min=1, max=32))
    content = fields.String(allow_none=True, validate=validate.Length(max=4096))
    event = fields.String(validate=[validate.Length(min=1, max=128), _not_blank],
                          metadata={"description": "custom event name"})
    customer_id = fields.String(allow_none=True, validate=validate.Length(max=128),
                                metadata={"description": "custom event's customer"})
    data = fields.Dict(load_default=dict, metadata={"description": "custom event's data"})

    @validates_schema
    def _fields_for_kind(self, data, **_):
        kind = explain_kind(data)
        need = ("event",) if kind == "custom" else ("from_id",)
        if kind == "message" and data.get("msg_type", "text") == "text":
            need += ("content",)
        missing = {name: [f"required for {kind}"] for name in need if data.get(name) is None}
        if missing:
            raise ValidationError(missing)
