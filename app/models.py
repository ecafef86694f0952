"""SQL tables: tasks, their history, the callback outbox, dispatches, inbound messages, the task counts.
SQL is the truth; Redis is rebuilt from it.

Times are stored as naive UTC datetimes (SQLite has no time zones); `app.infra.timeutil` converts at the edges.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from app.infra.timeutil import utcnow


class Base(DeclarativeBase):
    pass


class Task(Base):
    __tablename__ = "tasks"

    # The columns of the legacy schema (seed 000) ...
    task_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    type: Mapped[str] = mapped_column(String(64))
    customer_id: Mapped[str | None] = mapped_column(String(128), index=True)
    customer_name: Mapped[str | None] = mapped_column(String(128))
    specified_customer_id: Mapped[str | None] = mapped_column(String(128))
    specified_customer_name: Mapped[str | None] = mapped_column(String(128))
    trigger_type: Mapped[str] = mapped_column(String(32), index=True)
    trigger_keyword: Mapped[str | None] = mapped_column(Text)
    trigger_keywords: Mapped[list | None] = mapped_column(JSON)
    action_type: Mapped[str] = mapped_column(String(32))
    action_file_url: Mapped[str | None] = mapped_column(Text)
    action_message: Mapped[str | None] = mapped_column(Text)
    priority: Mapped[str] = mapped_column(String(8), default="normal")
    timeout_hours: Mapped[float] = mapped_column(Float, default=24.0)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    retry_count: Mapped[int] = mapped_column(Integer, default=0)
    max_retry: Mapped[int] = mapped_column(Integer, default=3)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    created_by: Mapped[str | None] = mapped_column(String(128))
    triggered_at: Mapped[datetime | None] = mapped_column(DateTime)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime)
    error_message: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict | None] = mapped_column(JSON)
    # ... and what the contract needs beyond them.
    acc_id: Mapped[str | None] = mapped_column(String(128))
    trigger: Mapped[dict] = mapped_column(JSON)
    action: Mapped[dict] = mapped_column(JSON)
    raw: Mapped[dict] = mapped_column(JSON)  # the body as received, unknown fields included
    body_hash: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    due_at: Mapped[datetime | None] = mapped_column(DateTime)  # time_reach only
    triggered_by: Mapped[dict | None] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    # Action bookkeeping: which steps 轻简 acknowledged, and who holds the task while it runs.
    progress: Mapped[dict | None] = mapped_column(JSON)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime)
    # An operator's retry or re-arm: since when the task listens again (lookback counts from here), and
    # the attempt its fresh set of retries starts at (attempt numbers keep growing, so req_ids stay unique).
    armed_at: Mapped[datetime | None] = mapped_column(DateTime)
    attempt_base: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    __table_args__ = (
        Index("ix_tasks_status_due", "status", "due_at"),
        Index("ix_tasks_status_expires", "status", "expires_at"),
        Index("ix_tasks_status_lease", "status", "lease_expires_at"),
        Index("ix_tasks_status_updated", "status", "updated_at"),  # retention: the oldest finished first
    )


class TaskEvent(Base):
    """One line of a task's history: a state change, an attempt, a send, a callback."""

    __tablename__ = "task_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.task_id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    kind: Mapped[str] = mapped_column(String(32))
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str | None] = mapped_column(String(16))
    detail: Mapped[dict | None] = mapped_column(JSON)


class CallbackOutbox(Base):
    """A callback owed to 天网, written in the same transaction as the status change that causes it."""

    __tablename__ = "callback_outbox"

    event_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.task_id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16))  # the task status this callback reports
    body: Mapped[str] = mapped_column(Text)  # the exact bytes that are signed and sent
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending|delivered|failed|unsent
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime)

    __table_args__ = (Index("ix_outbox_state_next", "state", "next_attempt_at"),)


class Dispatch(Base):
    """A hand-over to a human designer through 图绘 (CONTRACTS.md §3); from the API or a task's action."""

    __tablename__ = "dispatches"

    dispatch_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    task_id: Mapped[str | None] = mapped_column(
        ForeignKey("tasks.task_id", ondelete="SET NULL"), unique=True)  # one dispatch per task
    customer_id: Mapped[str] = mapped_column(String(128))
    acc_id: Mapped[str | None] = mapped_column(String(128))
    acc_type: Mapped[str | None] = mapped_column(String(64))
    image_url: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    designer: Mapped[str | None] = mapped_column(String(128))
    tuhui_task_id: Mapped[str | None] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(24), default="pending")
    error: Mapped[str | None] = mapped_column(Text)
    notified_offline: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    # When beat should (re-)drive it: the next designer check, or the lapse of the holder's lease.
    # NULL once nothing is left to do.
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime)  # reached assigned or failed
    lease_owner: Mapped[str | None] = mapped_column(String(64))  # the Celery message driving it

    __table_args__ = (
        Index("ix_dispatches_next_attempt", "next_attempt_at"),
        Index("ix_dispatches_customer_status", "customer_id", "status", "completed_at"),
        Index("ix_dispatches_designer_status", "designer", "status"),
    )


class DispatchStep(Base):
    """One step of a dispatch, so that a retry never repeats a finished step."""

    __tablename__ = "dispatch_steps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dispatch_id: Mapped[str] = mapped_column(ForeignKey("dispatches.dispatch_id", ondelete="CASCADE"))
    step: Mapped[str] = mapped_column(String(16))  # find_designer|create|assign|notify|reply
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|done|failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict | None] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    __table_args__ = (UniqueConstraint("dispatch_id", "step", name="uq_dispatch_steps_dispatch_step"),)


class InboundMessage(Base):
    """A customer message or event the listener accepted (after msg_id de-duplication), kept for
    MESSAGE_RETENTION_DAYS. The console and the explain endpoint read it; a message whose match was lost
    (a killed worker, Redis restarted empty) is matched again from here."""

    __tablename__ = "inbound_messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(32))  # which 轻简 (a digest of its URL); "api" for POST /api/event
    msg_id: Mapped[str | None] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))  # message | payment | order | custom
    acc_id: Mapped[str | None] = mapped_column(String(128))
    from_id: Mapped[str | None] = mapped_column(String(128))
    from_name: Mapped[str | None] = mapped_column(String(128))
    msg_type: Mapped[str | None] = mapped_column(String(32))
    content: Mapped[str | None] = mapped_column(Text)  # masked as the logs mask it (phone and ID numbers)
    event: Mapped[str | None] = mapped_column(String(128))  # a custom event's name
    data: Mapped[dict | None] = mapped_column(JSON)  # a custom event's data; a payment's order and amount
    received_at: Mapped[datetime] = mapped_column(DateTime)
    # Handed to matching (again, when re-driven), and matched against a complete index, with what it fired.
    enqueued_at: Mapped[datetime | None] = mapped_column(DateTime)
    matched_at: Mapped[datetime | None] = mapped_column(DateTime)
    fired: Mapped[list | None] = mapped_column(JSON)

    __table_args__ = (
        UniqueConstraint("source", "msg_id", name="uq_inbound_source_msg_id"),
        Index("ix_inbound_customer_received", "from_id", "received_at"),
        Index("ix_inbound_received", "received_at"),
        Index("ix_inbound_unmatched", "matched_at", "enqueued_at"),
    )


class TaskCountDelta(Base):
    """What one transaction did to the task counts (app.state.counts), written in that transaction:
    `tasks` tasks left `from_status` for `to_status` (None: created / purged; `trigger_type` is set then)
    and the callback outbox gained `callbacks` rows (negative: purged). Inserts only, so concurrent
    moves never wait for each other on a counter row; beat folds these into `task_counts`."""

    __tablename__ = "task_count_deltas"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str | None] = mapped_column(String(16))
    trigger_type: Mapped[str | None] = mapped_column(String(32))
    tasks: Mapped[int] = mapped_column(Integer)
    callbacks: Mapped[int] = mapped_column(Integer, default=0)


class TaskCount(Base):
    """The folded totals: `status:<s>`, `trigger:<t>` (tasks now), `entered:<s>` (moves into a status,
    ever), `received` (tasks ever), `callbacks` (outbox rows now). The counts are these plus the deltas."""

    __tablename__ = "task_counts"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    n: Mapped[int] = mapped_column(BigInteger)
