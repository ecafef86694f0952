"""Beat's retention and fold, end to end: a real beat and worker purge an old finished task once 天网 has
its callbacks, leave a young one, and keep /api/task/stats equal to the tables."""
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from app.infra.db import session_scope
from app.infra.timeutil import utcnow
from app.models import Task, TaskCountDelta
from beat_schedule import BEAT_SCHEDULE
from devkit.stores import wait_until
from tests.conftest import uid

pytestmark = pytest.mark.integration


def reply_task(task_id, customer):
    return dict(task_id=task_id, type="reply", customer={"id": customer}, acc_id="shop_001",
                trigger={"type": "customer_reply", "keyword": "好的"},
                action={"type": "send_message", "message": f"收到 {task_id}"})


def test_beat_purges_old_finished_tasks_and_folds_the_counts(live):
    assert BEAT_SCHEDULE["maintenance.retention"]["options"]["queue"] == "maintenance"
    old, young, customer = uid("OLD"), uid("YOUNG"), uid("c")
    for task_id in (old, young):
        live.post_task(**reply_task(task_id, customer))
    live.qingjian.say(customer, "好的")
    for task_id in (old, young):
        live.wait_status(task_id, "completed")
    wait_until(lambda: all("completed" in live.tianwang.statuses(t) for t in (old, young)), 20, message="callbacks")
    with session_scope() as session:  # ended 91 days ago, as far as retention can tell
        session.execute(update(Task).where(Task.task_id == old).values(updated_at=utcnow() - timedelta(days=91)))

    def gone():
        with session_scope() as session:
            return session.get(Task, old) is None
    wait_until(gone, 30, 0.2, "beat's retention sweep to purge the old task")
    assert live.status(young)["status"] == "completed"

    with session_scope() as session:
        written = session.scalar(select(func.max(TaskCountDelta.id)))  # the purge's among them

    def folded():
        with session_scope() as session:
            return written is None or not session.scalar(
                select(func.count()).select_from(TaskCountDelta).where(TaskCountDelta.id <= written))
    wait_until(folded, 30, 0.2, "beat's upkeep to fold the count deltas")
    with session_scope() as session:
        truth = dict(session.execute(select(Task.status, func.count()).group_by(Task.status)).all())
    live.use()
    stats = live.client.get("/api/task/stats").get_json()["data"]
    assert {s: n for s, n in stats["by_status"].items() if n} == truth
