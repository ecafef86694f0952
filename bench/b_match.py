"""match: messages/second through listener -> the `match` inbox (`messages.drain`) -> matching, by index size.

The Redis index is filled in bulk with app.registry.Registry.register (its own key layout, queued into
big pipelines): half the tasks are specified_customer_reply tasks bound to a customer (two per
customer), half customer_keyword tasks for any customer (1-3 keywords of 2-6 CJK characters each, so
`ix:kws` holds about as many keywords as there are such tasks). No task rows are written to SQL: a task
that never matches is never read from SQL (matching reads the index; a task row is touched by a claim).
The messages themselves are: the listener records each batch in `inbound_messages` and matching marks
the batch matched (the first of the SQL-bound benchmarks' databases). The Procfile's processes run but
beat, so the reconciler never sees (and drops) these SQL-less index entries.

Messages are texts from random customers, half of whom have two bound tasks; their characters come
from a range disjoint from every keyword's, so nothing matches and nothing fires. They are pushed
through the 轻简 fake as fast as this process can; a run is done when `stats:match events` has grown
by N. The reference is `bench.noop` (the same HINCRBY) on the Procfile's worker line(s) with
`-I bench.noop_tasks`, from the same `match` queue, published as fast as one producer can
(bench/reference.py), before and after the points.
"""
from __future__ import annotations

import random
import statistics
import time

import redis
from tqdm import tqdm

from bench import common, cpu, reference
from bench.common import PREFIX

KW_POOL = [chr(c) for c in range(0x4E00, 0x4E00 + 3000)]  # keyword characters
MSG_POOL = [chr(c) for c in range(0x7000, 0x7000 + 3000)]  # message characters: disjoint


class _Batch:
    """Stands in for the Redis client inside Registry.register: every register() goes into one big
    non-transactional pipeline, executed every `every` tasks."""

    def __init__(self, client: redis.Redis, every: int = 2000):
        self.big = client.pipeline(transaction=False)
        self.every, self.pending = every, 0

    def pipeline(self, transaction: bool = True):
        return self

    def __getattr__(self, name):
        return getattr(self.big, name)

    def execute(self):
        self.pending += 1
        if self.pending >= self.every:
            self.flush()

    def flush(self):
        if self.pending:
            self.big.execute()
            self.pending = 0


def spec_for(i: int, rng: random.Random) -> dict:
    from app.config import DEFAULT_ORDER_KEYWORDS, DEFAULT_PAYMENT_KEYWORDS
    from app.domain.triggers import compile_spec

    if i % 2 == 0:
        trigger = {"type": "specified_customer_reply", "customer_id": f"bc{i // 4}",
                   "keyword": "".join(rng.choices(KW_POOL, k=rng.randint(2, 6)))}
        customer = f"bc{i // 4}"
    else:
        trigger = {"type": "customer_keyword",
                   "keywords": ["".join(rng.choices(KW_POOL, k=rng.randint(2, 6)))
                                for _ in range(1 + i % 3)]}
        customer = None
    return compile_spec(task_id=f"BM{i:07d}", trigger=trigger, customer_id=customer, priority="normal",
                        created_at=time.time(), payment_keywords=DEFAULT_PAYMENT_KEYWORDS,
                        order_keywords=DEFAULT_ORDER_KEYWORDS)


def populate(client: redis.Redis, start: int, stop: int, seed: int = 7) -> float:
    from app.infra.keys import Keys
    from app.registry import Registry

    rng = random.Random(seed * 1_000_003 + start)
    batch = _Batch(client)
    registry = Registry(batch, Keys(PREFIX))  # type: ignore[arg-type]
    began = time.perf_counter()
    with tqdm(total=stop - start, desc=f"index {start:,}->{stop:,}", leave=False, unit="task",
              unit_scale=True, dynamic_ncols=True) as bar:
        for i in range(start, stop):
            registry.register(spec_for(i, rng))
            if i % 5000 == 4999:
                bar.update(5000)
        batch.flush()
        bar.update(bar.total - bar.n)
    return time.perf_counter() - began


def _messages(n: int, size: int, rng: random.Random) -> list[tuple[str, str]]:
    customers = max(2, size // 2)  # bc0 .. bc(size/4 - 1) have tasks: half the senders
    return [(f"bc{rng.randrange(customers)}", "".join(rng.choices(MSG_POOL, k=rng.randint(8, 16))))
            for _ in range(n)]


def run(bench, progress) -> dict:
    quick = bench.quick
    sizes = [1_000, 10_000, 50_000] if quick else [1_000, 100_000, 1_000_000]
    n = 500 if quick else 4_000
    reps = 1 if quick else 2
    db_url = common.fresh_db(bench.dbs[0], "match")  # the inbound messages are recorded there
    url = common.redis_url(common.REDIS_DB_SYSTEM)
    client = redis.Redis.from_url(url)
    result = {"settings": {"messages_per_run": n, "runs_per_point": reps, "index_sizes": sizes,
                           "processes": "the Procfile's lines but release, web, flower and beat",
                           "index": "half specified_customer_reply bound to a customer (2 per customer), "
                                    "half customer_keyword for any customer (1-3 keywords of 2-6 chars)",
                           "sql_rows": "no task rows (never matched, never read); inbound messages recorded",
                           "beat": "not running (no reconcile)", "redis_db": common.REDIS_DB_SYSTEM},
              "points": [], "noop": None}
    rng = random.Random(42)

    result["noop_before"] = reference.noop_throughput(bench, db_url, n, reps, "match", progress)

    with bench.scope():
        fake = bench.fake_qingjian()
        system = bench.system(db_url, url, QINGJIAN_WS_URL=fake.url)
        procs = bench.stack(system, without=("beat",))  # no reconcile: the index has no SQL rows behind it
        if not fake.wait_for_client(30):
            raise RuntimeError("the listener did not connect to the 轻简 fake\n" + system.dump_logs())
        populated = 0
        for size in sizes:
            populate_s = populate(client, populated, size)
            populated = size
            mem = client.info("memory")["used_memory"]
            if size == sizes[0]:
                common.worker_warm(client, lambda i: fake.say(f"warm{i}", "热身"), n=30)
            runs = []
            for rep in range(reps):
                msgs = _messages(n, size, rng)
                if rep == 0:
                    bench.profile(f"match-{size}", procs, n / 250)

                def inject():
                    for from_id, text in msgs:
                        fake.say(from_id, text)
                runs.append(reference.measure(client, inject, n, cpu.Meter(procs, client), timeout=120 + n / 20))
                progress()
            registered = client.hlen(f"{PREFIX}spec")
            rates = [r["per_second"] for r in runs]
            result["points"].append({
                "waiting_tasks": registered, "populate_seconds": round(populate_s, 1),
                "redis_used_memory_mb": round(mem / 2**20, 1), "keywords_indexed": client.scard(f"{PREFIX}ix:kws"),
                "per_second": round(statistics.median(rates), 1), "runs": runs,
            })
        client.flushdb()  # 1M specs: give the memory back

    result["noop_after"] = reference.noop_throughput(bench, db_url, n, reps, "match", progress)
    noop_rates = [r["per_second"] for r in result["noop_before"] + result["noop_after"]]
    result["noop"] = {"per_second": round(statistics.median(noop_rates), 1), "all": noop_rates}
    first, last = result["points"][0], result["points"][-1]
    for point in result["points"]:
        point["ratio_to_noop"] = round(point["per_second"] / result["noop"]["per_second"], 3)
    result["cost_ratio_largest_vs_smallest"] = round(first["per_second"] / last["per_second"], 3)
    result["targets"] = {
        "ratio_to_noop": {"target": ">= 0.6", "value": min(p["ratio_to_noop"] for p in result["points"]),
                          "pass": min(p["ratio_to_noop"] for p in result["points"]) >= 0.6},
        "cost_1M_over_1k": {"target": "<= 1.2", "value": result["cost_ratio_largest_vs_smallest"],
                            "pass": result["cost_ratio_largest_vs_smallest"] <= 1.2,
                            "sizes": [first["waiting_tasks"], last["waiting_tasks"]]},
    }
    return result


