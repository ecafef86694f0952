"""maintenance.tick, maintenance.upkeep and maintenance.retention: beat's sweeps, one acting beat at a time."""
import logging

from celery import shared_task

from app import runtime
from app.infra import heartbeat
from app.infra.locks import RedisLock, first_in_period
from app.services import maintenance, registration, retention
from app.state import counts
from beat_schedule import BEAT_SCHEDULE

log = logging.getLogger(__name__)
FULL_RECONCILE_EVERY = 300.0  # seconds; drift seen at two checks in a row triggers one sooner
UPKEEP_EVERY = BEAT_SCHEDULE["maintenance.upkeep"]["schedule"].total_seconds()
# Beat's sweeps (these and dispatch.sweep) send no task events (Celery's per-task `send_events`):
# twice a second they would bury every action in Flower's task list. Other tasks still send them.


def _exclusive(name: str, ttl_ms: int) -> bool:
    """One run per period however many beats (or duplicate messages) there are."""
    rt = runtime.current()
    return first_in_period(rt.redis, rt.keys.lock(name), ttl_ms)


@shared_task(name="maintenance.tick", ignore_result=True, send_events=False)
def tick() -> dict | None:
    """Due timers, deadlines, lapsed action leases, due callbacks, undrained inboxes (every half second)."""
    rt = runtime.current()
    # Held for the whole sweep, so sweeps don't overlap; its TTL only matters when a worker dies
    # mid-sweep, and then the next sweep may start 5 s later (an overlap is harmless: claims are CAS).
    alone = RedisLock(rt.redis, rt.keys.lock("tick"), ttl_ms=5_000)
    if not alone.acquire():
        return None
    try:
        heartbeat.beat(rt.redis, rt.keys, "beat")
        return {
            "timers_fired": maintenance.fire_due_timers(),
            "timed_out": maintenance.expire_deadlines(),
            "redriven": maintenance.redrive_lapsed_leases(),
            "callbacks_due": maintenance.wake_due_callbacks(),
            "inbox_items_returned": maintenance.wake_waiting_inboxes(),
        }
    finally:
        alone.release()


@shared_task(name="maintenance.upkeep", ignore_result=True, send_events=False)
def upkeep() -> dict | None:
    """The Redis index reconciled with SQL; lost matches handed over again; the task counts folded."""
    if not _exclusive("upkeep", 4000):
        return None
    rt = runtime.current()
    done = {}
    built = rt.registry.is_built()
    full_due = _exclusive("reconcile-full", int(FULL_RECONCILE_EVERY * 1000))
    if full_due or not built or registration.index_drift_persists(UPKEEP_EVERY):
        done["reconcile"] = registration.reconcile()
    # Messages matched against an incomplete index (Redis restarted empty) go again as soon as it is whole.
    done["matches_redriven"] = maintenance.redrive_lost_matches(
        0.0 if not built else maintenance.MATCH_REDRIVE_SECONDS)
    done["counts_folded"] = counts.fold()  # keeps what /metrics and /api/task/stats add up small
    return done


@shared_task(name="maintenance.retention", ignore_result=True, send_events=False)
def purge_old() -> dict | None:
    """Finished tasks past RETENTION_DAYS and inbound messages past MESSAGE_RETENTION_DAYS, in small batches."""
    if not _exclusive("retention", 9000):
        return None
    settings = runtime.current().settings
    return retention.sweep(settings.retention_days, settings.message_retention_days)
