"""Delivering the callback outbox to 天网: at least once, each row by one sender at a time.

A status change's commit wakes one `callbacks.flush` (unless one is already queued) on the `callbacks`
queue, which has a worker of its own (a slow 天网 never holds the processes that fire tasks). A flush
claims the due rows in batches with one UPDATE … RETURNING, posts a batch on a small thread pool
(CALLBACK_CONCURRENCY posts at once) and settles it in one transaction. Retries are rows with a later
`next_attempt_at`; beat's tick wakes a flush whenever rows are due.

Claims are owned and outlive the work done under them (DESIGN.md rule 10):
- a claim writes its expiry (`now` + the claim window, to the microsecond) into each row's
  `next_attempt_at`; that value is the claim's token, and only rows still carrying it are settled, so a
  row whose claim lapsed and was re-claimed by another flush is never overwritten by the first;
- no post starts after the flush's time budget (CALLBACK_FLUSH_SECONDS) and none is waited for longer
  than CALLBACK_TIMEOUT_SECONDS, so a claim is settled at most budget + timeout after it was made: the
  claim window is that plus a margin, and a row is never re-claimed while its post may be under way.
  Rows the budget left unposted are handed back, due at once, their attempt not counted.
"""
from __future__ import annotations

import logging
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta

import requests
from sqlalchemy import func, select, update

from app import queueing, runtime, stats
from app.clients import tianwang
from app.domain import backoff
from app.infra.db import session_scope
from app.infra.timeutil import utcnow
from app.models import CallbackOutbox
from app.state import tasks as task_states

log = logging.getLogger(__name__)

BATCH = 200  # rows per claim; a flush claims batches until its budget is spent
CLAIM_MARGIN_SECONDS = 10.0  # the SQL of a claim and its settle, and clock skew between hosts
WAKE_TTL_SECONDS = 5  # a flush asked for but lost (dead worker) blocks new ones this long at most


@dataclass(frozen=True)
class Limits:
    budget: float  # seconds after the flush began when no further post starts
    post_timeout: float  # seconds a post is waited for
    concurrency: int  # posts under way at once

    @classmethod
    def from_settings(cls, settings) -> "Limits":
        return cls(settings.callback_flush_seconds, settings.callback_timeout_seconds,
                   settings.callback_concurrency)

    @property
    def claim_window(self) -> timedelta:
        """How long a claim holds: a batch is claimed after the flush began, its posts start within the
        budget and are waited for at most post_timeout each, then it is settled."""
        return timedelta(seconds=self.budget + self.post_timeout + CLAIM_MARGIN_SECONDS)


@dataclass(frozen=True)
class Claim:
    token: datetime  # the claim's expiry, written into each claimed row's next_attempt_at
    rows: list


@dataclass(frozen=True)
class Delivery:
    event_id: str
    task_id: str
    status: str
    attempts: int
    state: str  # delivered | failed | retry (after retry_in) | unsent | released (not posted)
    error: str | None = None
    retry_in: float | None = None


def wake() -> None:
    """Ask for a flush, unless one is already queued (commits in a burst share one flush)."""
    rt = runtime.current()
    if rt.redis.set(rt.keys.callback_flush_queued, 1, nx=True, ex=WAKE_TTL_SECONDS):
        queueing.enqueue_callback_flush()


def flush() -> dict:
    """Deliver the callbacks that are due, batch after batch, until none is due or the budget is spent.

    The wake flag stays set while this runs, so commits meanwhile queue no other flush (at a steady rate
    that would be one flush per commit): their rows are claimed by the next batch here. Once none is
    due, the flag is cleared and the outbox looked at once more, so a row committed just before that is
    either claimed here or finds the flag cleared and wakes a new flush. Returns counts by outcome, and
    `more` (with the flag cleared, so the caller's wake queues the next flush) when rows may be left due.
    """
    rt = runtime.current()
    flag = rt.keys.callback_flush_queued
    limits = Limits.from_settings(rt.settings)
    deadline = time.monotonic() + limits.budget
    counts: dict = {}
    while time.monotonic() < deadline:
        rt.redis.set(flag, 1, ex=WAKE_TTL_SECONDS)  # still flushing
        claim = claim_due(BATCH, limits.claim_window)
        if not claim.rows:
            rt.redis.delete(flag)
            claim = claim_due(BATCH, limits.claim_window)  # the last look
            if not claim.rows:
                return counts
        outcomes = settle(claim, deliver(claim.rows, deadline, limits))
        # /metrics counts attempts here: summing the outbox's column would scan it
        stats.incr("callbacks", "attempts", sum(1 for o in outcomes if o.state != "released"))
        for outcome in outcomes:
            counts[outcome.state] = counts.get(outcome.state, 0) + 1
        if counts.get("released"):
            break
    rt.redis.delete(flag)
    counts["more"] = True
    return counts


def claim_due(limit: int, window: timedelta) -> Claim:
    """Due pending rows, claimed in one compare-and-set until `window` from now: each by one sender.

    The due rows' ids are read first and the claim names them: as one statement (`IN (SELECT … LIMIT)`),
    PostgreSQL planned it from the statistics of an outbox that had been empty, re-ran the sub-select for
    every due row, and a backlog of a few hundred rows cost 50-1,000 ms a claim. The update's own
    conditions are the compare-and-set: a row another sender claimed in between is not due any more."""
    now = utcnow()
    token = now + window
    with session_scope() as session:
        due = list(session.scalars(
            select(CallbackOutbox.event_id)
            .where(CallbackOutbox.state == "pending", CallbackOutbox.next_attempt_at <= now)
            .order_by(CallbackOutbox.next_attempt_at).limit(limit)))
        if not due:
            return Claim(token, [])
        rows = session.execute(
            update(CallbackOutbox)
            .where(CallbackOutbox.event_id.in_(due), CallbackOutbox.state == "pending",
                   CallbackOutbox.next_attempt_at <= now)
            .values(attempts=CallbackOutbox.attempts + 1, next_attempt_at=token)
            .returning(CallbackOutbox.event_id, CallbackOutbox.task_id, CallbackOutbox.status,
                       CallbackOutbox.body, CallbackOutbox.attempts, CallbackOutbox.created_at)
            .execution_options(synchronize_session=False)).all()
    return Claim(token, rows)


def deliver(rows: list, deadline: float, limits: Limits) -> list[Delivery]:
    """Post the rows, `limits.concurrency` at a time; none starts after `deadline` (time.monotonic)."""
    if not runtime.current().settings.callback_url:
        return [_outcome(row, "unsent") for row in rows]
    pool = _pool(limits.concurrency)
    futures = {pool.submit(_post_unless_late, row, deadline, limits.post_timeout): row for row in rows}
    finished, _ = wait(futures, timeout=max(0.0, deadline - time.monotonic()) + limits.post_timeout)
    outcomes = []
    for future, row in futures.items():
        if future in finished:
            outcomes.append(future.result())
        elif future.cancel():
            outcomes.append(_outcome(row, "released"))
        else:  # still under way past its timeout: its outcome is unknown, so it is tried again
            outcomes.append(_retry(row, f"no answer within {limits.post_timeout:g}s"))
    return outcomes


def settle(claim: Claim, outcomes: list[Delivery]) -> list[Delivery]:
    """The outcomes of the rows this claim still owns, in one transaction; attempts (not released rows)
    get a line in their task's history. Returns the outcomes written."""
    now = utcnow()
    with session_scope() as session:
        # Locks the owned rows (PostgreSQL; SQLite's BEGIN IMMEDIATE holds the database) until commit.
        owned = set(session.scalars(
            select(CallbackOutbox.event_id)
            .where(CallbackOutbox.event_id.in_([o.event_id for o in outcomes]),
                   CallbackOutbox.state == "pending", CallbackOutbox.next_attempt_at == claim.token)
            .with_for_update()))
        mine = [o for o in outcomes if o.event_id in owned]
        released = [{"event_id": o.event_id, "attempts": o.attempts - 1, "next_attempt_at": now}
                    for o in mine if o.state == "released"]
        attempted = [o for o in mine if o.state != "released"]
        if released:
            session.execute(update(CallbackOutbox), released)
        if attempted:
            session.execute(update(CallbackOutbox), [{
                "event_id": o.event_id, "state": "pending" if o.state == "retry" else o.state,
                "last_error": o.error, "delivered_at": now if o.state == "delivered" else None,
                "next_attempt_at": now + timedelta(seconds=o.retry_in or 0),
            } for o in attempted])
        for o in attempted:
            task_states.record(session, o.task_id, "callback", {
                "event_id": o.event_id, "status": o.status, "outcome": o.state, "attempts": o.attempts,
                **({"error": o.error} if o.error else {}),
                **({"retry_in": round(o.retry_in, 1)} if o.retry_in is not None else {})}, now=now)
    if len(mine) < len(outcomes):
        log.warning("%d callbacks were claimed again by another flush before this one settled them; "
                    "their outcomes here are dropped", len(outcomes) - len(mine), extra={"event": "claim_lost"})
    return mine


def due_count() -> int:
    """How many pending rows are due now (beat wakes a flush when there are any)."""
    with session_scope() as session:
        return int(session.scalar(
            select(func.count()).select_from(CallbackOutbox)
            .where(CallbackOutbox.state == "pending", CallbackOutbox.next_attempt_at <= utcnow())) or 0)


# -- one post -----------------------------------------------------------------------------------

def _outcome(row, state: str, **more) -> Delivery:
    return Delivery(event_id=row.event_id, task_id=row.task_id, status=row.status, attempts=row.attempts,
                    state=state, **more)


def _post_unless_late(row, deadline: float, timeout: float) -> Delivery:
    if time.monotonic() >= deadline:
        return _outcome(row, "released")
    settings = runtime.current().settings
    try:
        tianwang.post(_session(), settings.callback_url, row.event_id, row.body, settings.callback_secret,
                      timeout=timeout)
    except tianwang.CallbackRejected as exc:
        stats.incr("callbacks", "rejected")
        log.warning("callback %s for task %s rejected: %s", row.event_id, row.task_id, exc,
                    extra={"task_id": row.task_id, "event": "callback_rejected"})
        return _outcome(row, "failed", error=str(exc))
    except tianwang.CallbackRetryable as exc:
        stats.incr("callbacks", "retryable")
        return _retry(row, str(exc))
    return _outcome(row, "delivered")


def _retry(row, error: str) -> Delivery:
    settings = runtime.current().settings
    if utcnow() - row.created_at >= timedelta(hours=settings.callback_max_age_hours):
        log.error("callback %s for task %s given up after %d attempts: %s", row.event_id, row.task_id,
                  row.attempts, error, extra={"task_id": row.task_id, "event": "callback_expired"})
        return _outcome(row, "failed", error=f"gave up after {settings.callback_max_age_hours:g}h: {error}")
    # 1, 2, 4 … s after the first, second, third attempt, up to CALLBACK_RETRY_MAX_SECONDS
    delay = backoff.exponential(row.attempts - 1, random.random(), first=1.0,
                                cap=settings.callback_retry_max_seconds)
    log.info("callback %s for task %s: %s; retry in %.1fs", row.event_id, row.task_id, error, delay,
             extra={"task_id": row.task_id, "event": "callback_retry"})
    return _outcome(row, "retry", error=error, retry_in=delay)


# A pool per process, made on first use (after a prefork worker forked), and a keep-alive session per
# pool thread (a requests.Session is not meant to be shared between threads).
_pool_lock = threading.Lock()
_executor: tuple[int, ThreadPoolExecutor] | None = None
_local = threading.local()


def _pool(size: int) -> ThreadPoolExecutor:
    global _executor
    with _pool_lock:
        if _executor is None or _executor[0] != size:
            if _executor is not None:
                _executor[1].shutdown(wait=False)
            _executor = (size, ThreadPoolExecutor(max_workers=size, thread_name_prefix="callback-post"))
        return _executor[1]


def _session() -> requests.Session:
    if getattr(_local, "session", None) is None:
        _local.session = requests.Session()
    return _local.session


def _forget_pool_after_fork() -> None:
    global _executor, _pool_lock
    _executor, _pool_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_pool_after_fork)
