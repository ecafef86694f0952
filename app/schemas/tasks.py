"""The task intake's request schemas (CONTRACTS.md §1): receive (with its customer, trigger and action),
cancel, retry, and the list's query."""
from __future__ import annotations

import re

from marshmallow import INCLUDE, Schema, ValidationError, fields, pre_load, validate, validates_schema

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
)
from app.schemas.values import (
    FILE_NAME_CHARS,
    MESSAGE_CHARS,
    NAME_CHARS,
    NOTE_CHARS,
    TIME_CHARS,
    TITLE_CHARS,
    LooseNumber,
    LooseText,
    StrictFloat,
    loosen_task_body,
    not_blank,
    short_keyword,
    text_field,
    url_field,
)

TASK_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}\Z")  # \Z: "$" would let a trailing newline in
ACTION_TYPES = ("send_message", "send_file", "send_link", "transfer_to_designer")


class Lenient(Schema):
    class Meta:
        unknown = INCLUDE  # 天网 may add fields; they are kept with the task and otherwise ignored


class CustomerSchema(Lenient):
    id = LooseText()
    name = fields.String(allow_none=True, validate=validate.Length(max=128))


class TriggerSchema(Lenient):
    type = fields.String(required=True, validate=validate.OneOf(TRIGGER_TYPES))
    customer_id = LooseText(validate=[not_blank])
    customer_name = text_field(NAME_CHARS, allow_none=True)
    keyword = text_field(MAX_KEYWORD_CHARS, short_keyword)
    exact_match = fields.Boolean(load_default=False)
    keywords = fields.List(text_field(MAX_KEYWORD_CHARS, short_keyword), validate=validate.Length(min=1, max=50))
    time = text_field(TIME_CHARS, metadata={"description": "YYYY-MM-DD HH:MM:SS or ISO 8601"})
    event = text_field(NAME_CHARS, not_blank)
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
    message = text_field(MESSAGE_CHARS, allow_none=True)
    file_url = url_field()
    file_name = text_field(FILE_NAME_CHARS, allow_none=True)
    link_url = url_field()
    title = text_field(TITLE_CHARS, allow_none=True)
    desc = text_field(NOTE_CHARS, allow_none=True)
    reason = text_field(NOTE_CHARS, allow_none=True)
    image_url = url_field(allow_none=True)

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
    customer_id = text_field(NAME_CHARS)
    status = fields.String(validate=validate.OneOf(states.STATUSES))
    type = text_field(64)
    trigger_type = fields.String(validate=validate.OneOf(TRIGGER_TYPES))
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=1_000_000))
    page_size = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))
