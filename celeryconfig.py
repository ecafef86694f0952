"""Celery settings shared by every worker and beat (broker URLs come from the environment via the app)."""
from kombu import Queue

from beat_schedule import BEAT_SCHEDULE

# Queues in the order a worker should drain them: beat's sweeps first (short, and timers must not
# wait behind a backlog), then actions under way (finish what has started), matching, callbacks,
# dispatches. Priority among the tasks one message fires is their order in the customer's lane.
QUEUE_ORDER = ("maintenance", "actions", "match", "callbacks", "dispatch")

task_queues = [Queue(name) for name in QUEUE_ORDER]
task_default_queue = "maintenance"
include = ["workers.tasks.messages", "workers.tasks.actions", "workers.tasks.callbacks",
           "workers.tasks.maintenance", "workers.tasks.dispatch"]
task_routes = {
    "messages.*": {"queue": "match"},
    "actions.*": {"queue": "actions"},
    "tasks.*": {"queue": "actions"},
    "callbacks.*": {"queue": "callbacks"},
    "dispatch.*": {"queue": "dispatch"},
    "maintenance.*": {"queue": "maintenance"},
}
# DESIGN.md rule 3: redelivered if a worker dies mid-task, one message at a time per process.
task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1
task_ignore_result = True
task_serializer = "json"
accept_content = ["json"]
# With several queues, take from the first non-empty one in QUEUE_ORDER (kombu's "priority" order)
# rather than round-robin, so urgent actions overtake low ones.
broker_transport_options = {"queue_order_strategy": "priority", "visibility_timeout": 3600}
broker_connection_retry_on_startup = True
worker_send_task_events = True  # Flower shows tasks (received, started, succeeded, retried, failed)
# No "sent" events: publishing one per enqueue doubled the cost of every send_task on the hot path.
task_send_sent_event = False
beat_schedule = BEAT_SCHEDULE
timezone = "UTC"
