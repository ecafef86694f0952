"""What beat runs and how often: pure data, keyed by task name (DESIGN.md "beat")."""
from datetime import timedelta

BEAT_SCHEDULE = {
    "maintenance.tick": {"task": "maintenance.tick", "schedule": timedelta(seconds=0.5),
                         "options": {"queue": "maintenance", "expires": 5}},
    "maintenance.upkeep": {"task": "maintenance.upkeep", "schedule": timedelta(seconds=5),
                           "options": {"queue": "maintenance", "expires": 30}},
}
