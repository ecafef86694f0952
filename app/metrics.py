"""`/metrics` in Prometheus text format, computed at scrape time from SQL and Redis.

Reading the shared stores (not per-process memory) keeps the figures right however many gunicorn
workers, Celery processes and hosts there are.
"""
from __future__ import annotations

import logging
import math

from flask import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from redis import RedisError
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from app import health, readings, runtime, stats
from app.queueing import INBOXES
from app.domain import states
from app.domain.triggers import TIME_REACH
from app.infra import heartbeat
from app.infra.db import session_scope
from app.infra.timeutil import utcnow
from app.models import Task

log = logging.getLogger(__name__)
LISTENER_COUNTERS = ("received", "duplicates", "malformed", "unknown", "reconnects", "sends")
SEND_RESULTS = {"send_ok": "ok", "send_failed": "refused", "send_timeouts": "no_answer"}
HEARTBEATS = ("beat", "listener")
# Each part reads one store; when that store is down its families are left out of the scrape (rather
# than reported as zeros), and tianwang_dependency_up says which store it is.
SECTIONS = ("_dependencies", "_tasks", "_timers", "_latency", "_queues", "_heartbeats", "_listener",
            "_callbacks", "_dispatches")


class BridgeCollector:
    def collect(self):
        for section in SECTIONS:
            try:
                families = list(getattr(self, section)())
            except (SQLAlchemyError, RedisError, OSError) as exc:
                log.warning("metrics: %s left out of this scrape: %s", section.strip("_"), type(exc).__name__)
                continue
            yield from families

    def _dependencies(self):
        up = GaugeMetricFamily("tianwang_dependency_up", "1 when the dependency answered this scrape",
                               labels=["dependency"])
        for name in health.DEPENDENCIES:
            up.add_metric([name], 1.0 if health.answers(name) else 0.0)
        yield up

    def _tasks(self):
        counts = readings.task_totals()
        received = CounterMetricFamily("tianwang_tasks_received", "Tasks received from 天网")
        received.add_metric([], counts.received)
        yield received
        by_status = GaugeMetricFamily("tianwang_tasks", "Tasks by status (finished ones until retention purges them)",
                                      labels=["status"])
        for status in states.STATUSES:
            by_status.add_metric([status], counts.by_status[status])
        yield by_status
        moves = CounterMetricFamily("tianwang_task_transitions",
                                    "Moves of tasks into each status; purges never lower it (rates of endings)",
                                    labels=["status"])
        for status in states.STATUSES:
            moves.add_metric([status], counts.entered[status])
        yield moves

    def _timers(self):
        """Timers whose time has come but which beat has not fired yet: how many, and how late the
        oldest is (0 when none). Read through the (status, due_at) index."""
        now = utcnow()
        with session_scope() as session:
            count, oldest = session.execute(
                select(func.count(), func.min(Task.due_at)).where(
                    Task.status == states.WAITING, Task.due_at <= now, Task.trigger_type == TIME_REACH)).one()
        overdue = GaugeMetricFamily("tianwang_timers_overdue", "Waiting time_reach tasks past their time")
        overdue.add_metric([], count)
        yield overdue
        late = GaugeMetricFamily("tianwang_timers_overdue_seconds",
                                 "How late the oldest waiting time_reach task past its time is (0 when none)")
        late.add_metric([], (now - oldest).total_seconds() if oldest else 0.0)
        yield late

    def _latency(self):
        raw = stats.read("firing_latency")
        buckets, running = [], 0.0
        for bound in stats.LATENCY_BUCKETS:
            running += raw.get(str(bound), 0.0)
            buckets.append((str(bound), running))
        running += raw.get("+Inf", 0.0)
        buckets.append(("+Inf", running))
        yield HistogramMetricFamily("tianwang_firing_latency_seconds",
                                    "From a customer message arriving to its task's action done",
                                    buckets=buckets, sum_value=raw.get("sum", 0.0))

    def _queues(self):
        from celeryconfig import QUEUE_ORDER

        depth = GaugeMetricFamily("tianwang_queue_depth", "Messages waiting in each Celery queue, and items waiting "
                                  "in each inbox the listener fills (queue=\"inbox:match\", \"inbox:answers\")",
                                  labels=["queue"])
        for queue, length in readings.queue_depths(QUEUE_ORDER, INBOXES).items():
            depth.add_metric([queue], length)
        yield depth
        lag = GaugeMetricFamily("tianwang_queue_lag_seconds",
                                "How long the oldest message in each Celery queue has waited (0 when empty)",
                                labels=["queue"])
        for queue, seconds in stats.queue_lag(QUEUE_ORDER).items():
            lag.add_metric([queue], seconds)
        yield lag

    def _heartbeats(self):
        rt = runtime.current()
        age = GaugeMetricFamily("tianwang_heartbeat_age_seconds",
                                f"Seconds since the process last beat (+Inf: not within {heartbeat.TTL_SECONDS} s); "
                                "beat's is stamped by the tick a worker runs for it", labels=["process"])
        for name in HEARTBEATS:
            seen = heartbeat.age(rt.redis, rt.keys, name)
            age.add_metric([name], math.inf if seen is None else seen)
        yield age

    def _listener(self):
        raw = stats.read("listener")
        connected = GaugeMetricFamily("tianwang_listener_connected", "1 while the active listener holds the 轻简 socket")
        rt = runtime.current()
        alive = heartbeat.age(rt.redis, rt.keys, "listener") is not None
        connected.add_metric([], raw.get("connected", 0.0) if alive else 0.0)  # a killed listener can't say 0
        yield connected
        events = CounterMetricFamily("tianwang_listener_events", "Listener events by kind", labels=["kind"])
        for kind in LISTENER_COUNTERS:
            events.add_metric([kind], raw.get(kind, 0.0))
        yield events
        matched = CounterMetricFamily("tianwang_events_matched", "Inbound events run through matching")
        matched.add_metric([], stats.read("match").get("events", 0.0))
        yield matched
        sends = CounterMetricFamily("tianwang_send_results", "轻简 send results", labels=["result"])
        for field, result in SEND_RESULTS.items():
            sends.add_metric([result], raw.get(field, 0.0))
        yield sends

    def _callbacks(self):
        backlog = readings.callback_backlog()
        rows = GaugeMetricFamily("tianwang_callbacks", "Callback outbox rows by state", labels=["state"])
        for state, count in backlog.by_state.items():
            rows.add_metric([state], count)
        yield rows
        raw = stats.read("callbacks")
        total = CounterMetricFamily("tianwang_callback_attempts", "Callback delivery attempts")
        total.add_metric([], backlog.attempts)
        yield total
        failures = CounterMetricFamily("tianwang_callback_failures", "Failed callback attempts", labels=["kind"])
        for kind in ("retryable", "rejected"):
            failures.add_metric([kind], raw.get(kind, 0.0))
        yield failures
        age = GaugeMetricFamily("tianwang_callback_oldest_undelivered_age_seconds",
                                "Age of the oldest callback not yet delivered (0 when none)")
        oldest = backlog.oldest
        age.add_metric([], (utcnow() - oldest.created_at).total_seconds() if oldest else 0.0)
        yield age

    def _dispatches(self):
        outcomes = GaugeMetricFamily("tianwang_dispatches", "Dispatches to designers by status", labels=["status"])
        for status, count in readings.dispatch_counts().items():
            outcomes.add_metric([status], count)
        yield outcomes


_registry = CollectorRegistry(auto_describe=False)
_registry.register(BridgeCollector())


def metrics_view() -> Response:
    return Response(generate_latest(_registry), content_type=CONTENT_TYPE_LATEST)
