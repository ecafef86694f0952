"""Logs: one JSON object per line with the task id; phone and ID-card numbers masked (DESIGN.md §7)."""
from __future__ import annotations

import io
import json
import logging
from datetime import datetime

import pytest

from app.infra.logs import JsonFormatter, mask


@pytest.mark.parametrize("raw,expected", [
    ("13812345678", "138****5678"),
    ("电话13812345678，谢谢", "电话138****5678，谢谢"),
    ("call 19912345678 or 15087654321", "call 199****5678 or 150****4321"),
    ("tel:13812345678.", "tel:138****5678."),
    ("+86 13812345678", "+86 138****5678"),
])
def test_mask_mobile_numbers(raw, expected):
    assert mask(raw) == expected


@pytest.mark.parametrize("raw,expected", [
    ("110101199003074514", "110101********4514"),
    ("身份证11010119900307451X。", "身份证110101********451X。"),
    ("id=11010119900307451x", "id=110101********451x"),
])
def test_mask_id_card_numbers(raw, expected):
    out = mask(raw)
    assert out == expected
    assert len(out) == len(raw)


@pytest.mark.parametrize("raw", [
    "12345",
    "订单 O-9 金额 68.00",
    "O-20260227001",
    "order_id=3527846123456789012",      # 19-digit Taobao-style order number
    "12345678901",                       # 11 digits, but not a mobile prefix (1[3-9])
    "10012345678",
    "138123456789",                      # 12 digits: not a phone number
    "1381234567",                        # 10 digits
    "TASK_20260227_001",
    "1772241600",                        # an epoch timestamp
    "2026-02-27T10:00:03+08:00",
    "",
])
def test_mask_leaves_other_numbers_alone(raw):
    assert mask(raw) == raw


def test_mask_both_in_one_line():
    out = mask("客户 13812345678 身份证 110101199003074514 订单 O-9")
    assert out == "客户 138****5678 身份证 110101********4514 订单 O-9"


def test_mask_mobile_with_country_code():
    assert "13812345678" not in mask("+8613812345678")


# -- JsonFormatter --------------------------------------------------------------------------------

@pytest.fixture
def capture():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("worker"))
    logger = logging.getLogger("tests.unit.logs")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, stream
    logger.handlers[:] = []


def lines(stream: io.StringIO) -> list[dict]:
    text = stream.getvalue()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_one_json_object_per_line(capture):
    logger, stream = capture
    logger.info("first")
    logger.warning("second\nwith a newline")
    records = lines(stream)
    assert len(records) == 2
    assert records[0]["message"] == "first"
    assert records[1]["message"] == "second\nwith a newline"
    assert records[1]["level"] == "warning"


def test_fields(capture):
    logger, stream = capture
    logger.info("task %s fired for %s", "T1", "13812345678", extra={"task_id": "T1", "event": "fired"})
    (entry,) = lines(stream)
    assert entry["message"] == "task T1 fired for 138****5678"
    assert entry["level"] == "info"
    assert entry["process"] == "worker"
    assert entry["task_id"] == "T1"
    assert entry["event"] == "fired"
    assert isinstance(entry["pid"], int)
    moment = datetime.fromisoformat(entry["time"])
    assert moment.utcoffset() is not None and moment.utcoffset().total_seconds() == 0


def test_task_id_and_event_absent_when_not_passed(capture):
    logger, stream = capture
    logger.error("plain")
    (entry,) = lines(stream)
    assert "task_id" not in entry and "event" not in entry
    assert entry["level"] == "error"


def test_non_ascii_kept_readable(capture):
    logger, stream = capture
    logger.info("任务接收成功")
    assert "任务接收成功" in stream.getvalue()


def test_exception_is_in_the_same_line_and_masked(capture):
    logger, stream = capture
    try:
        raise RuntimeError("customer 13812345678 not found")
    except RuntimeError:
        logger.exception("send failed", extra={"task_id": "T9"})
    (entry,) = lines(stream)
    assert entry["task_id"] == "T9"
    assert "RuntimeError" in entry["exc"]
    assert "13812345678" not in entry["exc"] and "138****5678" in entry["exc"]
