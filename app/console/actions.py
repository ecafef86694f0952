"""What an operator does from the console: cancel, retry, re-deliver a callback. Each is a service call
that records the operator's name in the task's history (`actor`); a viewer is refused before it."""
from __future__ import annotations

import logging

from flask import abort, flash, redirect, request, url_for
from flask_login import current_user

from app.console.auth import operator_required
from app.console.blueprint import bp
from app.services import console_queries as queries
from app.services import intake, operator
from app.state.tasks import TaskNotFound

log = logging.getLogger(__name__)
REASON_MAX = 500


def _reason() -> str | None:
    return request.form.get("reason", "").strip()[:REASON_MAX] or None


def _back_to(task_id: str):
    return redirect(url_for("console.task", task_id=task_id), 303)


@bp.route("/tasks/<string:task_id>/cancel", methods=["POST"])
@operator_required
def cancel(task_id):
    try:
        intake.cancel(task_id, _reason(), actor=current_user.name)
    except TaskNotFound:
        abort(404, description=f"没有任务 {task_id}")
    except intake.Conflict as exc:
        flash(f"未取消：任务当前为 {exc.status}，只有 pending 或 waiting 的任务可以取消。", "error")
        return _back_to(task_id)
    log.info("console: %s cancelled task %s", current_user.name, task_id,
             extra={"task_id": task_id, "event": "console_cancel"})
    flash("任务已取消（cancelled）。", "ok")
    return _back_to(task_id)


@bp.route("/tasks/<string:task_id>/retry", methods=["POST"])
@operator_required
def retry(task_id):
    try:
        status = operator.retry(task_id, _reason(), actor=current_user.name)
    except TaskNotFound:
        abort(404, description=f"没有任务 {task_id}")
    except operator.NotRetryable as exc:
        flash(f"未重试：任务当前为 {exc.status}，只有 failed 或 timeout 的任务可以重试。", "error")
        return _back_to(task_id)
    log.info("console: %s retried task %s -> %s", current_user.name, task_id, status,
             extra={"task_id": task_id, "event": "console_retry"})
    flash(f"已重试：任务现为 {status}。", "ok")
    return _back_to(task_id)


@bp.route("/callbacks/<string:event_id>/redeliver", methods=["POST"])
@operator_required
def redeliver(event_id):
    task_id = queries.callback_task(event_id)
    if task_id is None:
        abort(404, description=f"没有回调 {event_id}")
    if operator.redeliver_callback(event_id, actor=current_user.name):
        log.info("console: %s re-delivers callback %s of task %s", current_user.name, event_id, task_id,
                 extra={"task_id": task_id, "event": "console_redeliver"})
        flash(f"回调 {event_id} 已重新排队投递。", "ok")
    else:
        flash(f"回调 {event_id} 正在投递中（pending），无需重新投递。", "error")
    return _back_to(task_id)
