"""What each endpoint answers (CONTRACTS.md §1): the envelope with the schema of its `data`.

These schemas describe the answers in the OpenAPI document and serialise them: a view returns the
envelope as a plain dict (`answer`), app.views turns rows into plain data, and flask-smorest dumps the
result with the endpoint's `<Data>Envelope` schema. Errors keep the plain envelope (app.api.errors).
"""
from __future__ import annotations

from marshmallow import INCLUDE, Schema, fields, post_dump

from app.domain import dispatch as flow
from app.domain import states
from app.domain.triggers import TRIGGER_TYPES
from app.schemas import EXPLAIN_KINDS, ActionSchema, CustomerSchema, EnvelopeSchema, TriggerSchema


def answer(code: int, message: str, data) -> dict:
    """The envelope of a successful (or 409) answer, for the endpoint's schema to dump."""
    return {"code": code, "message": message, "data": data}


def enveloped(data: type[Schema]) -> type[EnvelopeSchema]:
    """`Envelope<Data>`: the envelope whose `data` is a `data` (TaskSchema -> TaskEnvelope)."""
    name = data.__name__.removesuffix("Schema")
    return type(f"{name}EnvelopeSchema", (EnvelopeSchema,), {"data": fields.Nested(data, required=True)})


def _time(description: str | None = None, **kwargs) -> fields.String:
    """A stored time as the views write it: ISO 8601 with the offset of APP_TIMEZONE."""
    metadata = {"format": "date-time", **({"description": description} if description else {})}
    return fields.String(metadata=metadata, **kwargs)


def _one_of(values, **kwargs) -> fields.String:
    return fields.String(metadata={"enum": list(values)}, **kwargs)


def _counts(name: str, keys) -> type[Schema]:
    """An object with a count for each of `keys`."""
    return type(name, (Schema,), {key: fields.Integer(required=True) for key in keys})


class AsStored(fields.Nested):
    """Documented as its request schema, dumped as the value stored: the validated body as 天网 sent it,
    unknown fields included."""

    def _serialize(self, value, attr, obj, **kwargs):
        return value


class TaskRefSchema(Schema):
    """A task's id and status: the answer to receive and cancel (and their 409s)."""

    task_id = fields.String(required=True)
    status = _one_of(states.STATUSES, required=True)


class TaskSchema(Schema):
    """The whole task: the body as received (unknown fields included), then what became of it."""

    class Meta:
        unknown = INCLUDE  # documented as additionalProperties: the fields 天网 added are kept

    task_id = fields.String(required=True)
    type = fields.String(required=True)
    customer = AsStored(CustomerSchema, required=True, allow_none=True)
    customer_id = fields.String(required=True, allow_none=True,
                                metadata={"description": "customer.id, else trigger.customer_id"})
    acc_id = fields.String(required=True, allow_none=True)
    created_by = fields.String(required=True, allow_none=True)
    trigger = AsStored(TriggerSchema, required=True)
    action = AsStored(ActionSchema, required=True)
    priority = _one_of(("urgent", "high", "normal", "low"), required=True)
    timeout_hours = fields.Float(required=True)
    max_retry = fields.Integer(required=True)
    status = _one_of(states.STATUSES, required=True)
    retry_count = fields.Integer(required=True)
    created_at = _time(required=True)
    triggered_at = _time(required=True, allow_none=True)
    completed_at = _time(required=True, allow_none=True)
    expires_at = _time(required=True)
    due_at = _time("time_reach only", required=True, allow_none=True)
    updated_at = _time(required=True)
    error_message = fields.String(required=True, allow_none=True)
    result = fields.Dict(required=True, allow_none=True, metadata={"description": "what the action did"})
    triggered_by = fields.Dict(required=True, allow_none=True,
                               metadata={"description": "the message (msg_id, customer) or the time"})

    @post_dump(pass_original=True)
    def _keep_unknown_fields(self, data: dict, original: dict, **_) -> dict:
        for key, value in original.items():
            data.setdefault(key, value)
        return data


class TaskPageSchema(Schema):
    items = fields.List(fields.Nested(TaskSchema), required=True, metadata={"description": "newest first"})
    page = fields.Integer(required=True)
    page_size = fields.Integer(required=True)
    total = fields.Integer(required=True, metadata={"description": "tasks matching the filters"})


class TaskStatsSchema(Schema):
    total = fields.Integer(required=True)
    by_status = fields.Nested(_counts("StatusCountsSchema", states.STATUSES), required=True)
    by_trigger_type = fields.Nested(_counts("TriggerTypeCountsSchema", TRIGGER_TYPES), required=True)


class TaskEventSchema(Schema):
    at = _time(required=True)
    kind = fields.String(required=True, metadata={
        "description": "status (a move, with from_status and to_status), received, attempt_failed, "
                       "callback (a delivery attempt), redrive, dispatch ..."})
    from_status = _one_of(states.STATUSES, required=True, allow_none=True)
    to_status = _one_of(states.STATUSES, required=True, allow_none=True)
    detail = fields.Dict(required=True, allow_none=True)


class TaskHistorySchema(Schema):
    task_id = fields.String(required=True)
    events = fields.List(fields.Nested(TaskEventSchema), required=True, metadata={"description": "oldest first"})


class EventAcceptedSchema(Schema):
    event = fields.String(required=True)


class DispatchAcceptedSchema(Schema):
    dispatch_id = fields.String(required=True)
    status = _one_of(flow.STATUSES, required=True)


class DispatchStepSchema(Schema):
    step = _one_of(flow.STEPS, required=True)
    status = _one_of((flow.STEP_PENDING, flow.STEP_DONE, flow.STEP_FAILED), required=True)
    attempts = fields.Integer(required=True)
    last_error = fields.String(required=True, allow_none=True)
    result = fields.Dict(required=True, allow_none=True)
    updated_at = _time(required=True)


class DispatchSchema(Schema):
    dispatch_id = fields.String(required=True)
    task_id = fields.String(required=True, allow_none=True, metadata={"description": "null: from the API"})
    customer_id = fields.String(required=True)
    acc_id = fields.String(required=True, allow_none=True)
    acc_type = fields.String(required=True, allow_none=True)
    image_url = fields.String(required=True, allow_none=True)
    reason = fields.String(required=True, allow_none=True)
    designer = fields.String(required=True, allow_none=True)
    tuhui_task_id = fields.String(required=True, allow_none=True)
    status = _one_of(flow.STATUSES, required=True)
    error = fields.String(required=True, allow_none=True)
    notified_offline = fields.Boolean(required=True)
    created_at = _time(required=True)
    updated_at = _time(required=True)
    next_attempt_at = _time(required=True, allow_none=True)
    completed_at = _time(required=True, allow_none=True)
    steps = fields.List(fields.Nested(DispatchStepSchema), required=True)


class HealthSchema(Schema):
    service = fields.String(required=True)
    version = fields.String(required=True)
    time = _time(required=True)


class CheckSchema(Schema):
    ok = fields.Boolean(required=True)
    detail = fields.Dict(metadata={"description": "e.g. a heartbeat's age_seconds"})
    error = fields.String(metadata={"description": "why it failed"})


class ReadinessSchema(Schema):
    checks = fields.Dict(keys=fields.String(), values=fields.Nested(CheckSchema), required=True,
                         metadata={"description": "database, redis, broker, listener, beat"})


# -- GET/POST /api/task/{task_id}/explain ----------------------------------------------------------------

class ExplainConditionSchema(Schema):
    name = fields.String(required=True, metadata={"enum": [
        "status", "message_type", "shop", "customer_id", "customer_name", "keyword", "lookback",
        "event_name", "event_data", "deadline", "time"]})
    verdict = fields.String(required=True, metadata={"enum": ["pass", "fail", "not_applicable"]})
    expected = fields.Raw(required=True, allow_none=True, metadata={
        "description": "what the task wants (keywords normalised, with `match`: exact or contains; "
                       "lookback: lookback_seconds; times ISO 8601)"})
    actual = fields.Raw(required=True, allow_none=True, metadata={
        "description": "what the message has (text normalised; lookback: seconds it came before the task, "
                       "negative after)"})
    note = fields.String(required=True, metadata={"description": "the comparison in words"})


class ExplainMessageSchema(Schema):
    kind = fields.String(required=True, metadata={"enum": list(EXPLAIN_KINDS)})
    msg_id = fields.String(required=True, allow_none=True)
    acc_id = fields.String(required=True, allow_none=True)
    from_id = fields.String(required=True, allow_none=True)
    from_name = fields.String(required=True, allow_none=True)
    msg_type = fields.String(required=True, metadata={"description": "text, image, …; payment, order, custom"})
    text = fields.String(required=True, allow_none=True,
                         metadata={"description": "normalised (NFKC, trimmed, lower case)"})
    event = fields.String(required=True, allow_none=True)
    data = fields.Dict(required=True)
    received_at = fields.String(required=True, metadata={"description": "when it arrived (or: now, for a posted one)"})


class ExplainEvaluationSchema(Schema):
    message = fields.Nested(ExplainMessageSchema, required=True, allow_none=True,
                            metadata={"description": "null: the task alone, against the clock"})
    outcome = fields.String(required=True, metadata={"enum": ["fired", "would_fire", "would_not_fire", "waiting"]})
    conclusion = fields.String(required=True)
    conditions = fields.List(fields.Nested(ExplainConditionSchema), required=True)


class ExplanationSchema(Schema):
    task_id = fields.String(required=True)
    status = fields.String(required=True, metadata={"enum": list(states.STATUSES)})
    trigger_type = fields.String(required=True, metadata={"enum": list(TRIGGER_TYPES)})
    source = fields.String(required=True, metadata={
        "enum": ["recent", "msg_id", "body", "task"],
        "description": "what the task was explained against: recent messages, the msg_id named, the posted "
                       "message, or nothing but the clock (time_reach, custom_event)"})
    conclusion = fields.String(required=True, metadata={"description": "one sentence"})
    evaluations = fields.List(fields.Nested(ExplainEvaluationSchema), required=True)


TaskRefEnvelope = enveloped(TaskRefSchema)
TaskEnvelope = enveloped(TaskSchema)
TaskPageEnvelope = enveloped(TaskPageSchema)
TaskStatsEnvelope = enveloped(TaskStatsSchema)
TaskHistoryEnvelope = enveloped(TaskHistorySchema)
EventAcceptedEnvelope = enveloped(EventAcceptedSchema)
DispatchAcceptedEnvelope = enveloped(DispatchAcceptedSchema)
DispatchEnvelope = enveloped(DispatchSchema)
HealthEnvelope = enveloped(HealthSchema)
ReadinessEnvelope = enveloped(ReadinessSchema)
ExplanationEnvelope = enveloped(ExplanationSchema)
