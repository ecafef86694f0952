"""The dispatch workflow's pure parts (CONTRACTS.md §3): statuses, steps, the designer choice, texts.

No I/O here; `app.state.dispatches` applies the status graph and `app.services.dispatch` runs the steps.
"""
from __future__ import annotations

from dataclasses import dataclass

PENDING, WAITING_DESIGNER, CREATING, ASSIGNED, FAILED = (
    "pending", "waiting_designer", "creating", "assigned", "failed")
STATUSES = (PENDING, WAITING_DESIGNER, CREATING, ASSIGNED, FAILED)
TERMINAL = frozenset({ASSIGNED, FAILED})

# target status -> the statuses it may be reached from
ALLOWED_FROM: dict[str, frozenset[str]] = {
    WAITING_DESIGNER: frozenset({PENDING}),
    CREATING: frozenset({PENDING, WAITING_DESIGNER}),
    ASSIGNED: frozenset({CREATING}),
    FAILED: frozenset({PENDING, WAITING_DESIGNER, CREATING}),
}

FIND_DESIGNER, CREATE, ASSIGN, NOTIFY, REPLY = "find_designer", "create", "assign", "notify", "reply"
STEPS = (FIND_DESIGNER, CREATE, ASSIGN, NOTIFY, REPLY)
# A step row is `pending` while an attempt is under way or due again, then `done` or `failed` (given up).
STEP_PENDING, STEP_DONE, STEP_FAILED = "pending", "done", "failed"

TASK_TYPE = "image_process"
TASK_PRIORITY = 2


def sources(target: str) -> frozenset[str]:
    try:
        return ALLOWED_FROM[target]
    except KeyError:
        raise ValueError(f"no dispatch transition leads to {target!r}") from None


@dataclass(frozen=True)
class Choice:
    designer: str | None
    why: str | None  # sticky | suggestion | least_loaded; None when nobody is online


def choose_designer(online: list[str], *, sticky: str | None = None, suggestion: str | None = None,
                    open_counts: dict[str, int] | None = None) -> Choice:
    """Who gets the job: the customer's recent designer if online, else 图绘's suggestion if online,
    else the online designer with the fewest of our open dispatches (ties: 图绘's order)."""
    if not online:
        return Choice(None, None)
    if sticky and sticky in online:
        return Choice(sticky, "sticky")
    if suggestion and suggestion in online:
        return Choice(suggestion, "suggestion")
    counts = open_counts or {}
    best = min(range(len(online)), key=lambda i: (counts.get(online[i], 0), i))
    return Choice(online[best], "least_loaded")


def task_name(customer_id: str) -> str:
    return f"图片处理-{customer_id[-4:]}"


def description(dispatch_id: str, customer_id: str, reason: str | None, image_url: str | None) -> str:
    """The 图绘 task's description; it carries our dispatch id so a lost create can be found again."""
    return (f"{reason or '转人工处理'}\n客户：{customer_id}\n图片：{image_url or '无'}\n"
            f"派单号：{dispatch_id}")


def assign_notes(customer_id: str, reason: str | None) -> str:
    return f"AI 客服自动派单\n原因：{reason or '转人工处理'}\n客户：{customer_id}"


def _clip(text: str | None, limit: int) -> str:
    text = (text or "").strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def notice_markdown(designer: str, tuhui_task_id: str, customer_id: str, reason: str | None,
                    image_url: str | None) -> str:
    """The designers' group notice (stays far below the robot's 4096-byte limit)."""
    lines = ["📋 **新任务派单**", f"设计师：{_clip(designer, 64)}", f"任务 ID：{_clip(tuhui_task_id, 64)}",
             f"客户：{_clip(customer_id, 128)}", f"原因：{_clip(reason or '转人工处理', 400)}"]
    if image_url:
        lines.append(f"图片：{_clip(image_url, 500)}")
    lines.append("请及时处理")
    return "\n".join(lines)


def alert_markdown(dispatch_id: str, customer_id: str, reason: str | None, waited_minutes: float) -> str:
    return "\n".join([
        "⚠️ **派单失败：无设计师在线**", f"客户：{_clip(customer_id, 128)}",
        f"原因：{_clip(reason or '转人工处理', 400)}",
        f"已等待 {waited_minutes:g} 分钟仍无设计师在线，请人工跟进", f"派单号：{dispatch_id}",
    ])


def req_id(dispatch_id: str, step: str, attempt: int) -> str:
    """`dispatch:<dispatch_id>:<step>:<attempt>`: the `<id>:<step>:<attempt>` shape of CONTRACTS.md §2."""
    return f"dispatch:{dispatch_id}:{step}:{attempt}"
