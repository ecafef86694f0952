"""Every Redis key the service writes, named in one place (Celery's own queue keys are Celery's).

All of them start with REDIS_PREFIX (default `tw:`), so several deployments can share one Redis:

  spec                  hash  task_id -> compiled trigger spec (app.domain.triggers.TriggerSpec)
  ix:<kind>:<value>     set   the index of waiting tasks: cust (customer), kw (keyword), evt (payment|order),
                              ce (custom event name)
  ix:kws, ix:kwlens     set   every indexed keyword, and every keyword length (the probes a text needs)
  recent:<customer>     zset  that customer's messages of the last hour (lookback); recent:* everybody's
  ix:built              str   the index is complete (set by a full reconciliation; gone when Redis lost it)
  seen:<source>:<msg_id> str  a msg_id already accepted from that 轻简 (de-duplication, 24 h)
  lane:<acc>:<customer> list  the customer's actions in the order their messages arrived (app.lanes)
  qj:out                stream  sends handed to the listener; qj:queued:<req> (once per req_id),
                              qj:fate:<req> (sent, or abandoned by its worker: it must never leave),
                              qj:result:<req> (its send_result), qj:wake:<req> (wakes a waiting worker)
  inbox:<name>          list  work the listener hands over, drained in batches (app.infra.inbox): match (inbound
                              events), answers (轻简's send_results); :taken/:due (batches a drain holds, and
                              when they go back), :woken:<slot> (a drain is queued or running)
  hb:<process>          str   heartbeats (listener, beat)
  lock:<name>           str   locks (listener leadership per 轻简 URL, beat's sweeps)
  stats:<name>          hash  counters shared by every process (app.stats)
  callbacks:flush-queued str  a callback flush is queued (commits in a burst share it)
  console:fails:<kind>:<v> str  failed console sign-ins of a user name or a client address (15 min)
  rl:LIMITER/...        str   rate-limit counters (Flask-Limiter's sliding windows; app.api.ratelimits)
"""
from __future__ import annotations


class Keys:
    def __init__(self, prefix: str = "tw:"):
        self.prefix = prefix
        self.spec = f"{prefix}spec"
        self.keywords = f"{prefix}ix:kws"
        self.keyword_lengths = f"{prefix}ix:kwlens"
        self.index_pattern = f"{prefix}ix:*"
        self.index_built = f"{prefix}ix:built"
        self.send_stream = f"{prefix}qj:out"
        self.callback_flush_queued = f"{prefix}callbacks:flush-queued"
        self.rate_limits = f"{prefix}rl"  # the `limits` library adds ":LIMITER/<who>/<scope>/..."

    def index(self, kind: str, value: str) -> str:
        return f"{self.prefix}ix:{kind}:{value}"

    def recent(self, customer_id: str | None) -> str:
        """A customer's recent messages, or everybody's (`None`)."""
        return f"{self.prefix}recent:{customer_id if customer_id else '*'}"

    def seen(self, source: str, msg_id: str) -> str:
        return f"{self.prefix}seen:{source}:{msg_id}"

    def lane(self, acc_id: str | None, customer_id: str) -> str:
        return f"{self.prefix}lane:{acc_id or ''}:{customer_id}"

    def send_fate(self, req_id: str) -> str:
        return f"{self.prefix}qj:fate:{req_id}"

    def send_queued(self, req_id: str) -> str:
        return f"{self.prefix}qj:queued:{req_id}"

    def send_result(self, req_id: str) -> str:
        return f"{self.prefix}qj:result:{req_id}"

    def send_wake(self, req_id: str) -> str:
        return f"{self.prefix}qj:wake:{req_id}"

    def inbox(self, name: str) -> str:
        return f"{self.prefix}inbox:{name}"

    def inbox_woken(self, name: str, slot: int) -> str:
        return f"{self.prefix}inbox:{name}:woken:{slot}"

    def heartbeat(self, process: str) -> str:
        return f"{self.prefix}hb:{process}"

    def lock(self, name: str) -> str:
        return f"{self.prefix}lock:{name}"

    def stats(self, name: str) -> str:
        return f"{self.prefix}stats:{name}"

    def login_failures(self, kind: str, value: str) -> str:
        return f"{self.prefix}console:fails:{kind}:{value}"
