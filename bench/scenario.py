"""The firing scenario the benchmarks share: a live system (the Procfile's processes against a fresh
database and Redis DB, the 轻简 fake the listener connects to, the 天网 fake receiving callbacks), tasks
that wait for their customer's 好的, and the fake's record of when each send frame left.

A message's time in is taken just before the fake pushes its frame to the listener; its time out is the
time the fake recorded the first send frame to that customer (`FakeQingjian.sent[i]["time"]`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import redis

from bench import common, cpu, seeding
from bench.common import wait_until
from devkit import processes

KEYWORD = "好的"
FIRING_TEXT = "好的，谢谢"
WARM_UP = 20  # tasks fired end to end before anything is measured
IDLE = 5.0  # a burst's sends are over once none came for this long with Celery's queues empty


@dataclass
class Live:
    kind: str
    db_url: str
    redis_url: str
    fake: object
    tianwang: object
    system: processes.System
    procs: dict
    api: object  # the app's test client (tasks through the API, in this process)
    first_send: dict = field(default_factory=dict)  # customer -> (index in fake.sent, time) of the first
    scanned: int = 0  # how much of fake.sent first_send has read (each wait reads only what is new)

    @property
    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url)

    def meter(self) -> cpu.Meter:
        return cpu.Meter(self.procs, self.redis, self.db_url)

    def sends(self) -> int:
        with self.fake._cond:
            return len(self.fake.sent)

    def scan_sends(self) -> None:
        with self.fake._cond:
            new = self.fake.sent[self.scanned:]
        for i, s in enumerate(new, self.scanned):
            self.first_send.setdefault(s["data"]["to_id"], (i, s["time"]))
        self.scanned += len(new)

    def callbacks(self, until: float | None = None) -> int:
        """Callbacks 天网 accepted (2xx), all or those received by `until`."""
        with self.tianwang._cond:
            return sum(1 for r in self.tianwang.received if 200 <= r["status"] < 300
                       and (until is None or r["time"] <= until))


def live_system(bench, kind: str, name: str, stack_options: dict | None = None, **env) -> Live:
    """A fresh system with the Procfile's processes (bench.stack.start's options), ready to fire."""
    db_url = common.fresh_db(kind, name)
    url = common.redis_url(common.REDIS_DB_SYSTEM)
    fake, tianwang = bench.fake_qingjian(), bench.fake_tianwang()
    system = bench.system(db_url, url, QINGJIAN_WS_URL=fake.url, TIANWANG_CALLBACK_URL=tianwang.url,
                          TIANWANG_CALLBACK_SECRET=common.CALLBACK_SECRET, **env)
    procs = bench.stack(system, **(stack_options or {}))
    if not fake.wait_for_client(30):
        raise RuntimeError("the listener did not connect to the 轻简 fake\n" + system.dump_logs())
    _, api = seeding.in_process_app(system.env)
    live = Live(kind, db_url, url, fake, tianwang, system, procs, api)
    if "beat" in procs:  # let beat's first sweeps (a full reconciliation) run before any task arrives
        client = live.redis
        wait_until(lambda: client.exists(f"{common.PREFIX}lock:reconcile-full") and not _queued(client), 30, 0.1)
    return live


def reply_task(task_id: str, customer: str, keyword: str = KEYWORD) -> dict:
    """A task that sends one text when `customer` says `keyword`."""
    return {"task_id": task_id, "type": "bench_reply", "customer": {"id": customer},
            "trigger": {"type": "specified_customer_reply", "customer_id": customer, "keyword": keyword},
            "action": {"type": "send_message", "message": "收到，马上处理"}}


def create(live: Live, customers: list[str], prefix: str, desc: str) -> dict:
    """One waiting reply task per customer, through the API."""
    return seeding.create_tasks(live.api, [reply_task(f"{prefix}_{c}", c) for c in customers], desc)


def first_sends(live: Live, customers, since: int = 0) -> dict[str, float]:
    """When the first send frame to each of `customers` left (the fake's record), among sent[since:]."""
    live.scan_sends()
    out = {}
    for customer in customers:
        hit = live.first_send.get(customer)
        if hit and hit[0] >= since:
            out[customer] = hit[1]
    return out


def wait_sends(live: Live, customers, since: int, timeout: float, idle: float | None = None) -> dict[str, float]:
    """Wait (at most `timeout` s) until each customer got a send; their first send times. With `idle`:
    stop sooner once nothing was sent for `idle` s while Celery's queues were empty (the rest will not
    come: the system has nothing left to do)."""
    want, client = len(set(customers)), live.redis
    last = {"count": -1, "at": time.monotonic()}

    def done():
        got = len(first_sends(live, customers, since))
        if got >= want:
            return True
        now = time.monotonic()
        if got != last["count"] or _queued(client):
            last.update(count=got, at=now)
        return idle is not None and now - last["at"] >= idle
    wait_until(done, timeout, 0.05)
    return first_sends(live, customers, since)


def _queued(client) -> int:
    """Messages waiting in Celery's queues (one round trip)."""
    pipe = client.pipeline(transaction=False)
    for queue in processes.System.QUEUES.split(","):
        pipe.llen(queue)
    return sum(pipe.execute())


def wait_quiet(live: Live, timeout: float = 60) -> bool:
    """Until every send so far has its two callbacks (running, completed) and Celery's queues are empty."""
    client = live.redis

    def quiet():
        return not _queued(client) and live.callbacks() >= 2 * live.sends()
    ok, _ = wait_until(quiet, timeout, 0.1)
    return bool(ok)


def warm_up(live: Live, prefix: str, n: int = WARM_UP) -> int:
    """Fire `n` tasks end to end (imports, pools, first queries), then let everything settle. Returns
    how many of them did not fire (a lost fire: the benchmarks report it). The tasks are stored in bulk:
    the warm-up is about the processes, not intake."""
    customers = [f"{prefix}_warm{i}" for i in range(n)]
    seeding.bulk_tasks([reply_task(f"W_{c}", c) for c in customers], f"{live.kind}: warm-up tasks")
    since = live.sends()
    for c in customers:
        live.fake.say(c, FIRING_TEXT)
    missing = n - len(wait_sends(live, customers, since, 90, idle=IDLE))
    if missing == n:
        raise RuntimeError("no warm-up message fired\n" + live.system.dump_logs())
    wait_quiet(live)
    return missing


def burst(live: Live, customers: list[str], drain: float) -> dict:
    """Each customer says 好的 once, as fast as one producer can; done when the last send left (or after
    `drain` s, or IDLE s without a send while nothing is queued: the rest are lost). fired/s counts from
    the first frame in to the last send frame out. CPU is counted to the last send, and to quiet (every
    callback accepted, the queues empty): all the work the burst caused."""
    meter = live.meter().start()
    since, callbacks_before = live.sends(), live.callbacks()
    t_first = time.time()
    for c in customers:
        live.fake.say(c, FIRING_TEXT)
    t_injected = time.time()
    out = wait_sends(live, customers, since, drain, idle=IDLE)
    to_last, t_snap = meter.used(), time.time()
    quiet = wait_quiet(live, drain)
    t_quiet = time.time()
    to_quiet = meter.used()
    fired = len(out)
    t_last = max(out.values()) if out else t_injected
    wall = t_last - t_first
    return {"messages": len(customers), "fired": fired, "missing": len(customers) - fired,
            "seconds": round(wall, 3), "per_second": round(fired / max(1e-9, wall), 1),
            "inject_per_second": round(len(customers) / max(1e-9, t_injected - t_first), 1),
            "callbacks_by_last_send": live.callbacks(t_last) - callbacks_before,
            "callbacks_in_all": live.callbacks() - callbacks_before,
            "quiet_after_s": round(t_quiet - t_first, 2) if quiet else None,
            "cpu_seconds_to_last_send": to_last, "cpu_share_of_a_core": cpu.utilisation(to_last, t_snap - t_first),
            "cpu_seconds": to_quiet, "cpu_ms_per_fired": cpu.per_item(to_quiet, fired)}


def steady(live: Live, customers: list[str], rate: float, drain: float) -> dict:
    """Each customer says 好的 once, `rate` customers a second (one frame at a time); the CPU of
    everything that caused until quiet, and the latencies."""
    meter = live.meter().start()
    since, t_in = live.sends(), {}
    for i in common.paced(len(customers), rate):
        t_in[customers[i]] = time.time()
        live.fake.say(customers[i], FIRING_TEXT)
    out = wait_sends(live, customers, since, drain, idle=IDLE)
    wait_quiet(live, drain)
    used = meter.used()
    lat = [1000 * (out[c] - t_in[c]) for c in out]
    return {"messages": len(customers), "fired": len(out), "missing": len(customers) - len(out),
            "rate": rate, "latency_ms": {k: round(v, 2) if isinstance(v, float) else v
                                         for k, v in common.percentiles(lat).items()},
            "cpu_seconds": used, "cpu_ms_per_fired": cpu.per_item(used, len(out))}
