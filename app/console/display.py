"""How the console shows things: Chinese labels beside the wire's own names (ids, statuses and field
names stay as they are on the wire), times in APP_TIMEZONE, and one readable line per history row."""
from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from flask import current_app

STATUS_LABELS = {"pending": "待登记", "waiting": "等待触发", "running": "执行中", "completed": "已完成",
                 "failed": "失败", "cancelled": "已取消", "timeout": "已超时"}
TRIGGER_LABELS = {"specified_customer_reply": "指定客户回复", "customer_reply": "客户回复",
                  "customer_keyword": "客户关键词", "customer_payment": "客户付款", "customer_order": "客户下单",
                  "time_reach": "定时", "custom_event": "自定义事件"}
ACTION_LABELS = {"send_message": "发送消息", "send_file": "发送文件", "send_link": "发送链接",
                 "transfer_to_designer": "转交设计师"}
DISPATCH_LABELS = {"pending": "待处理", "waiting_designer": "等待设计师上线", "creating": "创建中",
                   "assigned": "已指派", "failed": "失败"}
STEP_LABELS = {"find_designer": "选择设计师", "create": "创建图绘任务", "assign": "指派", "notify": "通知设计师群",
               "reply": "回复客户"}
OUTBOX_LABELS = {"pending": "待投递", "delivered": "已送达", "failed": "投递失败", "unsent": "未发送（未配置回调地址）"}
CONDITION_LABELS = {"status": "任务状态", "message_type": "消息类型", "shop": "店铺", "customer_id": "客户 ID",
                    "customer_name": "客户昵称", "keyword": "关键词", "lookback": "回溯窗口", "deadline": "截止时间",
                    "time": "触发时间", "event_name": "事件名", "event_data": "事件数据"}
VERDICT_LABELS = {"pass": "✓ 符合", "fail": "✗ 不符", "not_applicable": "– 不适用"}
OUTCOME_LABELS = {"fired": "已触发", "would_fire": "会触发", "would_not_fire": "不会触发", "waiting": "等待中"}
FIELD_LABELS = {
    "task_id": "任务 ID", "type": "任务类型", "status": "状态", "customer": "客户", "customer_id": "客户 ID",
    "acc_id": "店铺账号", "trigger": "触发条件", "action": "动作", "priority": "优先级", "timeout_hours": "超时（小时）",
    "max_retry": "最多重试", "retry_count": "已重试", "created_by": "创建人", "created_at": "创建时间",
    "triggered_at": "触发时间", "completed_at": "结束时间", "expires_at": "截止时间", "due_at": "定时时间",
    "updated_at": "更新时间", "error_message": "错误", "result": "结果", "triggered_by": "触发来源",
}
EVENT_TITLES = {"received": "收到任务", "status": "状态变更", "send": "发送", "attempt_failed": "本次尝试失败",
                "retry_due": "重试到期，再次执行", "redrive": "租约过期，重新驱动", "callback": "回调天网",
                "callback_redeliver": "重新投递回调", "dispatch": "转交设计师", "imported": "从旧系统导入"}
DETAIL_LABELS = {"by": "操作人", "reason": "原因", "error": "错误", "step": "步骤", "req_id": "req_id", "ok": "结果",
                 "attempt": "尝试", "attempts": "尝试次数", "event_id": "event_id", "outcome": "结果",
                 "status": "回调状态", "was": "原投递状态", "triggered_by": "触发来源", "created_by": "创建人",
                 "retry": "人工重试", "rearmed": "重新下发", "dispatch_id": "dispatch_id"}
_ISO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?([+-]\d{2}:\d{2}|Z)$")
# The task's fields in the order an operator reads them (the rest of the stored body follows).
FIELD_ORDER = ("task_id", "status", "type", "customer", "customer_id", "acc_id", "trigger", "action", "priority",
               "created_by", "created_at", "expires_at", "due_at", "triggered_at", "triggered_by", "completed_at",
               "retry_count", "max_retry", "timeout_hours", "error_message", "result", "updated_at")
# What an operator's move is called in the timeline.
OPERATOR_MOVES = (("retry", "人工重试"), ("rearmed", "重新下发"))


def when(moment: datetime | None, zone: str) -> str:
    """A stored (naive UTC) time as local wall-clock time, or an em dash."""
    if moment is None:
        return "—"
    return moment.replace(tzinfo=timezone.utc).astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M:%S")


def wire_time(text: str | None) -> str:
    """An ISO time of the wire (with its offset) as wall-clock time in that offset."""
    if not text:
        return "—"
    try:
        return datetime.fromisoformat(text).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return text


def seconds(value: float | None) -> str:
    """A duration for people: 12 秒, 3 分 5 秒, 2 小时 4 分."""
    if value is None:
        return "—"
    total = int(value)
    if total < 60:
        return f"{value:.1f} 秒" if value < 10 else f"{total} 秒"
    if total < 3600:
        return f"{total // 60} 分 {total % 60} 秒"
    return f"{total // 3600} 小时 {total % 3600 // 60} 分"


def as_json(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return wire_time(value) if _ISO_TIME.match(value) else value
    return json.dumps(value, ensure_ascii=False, sort_keys=True, indent=None, separators=(", ", ": "))


def detail_value(key: str, value) -> str:
    if isinstance(value, bool):
        return "是" if value else "否"
    if key == "triggered_by" and isinstance(value, dict):
        return fired_by(value)
    return as_json(value)


def fired_by(by: dict) -> str:
    """What fired a task (its triggered_by), in a few words."""
    if by.get("kind") == "time":
        return "到达定时时间"
    if by.get("kind") == "custom":
        return f"自定义事件 {by.get('event')}" + (f"（客户 {by['customer_id']}）" if by.get("customer_id") else "")
    kind = {"message": "消息", "payment": "付款事件", "order": "下单事件"}.get(by.get("kind"), "消息")
    text = f"{kind} {by.get('msg_id') or ''}".strip()
    who = " ".join(str(v) for v in (by.get("customer_name"), by.get("customer_id")) if v)
    if who:
        text += f"（{who}" + (f"，店铺 {by['acc_id']}" if by.get("acc_id") else "") + "）"
    return text


def ordered_fields(view: dict) -> list[tuple[str, object]]:
    return [(k, view[k]) for k in FIELD_ORDER if k in view] + [(k, v) for k, v in view.items() if k not in FIELD_ORDER]


def timeline_entry(event, zone: str) -> dict:
    """One history row as the timeline shows it: a title, who did it, and every detail, labelled."""
    detail = dict(event.detail or {})
    title = EVENT_TITLES.get(event.kind, event.kind)
    tone = "info"
    if event.kind == "status":
        move = next((label for key, label in OPERATOR_MOVES if detail.get(key)), None)
        title = f"{move}：" if move else ""
        title += f"{event.from_status} → {event.to_status}"
        tone = {"completed": "ok", "failed": "bad", "timeout": "bad", "cancelled": "muted"}.get(event.to_status, tone)
    elif event.kind == "send":
        title = f"发送第 {detail.get('step', '?')} 步：" + ("已送达" if detail.get("ok") else "被拒")
        tone = "ok" if detail.get("ok") else "bad"
    elif event.kind == "callback":
        outcome = detail.get("outcome")
        title = f"回调天网（{detail.get('status')}）：{OUTBOX_LABELS.get(outcome, outcome)}"
        tone = "ok" if outcome == "delivered" else "bad" if outcome == "failed" else tone
    elif event.kind == "attempt_failed":
        tone = "bad"
    by = detail.pop("by", None)
    return {"at": when(event.at, zone), "kind": event.kind, "title": title, "tone": tone, "by": by,
            "details": [(DETAIL_LABELS.get(k, k), detail_value(k, v)) for k, v in detail.items() if v is not None]}


def register_filters(blueprint) -> None:
    """The filters the console's templates use (times in the app's APP_TIMEZONE)."""
    def local(moment):
        return when(moment, current_app.config["SETTINGS"].app_timezone)

    blueprint.add_app_template_filter(local, "when")
    blueprint.add_app_template_filter(wire_time, "wire_time")
    blueprint.add_app_template_filter(seconds, "seconds")
    blueprint.add_app_template_filter(as_json, "as_json")
    for name, labels in (("status_label", STATUS_LABELS), ("trigger_label", TRIGGER_LABELS),
                         ("action_label", ACTION_LABELS), ("dispatch_label", DISPATCH_LABELS),
                         ("step_label", STEP_LABELS), ("outbox_label", OUTBOX_LABELS),
                         ("condition_label", CONDITION_LABELS), ("verdict_label", VERDICT_LABELS),
                         ("outcome_label", OUTCOME_LABELS), ("field_label", FIELD_LABELS)):
        blueprint.add_app_template_filter(lambda value, labels=labels: labels.get(value, value), name)
