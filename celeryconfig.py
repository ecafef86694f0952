"""Celery settings shared by every worker and beat (broker URLs come from the environment via the app)."""
from kombu import Exchange, Queue

from beat_schedule import BEAT_SCHEDULE

# Queues in the order a worker should drain them: beat's sweeps first (short, and timers must not
# wait behind a backlog), then actions under way (finish what has started), matching, callbacks,
# dispatches. Priority among the tasks one message fires is their order in the customer's lane.
QUEUE_ORDER = ("maintenance", "actions", "match", "callbacks", "dispatch")

# One direct exchange; each queue is bound to it under its own name, so a message routed to
# "actions" is published to exchange "tianwang" with routing key "actions" and lands in
# that queue only (kombu's implicit default would make one exchange per queue, named after it).
EXCHANGE = Exchange("tianwang", type="direct")
task_queues = [Queue(name, EXCHANGE, routing_key=name) for name in QUEUE_ORDER]
task_default_queue = "maintenance"
task_default_exchange = EXCHANGE.name
task_default_exchange_type = EXCHANGE.type
task_default_routing_key = "maintenance"
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
# rather than round-robin, so beat's sweeps and actions under way go first.
# The visibility timeout: how long the Redis transport leaves a message a worker took (and did not
# acknowledge) before giving it to another worker. It must outlast the longest countdown a worker holds
# (an autoretry: 30 s at most) plus the longest task (a dispatch's steps: about a minute), or a message
# would run twice while the first run is alive. It is not what recovers a killed worker's work: matching
# is re-driven from SQL after 15 s, an action when its lease lapses, a dispatch when its lease does, a
# callback when its claim does; the message itself only comes back, harmlessly, after this.
broker_transport_options = {"queue_order_strategy": "priority", "visibility_timeout": 300}
broker_connection_retry_on_startup = True
worker_send_task_events = True  # Flower shows tasks (received, started, succeeded, retried, failed)
# No "sent" events: publishing one per enqueue doubled the cost of every send_task on the hot path.
task_send_sent_event = False
beat_schedule = BEAT_SCHEDULE
# Beat keeps its schedule in memory, not in a shelve file: every entry repeats within seconds, so
# there is nothing worth persisting, and beat then runs from a fresh clone or on a read-only
# filesystem (systemd's ProtectSystem=strict, a container) with no folder to create first.
beat_scheduler = "celery.beat:Scheduler"
timezone = "UTC"
