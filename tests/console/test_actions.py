"""An operator's actions from the console: each changes the task through its service and leaves the
operator's name in the task's history; a viewer cannot act, and no action passes without its CSRF token."""
import pytest
from sqlalchemy import update

from app.infra.db import session_scope
from app.models import CallbackOutbox
from app.state import tasks as task_states
from tests.console.conftest import csrf_token, post_action, text
from tests.console.data import callbacks, fail, history, post_task, status


def snapshot(task_id: str) -> tuple:
    return status(task_id), len(history(task_id)), [(c.event_id, c.state) for c in callbacks(task_id)]


def test_cancel_records_the_operator_and_the_reason(operator, api):
    post_task(api, "T_cancel")
    answer = post_action(operator, "/console/tasks/T_cancel/cancel", "/console/tasks/T_cancel", reason="客户不要了")
    assert answer.status_code == 303 and answer.location == "/console/tasks/T_cancel"
    assert status("T_cancel") == "cancelled"
    line = history("T_cancel")[-1]
    assert (line.from_status, line.to_status) == ("waiting", "cancelled")
    assert line.detail == {"by": "alice", "reason": "客户不要了"}
    page = text(operator.get("/console/tasks/T_cancel"))
    assert "任务已取消（cancelled）" in page and "操作人 <strong>alice</strong>" in page


def test_retry_of_a_failed_task_runs_it_again_under_the_operators_name(operator, api):
    post_task(api, "T_retry")
    fail("T_retry")
    answer = post_action(operator, "/console/tasks/T_retry/retry", "/console/tasks/T_retry", reason="轻简已恢复")
    assert answer.status_code == 303
    assert status("T_retry") == "running"
    line = history("T_retry")[-1]
    assert (line.from_status, line.to_status) == ("failed", "running")
    assert line.detail == {"retry": True, "by": "alice", "reason": "轻简已恢复"}
    page = text(operator.get("/console/tasks/T_retry"))
    assert "已重试：任务现为 running" in page and "人工重试：failed → running" in page


def test_retry_of_a_timed_out_task_makes_it_wait_again(operator, api):
    post_task(api, "T_late")
    with session_scope() as session:
        assert task_states.move(session, "T_late", "timeout", error="deadline passed").won
    post_action(operator, "/console/tasks/T_late/retry", "/console/tasks/T_late")
    assert status("T_late") == "waiting"
    assert history("T_late")[-1].detail == {"retry": True, "by": "alice"}


def test_redeliver_puts_a_callback_back_in_the_outbox_under_the_operators_name(operator, api):
    post_task(api, "T_cb")
    fail("T_cb")
    failed_callback = callbacks("T_cb")[-1]
    assert (failed_callback.status, failed_callback.state) == ("failed", "unsent")
    answer = post_action(operator, f"/console/callbacks/{failed_callback.event_id}/redeliver", "/console/tasks/T_cb")
    assert answer.status_code == 303 and answer.location == "/console/tasks/T_cb"
    assert [c.state for c in callbacks("T_cb")] == ["unsent", "pending"]
    line = history("T_cb")[-1]
    assert line.kind == "callback_redeliver"
    assert line.detail == {"event_id": failed_callback.event_id, "status": "failed", "was": "unsent", "by": "alice"}
    page = text(operator.get("/console/tasks/T_cb"))
    assert f"回调 {failed_callback.event_id} 已重新排队投递" in page


def test_a_callback_being_delivered_is_not_redelivered(operator, api):
    post_task(api, "T_cb2")
    fail("T_cb2")
    event_id = callbacks("T_cb2")[-1].event_id
    with session_scope() as session:
        session.execute(update(CallbackOutbox).where(CallbackOutbox.event_id == event_id).values(state="pending"))
    before = snapshot("T_cb2")
    post_action(operator, f"/console/callbacks/{event_id}/redeliver", "/console/tasks/T_cb2")
    assert snapshot("T_cb2") == before
    assert "正在投递中（pending）" in text(operator.get("/console/tasks/T_cb2"))
    assert post_action(operator, "/console/callbacks/no-such-event/redeliver", "/console/").status_code == 404


def test_an_action_that_does_not_apply_changes_nothing_and_says_why(operator, api):
    post_task(api, "T_wrong")
    fail("T_wrong")
    before = snapshot("T_wrong")
    post_action(operator, "/console/tasks/T_wrong/cancel", "/console/tasks/T_wrong")
    assert snapshot("T_wrong") == before
    assert "未取消：任务当前为 failed" in text(operator.get("/console/tasks/T_wrong"))
    post_task(api, "T_waiting")
    before = snapshot("T_waiting")
    post_action(operator, "/console/tasks/T_waiting/retry", "/console/tasks/T_waiting")
    assert snapshot("T_waiting") == before
    assert "未重试：任务当前为 waiting" in text(operator.get("/console/tasks/T_waiting"))
    assert post_action(operator, "/console/tasks/NOPE/retry", "/console/").status_code == 404


def actions_on(client, task_id: str) -> set[str]:
    page = text(client.get(f"/console/tasks/{task_id}"))
    return {name for name, marker in (("cancel", 'id="cancel-button"'), ("retry", 'id="retry-button"'),
                                      ("redeliver", "重新投递</button>")) if marker in page}


def test_buttons_show_only_where_they_apply_and_only_to_operators(operator, viewer, api):
    post_task(api, "T_b_wait")
    post_task(api, "T_b_fail")
    fail("T_b_fail")
    assert actions_on(operator, "T_b_wait") == {"cancel"}
    assert actions_on(operator, "T_b_fail") == {"retry", "redeliver"}
    assert actions_on(viewer, "T_b_wait") == set() and actions_on(viewer, "T_b_fail") == set()


def action_path(action: str, task_id: str) -> str:
    if action == "redeliver":
        return f"/console/callbacks/{callbacks(task_id)[-1].event_id}/redeliver"
    return f"/console/tasks/{task_id}/{action}"


@pytest.mark.parametrize("action", ["cancel", "retry", "redeliver"])
def test_a_viewer_cannot_act(viewer, api, action):
    post_task(api, "T_v")
    if action != "cancel":
        fail("T_v")
    before = snapshot("T_v")
    answer = post_action(viewer, action_path(action, "T_v"), "/console/tasks/T_v")
    assert answer.status_code == 403 and "只读账号" in text(answer)
    assert snapshot("T_v") == before


@pytest.mark.parametrize("action", ["cancel", "retry", "redeliver"])
def test_no_action_passes_without_its_csrf_token(operator, api, action):
    post_task(api, "T_x")
    if action != "cancel":
        fail("T_x")
    path = action_path(action, "T_x")
    before = snapshot("T_x")
    assert operator.post(path, data={"reason": "no token"}).status_code == 400
    assert operator.post(path, data={"csrf_token": "forged"}).status_code == 400
    other = operator.application.test_client()  # a token from another session is no good either
    token = csrf_token(other)
    assert operator.post(path, data={"csrf_token": token}).status_code == 400
    assert snapshot("T_x") == before
