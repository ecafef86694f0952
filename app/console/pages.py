"""The console's pages (read only): overview, tasks, a task, a customer, dispatches."""
from __future__ import annotations

import logging
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from flask import abort, current_app, redirect, render_template, request, url_for
from redis import RedisError
from sqlalchemy.exc import SQLAlchemyError

from app import health, readings, stats
from app.console.blueprint import bp
from app.console.display import ordered_fields, timeline_entry
from app.domain import dispatch as dispatch_domain
from app.domain import states
from app.domain.triggers import TRIGGER_TYPES
from app.infra.timeutil import utcnow
from app.services import console_queries as queries
from app.services import explain
from app.views import task_view

log = logging.getLogger(__name__)
CANCELLABLE = (states.PENDING, states.WAITING)
RETRYABLE = (states.FAILED, states.TIMEOUT)
MAX_PAGE = 100_000  # past any real list, and within what an OFFSET holds
TASK_FILTERS = ("q", "customer_id", "status", "type", "trigger_type", "created_from", "created_to")


def _zone() -> str:
    return current_app.config["SETTINGS"].app_timezone


def _page() -> int:
    raw = request.args.get("page", "1")
    return min(max(int(raw), 1), MAX_PAGE) if raw.isdigit() else 1


def _read(section: str, fn, *args):
    """(value, None), or (None, why) when the store it reads does not answer: a page shows what it can."""
    try:
        return fn(*args), None
    except (SQLAlchemyError, RedisError, OSError) as exc:
        log.warning("console: %s not read: %s", section, type(exc).__name__, extra={"event": "console_read"})
        return None, f"读取失败（{type(exc).__name__}）"


@bp.route("/")
def overview():
    from celeryconfig import QUEUE_ORDER

    def queues():
        depths, lags = readings.queue_depths(QUEUE_ORDER), stats.queue_lag(QUEUE_ORDER)
        return [(queue, depths[queue], lags[queue]) for queue in QUEUE_ORDER]

    figures = {
        "tasks": _read("tasks", readings.task_counts),
        "queues": _read("queues", queues),
        "readiness": (health.readiness(), None),  # reports each check's failure itself
        "callbacks": _read("callbacks", readings.callback_backlog),
        "failures": _read("failures", queries.failed_since, utcnow() - timedelta(hours=1)),
        "dispatches": _read("dispatches", readings.dispatch_counts),
    }
    return render_template("console/overview.html", now=utcnow(), **figures)


@bp.route("/tasks")
def tasks():
    args = {name: request.args.get(name, "").strip() for name in TASK_FILTERS}
    if args["q"] and queries.task_exists(args["q"]):
        return redirect(url_for("console.task", task_id=args["q"]))
    wanted, errors = _task_filter(args)
    found = None if errors else queries.find_tasks(wanted, _page())
    return render_template("console/tasks.html", args=args, errors=errors, found=found,
                           statuses=states.STATUSES, trigger_types=TRIGGER_TYPES,
                           query={k: v for k, v in args.items() if v})


def _task_filter(args: dict) -> tuple[queries.TaskFilter, list[str]]:
    errors = []
    if args["status"] and args["status"] not in states.STATUSES:
        errors.append(f"没有这个状态：{args['status']}")
    if args["trigger_type"] and args["trigger_type"] not in TRIGGER_TYPES:
        errors.append(f"没有这个触发类型：{args['trigger_type']}")
    bounds = {}
    for name, label, days in (("created_from", "起始日期", 0), ("created_to", "结束日期", 1)):
        if args[name]:
            try:
                bounds[name] = _day_start(date.fromisoformat(args[name]) + timedelta(days=days))
            except ValueError:
                errors.append(f"{label}应为 YYYY-MM-DD：{args[name]}")
    return queries.TaskFilter(
        customer_id=args["customer_id"] or None, status=args["status"] or None, type=args["type"] or None,
        trigger_type=args["trigger_type"] or None, created_from=bounds.get("created_from"),
        created_before=bounds.get("created_to"), task_id_prefix=args["q"] or None), errors


def _day_start(day: date) -> datetime:
    """Midnight of `day` in APP_TIMEZONE, as stored times are: naive UTC."""
    local = datetime.combine(day, time(0), tzinfo=ZoneInfo(_zone()))
    return local.astimezone(timezone.utc).replace(tzinfo=None)


@bp.route("/tasks/<string:task_id>")
def task(task_id):
    detail = queries.task_detail(task_id)
    if detail is None:
        abort(404, description=f"没有任务 {task_id}")
    msg_id = request.args.get("msg_id", "").strip() or None
    explanation, explain_error = None, None
    try:
        explanation = explain.explain_task(task_id, msg_id=msg_id)
    except explain.MessageNotFound:
        explain_error = f"最近的消息里没有 msg_id {msg_id}"
    except (SQLAlchemyError, RedisError, OSError) as exc:
        explain_error = f"无法解释（{type(exc).__name__}）"
    status = detail.task.status
    return render_template(
        "console/task.html", detail=detail, task=detail.task, fields=ordered_fields(task_view(detail.task, _zone())),
        timeline=[timeline_entry(e, _zone()) for e in detail.events], explanation=explanation,
        explain_error=explain_error, msg_id=msg_id, can_cancel=status in CANCELLABLE,
        can_retry=status in RETRYABLE, refresh=status in (states.PENDING, states.RUNNING))


@bp.route("/customers")
def customer_search():
    customer_id = request.args.get("customer_id", "").strip()
    if customer_id:
        return redirect(url_for("console.customer", customer_id=customer_id))
    return render_template("console/customer.html", view=None)


@bp.route("/customers/<path:customer_id>")
def customer(customer_id):
    return render_template("console/customer.html", view=queries.customer_view(customer_id))


@bp.route("/dispatches")
def dispatches():
    status = request.args.get("status", "").strip()
    customer_id = request.args.get("customer_id", "").strip()
    errors = [f"没有这个状态：{status}"] if status and status not in dispatch_domain.STATUSES else []
    found = None if errors else queries.find_dispatches(status or None, customer_id or None, _page())
    return render_template("console/dispatches.html", found=found, errors=errors, statuses=dispatch_domain.STATUSES,
                           args={"status": status, "customer_id": customer_id},
                           query={k: v for k, v in (("status", status), ("customer_id", customer_id)) if v})
