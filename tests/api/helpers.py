"""Shared helpers of the intake API tests (CONTRACTS.md §1)."""
from __future__ import annotations

import copy
import re
from datetime import datetime

from sqlalchemy import func, select

from app.infra.db import session_scope
from app.models import CallbackOutbox, Task, TaskEvent

ISO_WITH_OFFSET = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?[+-]\d{2}:\d{2}$")


def task_body(task_id, /, *, for_customer: str = "customer_123", **overrides) -> dict:
    """The example body of CONTRACTS.md §1 (for `for_customer`), `overrides` replacing top-level fields."""
    customer = for_customer
    body = {
        "task_id": task_id,
        "type": "send_file_after_reply",
        "customer": {"id": customer, "name": "小明"},
        "acc_id": "shop_001",
        "trigger": {"type": "specified_customer_reply", "customer_id": customer,
                    "customer_name": "小明", "keyword": "好的", "exact_match": False},
        "action": {"type": "send_file", "file_url": "https://example.com/a.zip", "file_name": "a.zip",
                   "message": "这是您要的文件"},
        "priority": "normal",
        "timeout_hours": 24,
        "max_retry": 3,
        "created_by": "设计师 lz",
    }
    body = copy.deepcopy(body)
    body.update(copy.deepcopy(overrides))
    return body


def reply_body(task_id: str, keyword: str = "好的", customer: str | None = None, **overrides) -> dict:
    """An any-customer (or customer-bound, if `customer`) customer_reply task sending a message."""
    body = {"task_id": task_id, "type": "reply_task",
            "trigger": {"type": "customer_reply", "keyword": keyword},
            "action": {"type": "send_message", "message": "收到"}}
    if customer:
        body["customer"] = {"id": customer}
    body.update(copy.deepcopy(overrides))
    return body


def assert_envelope(response, code: int, *, errors: bool | None = None) -> dict:
    """The answer is JSON in the envelope with `code` == HTTP status; returns the parsed body."""
    assert response.status_code == code, (response.status_code, response.data[:500])
    assert response.mimetype == "application/json", (response.mimetype, response.data[:300])
    body = response.get_json()
    assert isinstance(body, dict), body
    assert body["code"] == code, body
    assert isinstance(body["message"], str) and body["message"], body
    assert "data" in body, body
    assert set(body) <= {"code", "message", "data", "errors"}, body
    if errors is True:
        assert isinstance(body.get("errors"), dict) and body["errors"], body
        for path, reasons in body["errors"].items():
            assert isinstance(path, str) and path
            assert isinstance(reasons, list) and reasons and all(isinstance(r, str) for r in reasons), body
    elif errors is False:
        assert "errors" not in body, body
    return body


def counts() -> dict[str, int]:
    """Rows in the three tables the intake writes."""
    with session_scope() as session:
        return {model.__tablename__: session.scalar(select(func.count()).select_from(model))
                for model in (Task, TaskEvent, CallbackOutbox)}


def _bookkeeping(key: bytes) -> bool:
    """Keys no request's outcome writes: the mark that the (empty) index is complete, which the app sets
    when it starts (app.runtime), and the rate-limit counters, which count every request, refused or not."""
    return key == b"tw:ix:built" or key.startswith(b"tw:rl:")


def tw_keys(rdb) -> list[str]:
    """Every key the service wrote in Redis, but its bookkeeping."""
    return sorted(k.decode() for k in rdb.scan_iter(match="tw:*") if not _bookkeeping(k))


def assert_nothing_written(rdb) -> None:
    assert counts() == {"tasks": 0, "task_events": 0, "callback_outbox": 0}
    assert tw_keys(rdb) == []
    assert [k.decode() for k in rdb.scan_iter() if not _bookkeeping(k)] == []  # not even a Celery message


def parse_iso(value: str) -> datetime:
    assert isinstance(value, str) and ISO_WITH_OFFSET.match(value), value
    moment = datetime.fromisoformat(value)
    assert moment.utcoffset() is not None, value
    return moment


def index_snapshot(rdb) -> dict:
    """Every tw: key of the index with its contents (hash or set), comparable across rebuilds."""
    out = {}
    for key in tw_keys(rdb):
        kind = rdb.type(key).decode()
        if kind == "hash":
            out[key] = {k.decode(): v.decode() for k, v in rdb.hgetall(key).items()}
        elif kind == "set":
            out[key] = sorted(m.decode() for m in rdb.smembers(key))
        elif kind == "zset":
            out[key] = [m.decode() for m in rdb.zrange(key, 0, -1)]
        else:
            out[key] = kind
    return out
