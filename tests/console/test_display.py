"""How the console words a history line, a time and a value (no stores needed)."""
from datetime import datetime

from app.console import display
from app.models import TaskEvent


def line(kind, detail=None, **columns):
    return display.timeline_entry(TaskEvent(task_id="T", at=datetime(2026, 12, 1, 2, 0, 3), kind=kind,
                                            detail=detail, **columns), "Asia/Shanghai")


def test_an_operators_move_names_it_and_who_made_it():
    entry = line("status", {"retry": True, "by": "alice", "reason": "轻简已恢复"}, from_status="failed",
                 to_status="running")
    assert entry["title"] == "人工重试：failed → running" and entry["by"] == "alice"
    assert entry["at"] == "2026-12-01 10:00:03"  # stored UTC, shown in APP_TIMEZONE
    assert ("原因", "轻简已恢复") in entry["details"] and ("人工重试", "是") in entry["details"]
    assert not any(label == "操作人" for label, _ in entry["details"])  # shown once, beside the title


def test_a_firing_says_which_message_of_whom():
    entry = line("status", {"triggered_by": {"kind": "message", "msg_id": "m-1", "customer_id": "c_9",
                                             "customer_name": "小刚", "acc_id": "shop_001"}},
                 from_status="waiting", to_status="running")
    assert entry["details"] == [("触发来源", "消息 m-1（小刚 c_9，店铺 shop_001）")]
    assert display.fired_by({"kind": "time"}) == "到达定时时间"


def test_sends_and_callbacks_say_how_they_went():
    refused = line("send", {"step": 1, "req_id": "T:1:0", "ok": False, "error": "busy"})
    assert refused["title"] == "发送第 1 步：被拒" and refused["tone"] == "bad"
    assert ("req_id", "T:1:0") in refused["details"]
    delivered = line("callback", {"event_id": "e1", "status": "completed", "outcome": "delivered", "attempts": 2})
    assert delivered["title"] == "回调天网（completed）：已送达" and delivered["tone"] == "ok"
    unknown = line("something_new", {"x": [1, 2]})
    assert unknown["title"] == "something_new" and unknown["details"] == [("x", "[1, 2]")]


def test_values_and_durations_read_plainly():
    assert display.as_json("2026-12-01T10:00:03.123+08:00") == "2026-12-01 10:00:03"
    assert display.as_json({"keyword": "好的"}) == '{"keyword": "好的"}' and display.as_json(None) == "—"
    assert display.seconds(4.25) == "4.2 秒" and display.seconds(75) == "1 分 15 秒"
    assert display.seconds(7300) == "2 小时 1 分"
