"""The request schemas of the API (CONTRACTS.md §1) and the envelope of every answer; they also make the
OpenAPI document. What each answer's `data` holds: app.api.answers.

- `values`: the caps of every string, URLs, keywords, and what legacy callers send loosely;
- `tasks`: receive, cancel, retry, the list's query;
- `events`: a custom event, and what a task is explained against;
- `DispatchTransferSchema` (POST /api/dispatch/transfer) and `EnvelopeSchema`: here.
"""
from __future__ import annotations

from marshmallow import EXCLUDE, Schema, fields, validate

from app.schemas.events import (
    EXPLAIN_KINDS,
    CustomEventSchema,
    ExplainEventSchema,
    ExplainQuerySchema,
    explain_kind,
)
from app.schemas.tasks import (
    ActionSchema,
    CancelSchema,
    CustomerSchema,
    RetrySchema,
    TaskListQuerySchema,
    TaskReceiveSchema,
    TriggerSchema,
)
from app.schemas.values import LooseNumber, LooseText, loosen_task_body, not_blank, url_field

__all__ = [
    "EXPLAIN_KINDS", "ActionSchema", "CancelSchema", "CustomEventSchema", "CustomerSchema", "DispatchTransferSchema",
    "EnvelopeSchema", "ExplainEventSchema", "ExplainQuerySchema", "LooseNumber", "LooseText", "RetrySchema",
    "TaskListQuerySchema", "TaskReceiveSchema", "TriggerSchema", "explain_kind", "loosen_task_body",
]


class EnvelopeSchema(Schema):
    code = fields.Integer()
    message = fields.String()
    data = fields.Raw(allow_none=True)
    errors = fields.Dict()


class DispatchTransferSchema(Schema):
    """POST /api/dispatch/transfer (CONTRACTS.md §1, §3)."""

    class Meta:
        unknown = EXCLUDE  # 天网 may add fields; they are ignored

    customer_id = fields.String(required=True, validate=[validate.Length(min=1, max=128), not_blank])
    acc_id = fields.String(allow_none=True, validate=validate.Length(max=128),
                           metadata={"description": "shop account; default QINGJIAN_DEFAULT_ACC_ID"})
    acc_type = fields.String(allow_none=True, validate=validate.Length(max=64))
    image_url = url_field(allow_none=True)
    reason = fields.String(allow_none=True, validate=validate.Length(max=1000))
