"""/api/task/*: receive, status, cancel, list, stats, events, explain (CONTRACTS.md §1)."""
from __future__ import annotations

import time

from flask import request
from flask.views import MethodView
from flask_smorest import Blueprint, abort
from marshmallow import ValidationError
from sqlalchemy import func, select

from app import runtime
from app.api.answers import (
    ExplanationEnvelope,
    TaskEnvelope,
    TaskHistoryEnvelope,
    TaskPageEnvelope,
    TaskRefEnvelope,
    TaskStatsEnvelope,
    answer,
)
from app.api.errors import envelope, flatten
from app.infra.db import session_scope
from app.models import Task, TaskEvent
from app.schemas import (
    CancelSchema,
    EnvelopeSchema,
    ExplainEventSchema,
    ExplainQuerySchema,
    RetrySchema,
    TaskListQuerySchema,
    TaskReceiveSchema,
    loosen_task_body,
)
from app.services import explain, intake, operator
from app.state import counts as task_counts
from app.state.tasks import TaskNotFound
from app.views import event_view, task_view

RECEIVE_SCHEMA = TaskReceiveSchema()  # schemas are stateless; building one per request cost 0.6 ms
blp = Blueprint("tasks", __name__, url_prefix="/api/task", description="Tasks from 天网")


@blp.route("/receive")
class TaskReceive(MethodView):
    @blp.doc(requestBody={"required": True, "content": {"application/json": {"schema": TaskReceiveSchema}}})
    @blp.response(200, TaskRefEnvelope)
    @blp.alt_response(409, schema=TaskRefEnvelope, description="task_id used with another body")
    @blp.alt_response(422, schema=EnvelopeSchema, description="validation failed")
    def post(self):
        """Receive a task from 天网 (idempotent by task_id)."""
        body = loosen_task_body(request.get_json())  # stored, hashed and matched in the contract's types
        try:
            data = RECEIVE_SCHEMA.load(body)
        except ValidationError as exc:
            existing = intake.repeat_of(body)
            if existing is None:
                return envelope(422, "validation failed", None, flatten(exc.messages))
            data = None
        try:
            received = intake.receive(body, data) if data is not None else existing
        except intake.FieldErrors as exc:
            return envelope(422, "validation failed", None, exc.errors)
        except intake.Conflict as exc:
            return answer(409, str(exc), {"task_id": body.get("task_id"), "status": exc.status}), 409
        message = "任务已重新下发：取消后再次接收，重新开始监听" if received.rearmed else "任务接收成功"
        return answer(200, message, {"task_id": received.task_id, "status": received.status})


@blp.route("/status/<string(maxlength=128):task_id>")
class TaskStatus(MethodView):
    @blp.response(200, TaskEnvelope)
    def get(self, task_id):
        """The whole task: its fields, status and history markers."""
        with session_scope() as session:
            task = session.get(Task, task_id)
            if task is None:
                abort(404, message=f"task {task_id} not found")
            return answer(200, "OK", task_view(task, runtime.current().settings.app_timezone))


@blp.route("/cancel")
class TaskCancel(MethodView):
    @blp.arguments(CancelSchema)
    @blp.response(200, TaskRefEnvelope)
    @blp.alt_response(409, schema=TaskRefEnvelope, description="already running or finished")
    def post(self, args):
        """Cancel a pending or waiting task."""
        return _move(args, lambda: intake.cancel(args["task_id"], args.get("reason")), intake.Conflict, "任务已取消")


@blp.route("/retry")
class TaskRetry(MethodView):
    @blp.arguments(RetrySchema)
    @blp.response(200, TaskRefEnvelope)
    @blp.alt_response(409, schema=TaskRefEnvelope, description="the task is neither failed nor timed out")
    def post(self, args):
        """Retry a failed task (its action runs again) or a timed-out one (it waits again)."""
        return _move(args, lambda: operator.retry(args["task_id"], args.get("reason"), actor="api"),
                     operator.NotRetryable, "任务已重试")


def _move(args: dict, act, refused: type[Exception], done: str):
    """A cancel or a retry: 200 with the new status, 404 for an unknown task, 409 (with the status it is in)
    when the move does not apply."""
    try:
        status = act()
    except TaskNotFound:
        abort(404, message=f"task {args['task_id']} not found")
    except refused as exc:
        return answer(409, str(exc), {"task_id": args["task_id"], "status": exc.status}), 409
    return answer(200, done, {"task_id": args["task_id"], "status": status})


@blp.route("/list")
class TaskList(MethodView):
    @blp.arguments(TaskListQuerySchema, location="query")
    @blp.response(200, TaskPageEnvelope)
    def get(self, args):
        """Tasks, newest first, filtered by customer, status, type and trigger type."""
        filters = []
        for name, column in (("customer_id", Task.customer_id), ("status", Task.status),
                             ("type", Task.type), ("trigger_type", Task.trigger_type)):
            if args.get(name):
                filters.append(column == args[name])
        page, size = args["page"], args["page_size"]
        zone = runtime.current().settings.app_timezone
        with session_scope() as session:
            total = session.scalar(select(func.count()).select_from(Task).where(*filters))
            rows = session.scalars(select(Task).where(*filters).order_by(Task.created_at.desc(), Task.task_id)
                                   .offset((page - 1) * size).limit(size)).all()
            items = [task_view(t, zone) for t in rows]
        return answer(200, "OK", {"items": items, "page": page, "page_size": size, "total": total})


@blp.route("/stats")
class TaskStats(MethodView):
    @blp.response(200, TaskStatsEnvelope)
    def get(self):
        """Counts by status and by trigger type (kept beside the tasks: no table scan)."""
        with session_scope() as session:
            counts = task_counts.read(session)
        return answer(200, "OK", {
            "total": counts.total, "by_status": counts.by_status, "by_trigger_type": counts.by_trigger_type})


@blp.route("/<string(maxlength=128):task_id>/events")
class TaskEvents(MethodView):
    @blp.response(200, TaskHistoryEnvelope)
    def get(self, task_id):
        """The task's history: state changes, attempts, sends and callbacks."""
        zone = runtime.current().settings.app_timezone
        with session_scope() as session:
            if session.get(Task, task_id) is None:
                abort(404, message=f"task {task_id} not found")
            rows = session.scalars(select(TaskEvent).where(TaskEvent.task_id == task_id)
                                   .order_by(TaskEvent.id)).all()
            return answer(200, "OK", {"task_id": task_id, "events": [event_view(e, zone) for e in rows]})


@blp.route("/<string(maxlength=128):task_id>/explain")
class TaskExplain(MethodView):
    @blp.arguments(ExplainQuerySchema, location="query")
    @blp.response(200, ExplanationEnvelope)
    @blp.alt_response(404, schema=EnvelopeSchema, description="unknown task, or no recent message has that msg_id")
    def get(self, args, task_id):
        """Why the task fired or did not: each condition against its recent messages (or one msg_id)."""
        return _explained(task_id, msg_id=args.get("msg_id"), limit=args["limit"])

    @blp.arguments(ExplainEventSchema)
    @blp.response(200, ExplanationEnvelope)
    @blp.alt_response(404, schema=EnvelopeSchema, description="unknown task")
    @blp.alt_response(422, schema=EnvelopeSchema, description="not a message or event")
    def post(self, args, task_id):
        """Whether the message or event in the body would fire the task if it arrived now, and why."""
        try:
            event = explain.event_from_body(args, received_at=time.time())
        except ValueError as exc:  # what the listener would refuse
            return envelope(422, "validation failed", None, {"body": [str(exc)]})
        return _explained(task_id, event=event)


def _explained(task_id: str, **against):
    try:
        return answer(200, "OK", explain.explain_task(task_id, **against))
    except TaskNotFound:
        abort(404, message=f"task {task_id} not found")
    except explain.MessageNotFound as exc:
        abort(404, message=f"no recent message has msg_id {exc}")
