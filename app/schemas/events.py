"""What may be posted as an event: a custom event (POST /api/event), and a message or event to explain a
task against (POST /api/task/{task_id}/explain), with the explain query."""
from __future__ import annotations

from marshmallow import EXCLUDE, Schema, ValidationError, fields, pre_load, validate, validates_schema

from app.schemas.tasks import Lenient
from app.schemas.values import LooseText, as_text, not_blank


class CustomEventSchema(Lenient):
    event = fields.String(required=True, validate=[validate.Length(min=1, max=128), not_blank])
    customer_id = LooseText(allow_none=True)
    acc_id = fields.String(allow_none=True, validate=validate.Length(max=128))
    data = fields.Dict(load_default=dict)

    @pre_load
    def _loosen(self, data, **_):
        if isinstance(data, dict) and as_text(data.get("customer_id")) is not data.get("customer_id"):
            return {**data, "customer_id": as_text(data["customer_id"])}
        return data


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
    from_id = fields.String(validate=[validate.Length(min=1, max=128), not_blank])
    from_name = fields.String(allow_none=True, validate=validate.Length(max=128))
    acc_id = fields.String(allow_none=True, validate=validate.Length(max=128))
    msg_type = fields.String(load_default="text", validate=validate.Length(min=1, max=32))
    content = fields.String(allow_none=True, validate=validate.Length(max=4096))
    event = fields.String(validate=[validate.Length(min=1, max=128), not_blank],
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
