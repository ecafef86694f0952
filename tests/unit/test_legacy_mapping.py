"""`app.domain.legacy.map_row`: each legacy row becomes the task it meant, or a refusal that says why.

Rows are dicts shaped like the legacy `tasks` table of seeds 000/001; no database is involved.
"""
from __future__ import annotations

import json
from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain.legacy import Refused, map_row
from app.schemas import TaskReceiveSchema

ZONE = "Asia/Shanghai"
NOW = datetime(2026, 3, 1, 2, 0)  # naive UTC: 2026-03-01 10:00 in Shanghai
CREATED = "2026-03-01 09:00:00"  # an hour ago, Shanghai wall clock, as the legacy bridge wrote it


def legacy(**columns) -> dict:
    row = {"task_id": "TASK_1", "type": "send_file_after_reply", "status": "pending",
           "trigger_type": "customer_reply", "trigger_keyword": "好的", "action_type": "send_message",
           "action_message": "这是您要的文件", "created_at": CREATED}
    row.update(columns)
    return row


def mapped(**columns):
    return map_row(legacy(**columns), zone=ZONE, now=NOW)


def refusal(**columns) -> str:
    with pytest.raises(Refused) as info:
        mapped(**columns)
    return str(info.value)


# -- statuses -------------------------------------------------------------------------------------

@pytest.mark.parametrize("legacy_status", ["pending", "waiting", None])
def test_pending_and_waiting_rows_wait_here(legacy_status):
    task = mapped(status=legacy_status)
    assert task.status == "waiting" and task.waits and not task.overdue
    assert task.legacy_status == (legacy_status or "pending")  # NULL: the column's default


@pytest.mark.parametrize("legacy_status", ["completed", "failed", "cancelled", "timeout"])
def test_finished_rows_are_history_with_their_outcome(legacy_status):
    task = mapped(status=legacy_status, retry_count=2, max_retry=3, triggered_at="2026-02-28 10:00:01",
                  completed_at="2026-02-28T10:00:03+08:00", error_message="轻简 timeout",
                  result='{"sent": true}')
    assert task.status == legacy_status and not task.waits
    assert task.retry_count == 2 and task.body["max_retry"] == 3
    assert task.triggered_at == datetime(2026, 2, 28, 2, 0, 1)
    assert task.completed_at == datetime(2026, 2, 28, 2, 0, 3)
    assert task.error_message == "轻简 timeout" and task.result == {"sent": True}


def test_running_rows_are_refused_because_their_action_may_have_been_sent():
    assert "may have been sent" in refusal(status="running")


def test_an_unknown_status_is_refused():
    assert "'paused' is not a legacy status" in refusal(status="paused")


def test_a_waiting_row_past_its_deadline_becomes_a_timeout():
    task = mapped(created_at="2026-02-27 09:00:00", timeout_hours=24)  # deadline 2026-02-28 09:00
    assert task.status == "timeout" and task.overdue and not task.waits
    assert task.expires_at == datetime(2026, 2, 28, 1, 0)


@pytest.mark.parametrize("column", ["triggered_at", "completed_at"])
def test_a_waiting_row_that_says_it_fired_is_refused(column):
    assert "may have fired" in refusal(**{column: "2026-03-01 09:30:00"})


# -- times --------------------------------------------------------------------------------------------

def test_times_without_an_offset_are_read_in_the_given_zone_and_stored_as_utc():
    assert mapped().created_at == datetime(2026, 3, 1, 1, 0)
    early = legacy(created_at="2026-03-01 01:30:00")
    assert map_row(early, zone="UTC", now=NOW).created_at == datetime(2026, 3, 1, 1, 30)
    assert map_row(early, zone=ZONE, now=NOW).created_at == datetime(2026, 2, 28, 17, 30)
    assert mapped(created_at="2026-03-01T01:30:00.250000+00:00").created_at == datetime(2026, 3, 1, 1, 30, 0, 250000)


def test_a_creation_time_in_the_future_is_refused_as_a_wrong_zone():
    assert "are the legacy times in another zone" in refusal(created_at="2026-03-01 18:00:00")  # read as UTC+8
    assert mapped(created_at="2026-03-01 10:04:00").status == "waiting"  # clocks a few minutes apart
    with pytest.raises(Refused):
        map_row(legacy(created_at="2026-03-01 09:00:00"), zone="America/New_York", now=NOW)


def test_the_deadline_is_created_at_plus_timeout_hours():
    assert mapped(timeout_hours=2).expires_at == datetime(2026, 3, 1, 3, 0)
    assert mapped(timeout_hours=None).expires_at == datetime(2026, 3, 2, 1, 0)  # NULL: the default 24


@pytest.mark.parametrize("value, reason", [
    (None, "no created_at"), ("", "no created_at"), ("yesterday", "'yesterday' is not a time"),
    ("2026/03/01 09:00", "is not a time")])
def test_an_undatable_row_is_refused(value, reason):
    assert reason in refusal(created_at=value)


@pytest.mark.parametrize("value", [0, -1, 721, "abc", "nan", "inf"])
def test_timeout_hours_out_of_the_contracts_range_is_refused(value):
    assert "timeout_hours" in refusal(timeout_hours=value)


def test_timeout_hours_stored_as_text_or_real_is_read_as_its_number():
    assert mapped(timeout_hours="12").body["timeout_hours"] == 12
    assert mapped(timeout_hours=1.5).body["timeout_hours"] == 1.5
    assert mapped(timeout_hours=24.0).body["timeout_hours"] == 24  # the same body as 24: same hash


# -- triggers -----------------------------------------------------------------------------------------

def test_customer_reply_with_the_tasks_customer():
    task = mapped(customer_id="customer_123", customer_name="小明")
    assert task.body["customer"] == {"id": "customer_123", "name": "小明"}
    assert task.body["trigger"] == {"type": "customer_reply", "keyword": "好的", "exact_match": False}
    assert task.notes == ("exact_match",)


def test_specified_customer_reply_from_seed_000s_columns():
    task = mapped(trigger_type="specified_customer_reply", specified_customer_id="customer_123",
                  specified_customer_name="小明", customer_id="customer_123", customer_name="小明")
    assert task.body["trigger"] == {"type": "specified_customer_reply", "customer_id": "customer_123",
                                    "customer_name": "小明", "keyword": "好的", "exact_match": False}


def test_specified_customer_reply_from_seed_001s_table_is_bound_by_customer_id():
    task = mapped(trigger_type="specified_customer_reply", customer_id="customer_123", customer_name="小明")
    assert task.body["trigger"] == {"type": "specified_customer_reply", "customer_id": "customer_123",
                                    "keyword": "好的", "exact_match": False}  # no name: none to require


def test_keyword_lists_come_from_the_json_array_or_the_single_keyword():
    words = mapped(trigger_type="customer_keyword", trigger_keyword=None,
                   trigger_keywords=json.dumps(["好的", "可以", "行"], ensure_ascii=False))
    assert words.body["trigger"] == {"type": "customer_keyword", "keywords": ["好的", "可以", "行"]}
    single = mapped(trigger_type="customer_keyword", trigger_keyword="发票", trigger_keywords=None)
    assert single.body["trigger"] == {"type": "customer_keyword", "keywords": ["发票"]}


@pytest.mark.parametrize("kind", ["customer_payment", "customer_order"])
def test_payment_and_order_keep_their_keywords_or_take_the_defaults(kind):
    own = mapped(trigger_type=kind, trigger_keyword=None, trigger_keywords='["拍下了"]')
    assert own.body["trigger"] == {"type": kind, "keywords": ["拍下了"]}
    assert mapped(trigger_type=kind, trigger_keyword=None).body["trigger"] == {"type": kind}


@pytest.mark.parametrize("raw, reason", [("好的,可以", "is not a JSON array"), ('"好的"', "JSON array of strings"),
                                         ('[1, 2]', "JSON array of strings")])
def test_unreadable_keyword_lists_are_refused(raw, reason):
    assert reason in refusal(trigger_type="customer_keyword", trigger_keywords=raw)


@pytest.mark.parametrize("kind, missing", [("time_reach", "time"), ("custom_event", "event name")])
def test_timers_and_custom_events_that_would_wait_are_refused_for_want_of_a_column(kind, missing):
    assert f"no column for its {missing}" in refusal(trigger_type=kind)


@pytest.mark.parametrize("kind", ["time_reach", "custom_event"])
def test_finished_timers_and_custom_events_are_kept_as_history(kind):
    task = mapped(trigger_type=kind, trigger_keyword=None, status="completed")
    assert task.status == "completed" and task.body["trigger"] == {"type": kind}
    overdue = mapped(trigger_type=kind, created_at="2026-01-01 09:00:00")  # waiting, but past its deadline
    assert overdue.status == "timeout"


def test_an_unknown_trigger_type_is_refused():
    assert "'customer_smiles' is not one of" in refusal(trigger_type="customer_smiles")


# -- actions ------------------------------------------------------------------------------------------

def test_send_file_keeps_its_url_and_message():
    task = mapped(action_type="send_file", action_file_url="https://example.com/a.zip")
    assert task.body["action"] == {"type": "send_file", "file_url": "https://example.com/a.zip",
                                   "message": "这是您要的文件"}


def test_a_waiting_send_link_is_sent_as_its_message_as_the_legacy_bridge_did():
    task = mapped(action_type="send_link", action_message="教程：https://example.com/t")
    assert task.body["action"] == {"type": "send_message", "message": "教程：https://example.com/t"}
    assert "send_link" in task.notes
    assert mapped(action_type="send_link", status="completed").body["action"]["type"] == "send_link"


@pytest.mark.parametrize("columns, reason", [
    ({"action_file_url": "https://example.com/x"}, "either column"),
    ({"action_message": None}, "no link to send")])
def test_an_ambiguous_or_empty_send_link_is_refused(columns, reason):
    assert reason in refusal(action_type="send_link", **columns)


def test_an_unknown_action_type_is_refused():
    assert "'send_sms' is not one of" in refusal(action_type="send_sms")


@pytest.mark.parametrize("raw, stored", [('{"msg_id": "m-1"}', {"msg_id": "m-1"}), ("[1, 2]", {"value": [1, 2]}),
                                         ("发送成功", {"text": "发送成功"}), (None, None)])
def test_results_are_kept_as_json_objects(raw, stored):
    assert mapped(status="completed", result=raw).result == stored


# -- the rest of the columns -------------------------------------------------------------------------

@pytest.mark.parametrize("task_id, reason", [(None, "no task_id"), ("任务1", "is not 1-128"), ("a b", "is not 1-128"),
                                             ("T" * 129, "is not 1-128")])
def test_task_ids_the_api_could_not_address_are_refused(task_id, reason):
    assert reason in refusal(task_id=task_id)


@pytest.mark.parametrize("columns, reason", [
    ({"priority": "asap"}, "priority 'asap'"), ({"type": None}, "no type"), ({"type": "x" * 65}, "type is longer"),
    ({"customer_id": "c" * 129}, "customer_id is longer"), ({"created_by": "x" * 129}, "created_by is longer"),
    ({"status": "completed", "retry_count": -1}, "retry_count -1 is not a count"),
    ({"max_retry": "three"}, "max_retry 'three'")])
def test_values_out_of_the_contract_are_refused(columns, reason):
    assert reason in refusal(**columns)


def test_numbers_sqlite_stored_in_text_columns_are_read_as_text():
    task = mapped(task_id=20260227001, customer_id=123, trigger_keyword=1)  # TEXT affinity kept them as numbers
    assert task.task_id == "20260227001" and task.body["customer"] == {"id": "123"}
    assert task.body["trigger"]["keyword"] == "1"


def test_blank_columns_count_as_missing():
    task = mapped(customer_id="  ", created_by="", priority="")
    assert "customer" not in task.body and "created_by" not in task.body and task.body["priority"] == "normal"


def test_a_waiting_rows_body_is_one_the_intake_api_accepts():
    task = mapped(customer_id="customer_123", customer_name="小明", priority="urgent", max_retry=5,
                  created_by="设计师 lz", action_type="send_file", action_file_url="https://example.com/a.zip")
    loaded = TaskReceiveSchema().load(task.body)
    assert loaded["priority"] == "urgent" and loaded["max_retry"] == 5 and loaded["timeout_hours"] == 24


# -- any row at all: a task or a refusal, never a crash ----------------------------------------------

COLUMN_VALUES = st.none() | st.text(max_size=12) | st.integers(-10**6, 10**6) | st.floats() | st.binary(max_size=8)
COLUMNS = ("task_id", "type", "status", "trigger_type", "trigger_keyword", "trigger_keywords", "action_type",
           "action_file_url", "action_message", "priority", "timeout_hours", "max_retry", "retry_count",
           "created_at", "triggered_at", "completed_at", "customer_id", "customer_name", "specified_customer_id",
           "specified_customer_name", "created_by", "error_message", "result")


@settings(max_examples=400, deadline=None)
@given(st.fixed_dictionaries({}, optional={name: COLUMN_VALUES for name in COLUMNS}),
       st.sampled_from(["pending", "waiting", "completed", "failed", "cancelled", "timeout", "running", None]))
def test_any_row_maps_or_is_refused_with_a_reason(columns, status):
    row = legacy(**columns)
    if "status" not in columns:
        row["status"] = status
    try:
        task = map_row(row, zone=ZONE, now=NOW)
    except Refused as exc:
        assert str(exc)
        return
    assert task.status in ("waiting", "completed", "failed", "cancelled", "timeout")
    assert task.created_at < task.expires_at
    json.dumps(task.body, ensure_ascii=False)  # storable as JSON
