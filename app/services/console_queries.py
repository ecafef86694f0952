"""What the operator console's pages read; nothing here writes. Rows come back detached (sessions do
not expire on commit), ready for a template."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select

from app.domain import states
from app.infra.db import session_scope
from app.models import CallbackOutbox, Dispatch, DispatchStep, InboundMessage, Task, TaskEvent

PAGE_SIZE = 50
ACTIVE = (states.PENDING, states.WAITING, states.RUNNING)


@dataclass(frozen=True)
class TaskFilter:
    customer_id: str | None = None
    status: str | None = None
    type: str | None = None
    trigger_type: str | None = None
    created_from: datetime | None = None  # naive UTC, inclusive
    created_before: datetime | None = None  # naive UTC, exclusive
    task_id_prefix: str | None = None

    def conditions(self) -> list:
        found = [column == value for column, value in (
            (Task.customer_id, self.customer_id), (Task.status, self.status), (Task.type, self.type),
            (Task.trigger_type, self.trigger_type)) if value]
        if self.created_from is not None:
            found.append(Task.created_at >= self.created_from)
        if self.created_before is not None:
            found.append(Task.created_at < self.created_before)
        if self.task_id_prefix:
            found.append(Task.task_id.startswith(self.task_id_prefix, autoescape=True))
        return found


@dataclass(frozen=True)
class Page:
    items: list
    page: int
    page_size: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.page_size))


def find_tasks(wanted: TaskFilter, page: int = 1, page_size: int = PAGE_SIZE) -> Page:
    """Tasks matching `wanted`, newest first."""
    with session_scope() as session:
        rows, total = _paged(session, Task, wanted.conditions(), (Task.created_at.desc(), Task.task_id),
                             page, page_size)
    return Page(rows, page, page_size, total)


def _paged(session, model, where: list, order: tuple, page: int, page_size: int) -> tuple[list, int]:
    total = session.scalar(select(func.count()).select_from(model).where(*where))
    rows = session.scalars(select(model).where(*where).order_by(*order)
                           .offset((page - 1) * page_size).limit(page_size)).all()
    return list(rows), total or 0


def task_exists(task_id: str) -> bool:
    with session_scope() as session:
        return session.get(Task, task_id) is not None


@dataclass
class TaskDetail:
    task: Task
    events: list[TaskEvent]  # oldest first
    callbacks: list[CallbackOutbox]  # oldest first
    dispatch: Dispatch | None = None
    steps: list[DispatchStep] = field(default_factory=list)


def task_detail(task_id: str) -> TaskDetail | None:
    with session_scope() as session:
        task = session.get(Task, task_id)
        if task is None:
            return None
        events = session.scalars(select(TaskEvent).where(TaskEvent.task_id == task_id).order_by(TaskEvent.id)).all()
        callbacks = session.scalars(select(CallbackOutbox).where(CallbackOutbox.task_id == task_id)
                                    .order_by(CallbackOutbox.created_at, CallbackOutbox.event_id)).all()
        dispatch = session.scalar(select(Dispatch).where(Dispatch.task_id == task_id))
        steps = _steps(session, [dispatch.dispatch_id]).get(dispatch.dispatch_id, []) if dispatch else []
    return TaskDetail(task, list(events), list(callbacks), dispatch, steps)


@dataclass
class CustomerView:
    customer_id: str
    active: list[Task]  # what waits for them (pending, waiting, running), oldest first
    finished_count: int
    messages: list[InboundMessage]  # newest first
    any_customer_waiting: int  # waiting tasks bound to no customer: any message of anyone may fire them


def customer_view(customer_id: str, message_limit: int = 50) -> CustomerView:
    with session_scope() as session:
        active = session.scalars(select(Task).where(Task.customer_id == customer_id, Task.status.in_(ACTIVE))
                                 .order_by(Task.created_at, Task.task_id).limit(200)).all()
        finished = session.scalar(select(func.count()).select_from(Task).where(
            Task.customer_id == customer_id, Task.status.in_(states.TERMINAL)))
        messages = session.scalars(select(InboundMessage).where(InboundMessage.from_id == customer_id)
                                   .order_by(InboundMessage.received_at.desc(), InboundMessage.id.desc())
                                   .limit(message_limit)).all()
        anyone = session.scalar(select(func.count()).select_from(Task).where(
            Task.customer_id.is_(None), Task.status == states.WAITING))
    return CustomerView(customer_id, list(active), finished or 0, list(messages), anyone or 0)


def find_dispatches(status: str | None = None, customer_id: str | None = None, page: int = 1,
                    page_size: int = PAGE_SIZE) -> Page:
    """Dispatches newest first, each as (dispatch, its steps in workflow order)."""
    where = [column == value for column, value in ((Dispatch.status, status), (Dispatch.customer_id, customer_id))
             if value]
    with session_scope() as session:
        rows, total = _paged(session, Dispatch, where, (Dispatch.created_at.desc(), Dispatch.dispatch_id),
                             page, page_size)
        steps = _steps(session, [d.dispatch_id for d in rows])
    return Page([(d, steps.get(d.dispatch_id, [])) for d in rows], page, page_size, total)


def _steps(session, dispatch_ids: list[str]) -> dict[str, list[DispatchStep]]:
    found: dict[str, list[DispatchStep]] = {}
    if dispatch_ids:
        for step in session.scalars(select(DispatchStep).where(DispatchStep.dispatch_id.in_(dispatch_ids))
                                    .order_by(DispatchStep.id)):
            found.setdefault(step.dispatch_id, []).append(step)
    return found


def failed_since(since: datetime, limit: int = 20) -> tuple[int, list[Task]]:
    """How many tasks failed since `since` (naive UTC), and the latest `limit` of them."""
    where = (Task.status == states.FAILED, Task.completed_at >= since)
    with session_scope() as session:
        count = session.scalar(select(func.count()).select_from(Task).where(*where))
        rows = session.scalars(select(Task).where(*where).order_by(Task.completed_at.desc()).limit(limit)).all()
    return count or 0, list(rows)


def callback_task(event_id: str) -> str | None:
    """The task a callback reports on."""
    with session_scope() as session:
        row = session.get(CallbackOutbox, event_id)
        return row.task_id if row is not None else None
