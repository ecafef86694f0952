"""What beat runs and how often: pure data, keyed by task name (DESIGN.md "beat")."""
from datetime import timedelta

BEAT_SCHEDULE = {
    "maintenance.tick": {"task": "maintenance.tick", "schedule": timedelta(seconds=0.5),
                         "options": {"queue": "maintenance", "expires": 5}},
    "maintenance.upkeep": {"task": "maintenance.upkeep", "schedule": timedelta(seconds=5),
                           "options": {"queue": "maintenance", "expires": 30}},
    # Old finished tasks and inbound messages purged, a second's worth of small batches at a time.
    "maintenance.retention": {"task": "maintenance.retention", "schedule": timedelta(seconds=10),
                              "options": {"queue": "maintenance", "expires": 30}},
    # Dispatches due again: a designer re-check (every DISPATCH_WAIT_RETRY_SECONDS), a lapsed lease.
    "dispatch.sweep": {"task": "dispatch.sweep", "schedule": timedelta(seconds=10),
                       "options": {"queue": "maintenance", "expires": 30}},
}
