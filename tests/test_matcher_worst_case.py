"""The matcher's worst case (issue 10 item 7), against a real Redis index: a 4 KiB message of characters
that never repeat a probe, against the largest keyword set the API allows (a customer_keyword task with
50 keywords of MAX_KEYWORD_CHARS characters) with every keyword length present in the index.

Bounded by counting and by bytes, not by the clock: probes sent to Redis, round trips, and the peak of
memory allocated while finding the candidates and matching them (tracemalloc). `-s` prints the figures
with the CPU time.
"""
from __future__ import annotations

import random
import time
import tracemalloc

import pytest
import redis

from app.domain.events import InboundEvent
from app.domain.probes import MAX_KEYWORD_CHARS, MAX_PROBED_CHARS
from app.domain.triggers import compile_spec, matches
from app.infra.keys import Keys
from app.registry import PROBES_PER_ROUND_TRIP, Registry

KEYWORDS_PER_TASK = 50  # the schema's cap on trigger.keywords
# Bytes of one probe in hand: a str of at most MAX_KEYWORD_CHARS characters (4 bytes each at most, about
# 80 of object), its place in the de-duplicating dict, its encoding for Redis (3 bytes per character),
# and its answer.
PER_PROBE = (80 + 4 * MAX_KEYWORD_CHARS) + 100 + (3 * MAX_KEYWORD_CHARS + 16) + 40


class CountingRedis:
    """The Redis client, counting the keyword probes the registry looks up and the round trips they take."""

    def __init__(self, client: redis.Redis):
        self.client, self.probes, self.round_trips, self.largest = client, 0, 0, 0

    def pipeline(self, *args, **kwargs):
        return CountingPipeline(self, self.client.pipeline(*args, **kwargs))

    def __getattr__(self, name):
        return getattr(self.client, name)


class CountingPipeline:
    def __init__(self, counter: CountingRedis, pipe):
        self.counter, self.pipe, self.probes = counter, pipe, 0

    def smismember(self, key, members):
        self.probes += len(members)
        return self.pipe.smismember(key, members)

    def execute(self):
        if self.probes:
            self.counter.probes += self.probes
            self.counter.round_trips += 1
            self.counter.largest = max(self.counter.largest, self.probes)
        return self.pipe.execute()

    def __getattr__(self, name):
        return getattr(self.pipe, name)


def cjk(rng: random.Random, n: int) -> str:
    return "".join(chr(rng.randrange(0x4E00, 0xA000)) for _ in range(n))


def spec(task_id: str, keywords: list[str]) -> dict:
    return compile_spec(task_id=task_id, trigger={"type": "customer_keyword", "keywords": keywords},
                        customer_id=None, priority="normal", created_at=0.0, payment_keywords=(),
                        order_keywords=())


@pytest.fixture
def index(redis_base):
    client = redis.Redis.from_url(f"{redis_base}/8")
    client.flushdb()
    counting = CountingRedis(client)
    yield Registry(counting, Keys("tw:")), counting
    client.flushdb()


def largest_keyword_set(registry: Registry, rng: random.Random) -> list[str]:
    """A task of 50 keywords at the cap, and a task for every other keyword length; returns the 50."""
    widest = [cjk(rng, MAX_KEYWORD_CHARS) for _ in range(KEYWORDS_PER_TASK)]
    registry.register(spec("WIDEST", widest))
    for length in range(1, MAX_KEYWORD_CHARS):
        registry.register(spec(f"LEN_{length}", [cjk(rng, length)]))
    return widest


def message(text: str, customer: str = "c1") -> InboundEvent:
    return InboundEvent(kind="message", from_id=customer, text=text, received_at=time.time())


def test_a_4_kib_message_against_the_largest_keyword_set(index):
    registry, counting = index
    rng = random.Random(11)
    widest = largest_keyword_set(registry, rng)
    event = message(cjk(rng, MAX_PROBED_CHARS - MAX_KEYWORD_CHARS) + widest[-1])  # the last keyword, at the end

    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        cpu = time.process_time()
        fired = [s["id"] for s in registry.candidates(event) if matches(s, event)]
        cpu = time.process_time() - cpu
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert fired == ["WIDEST"]
    probes = sum(MAX_PROBED_CHARS - length + 1 for length in range(1, MAX_KEYWORD_CHARS + 1))
    # (a single character recurs in 4,096 random ones: repeats within a chunk are sent once)
    assert 0.99 * probes <= counting.probes <= probes <= MAX_PROBED_CHARS * MAX_KEYWORD_CHARS
    assert counting.largest <= PROBES_PER_ROUND_TRIP
    assert counting.round_trips == -(-probes // PROBES_PER_ROUND_TRIP)
    # In hand at once: one round trip's probes; twice that for slack. Before, all 130,000 probes were held
    # at once: a peak of 34 MiB for this message.
    bound = 2 * PROBES_PER_ROUND_TRIP * PER_PROBE
    assert peak <= bound, (peak, bound)
    print(f"\nworst case: {counting.probes:,} probes in {counting.round_trips} round trips, "
          f"peak {peak / 1024:.0f} KiB allocated (bound {bound / 1024:.0f} KiB), {cpu * 1000:.0f} ms CPU")


def test_a_batch_of_everyday_messages_looks_keywords_up_in_one_round_trip(index):
    registry, counting = index
    registry.register(spec("PAID", ["已付款", "付过了"]))
    registry.register(spec("OK", ["好的"]))
    registry.register(spec("SHIPPED", ["发货了吗"]))
    batch = [message(f"你好，我{i}号已付款了，麻烦尽快发货，谢谢", customer=f"c{i}") for i in range(200)]
    found = registry.candidates_many(batch)
    assert [[s["id"] for s in these] for these in found] == [["PAID"]] * 200
    assert counting.round_trips == 1 and counting.probes <= PROBES_PER_ROUND_TRIP


def test_a_batch_of_worst_case_messages_holds_no_more_probes_at_once(index):
    registry, counting = index
    rng = random.Random(13)
    largest_keyword_set(registry, rng)
    batch = [message(cjk(rng, MAX_PROBED_CHARS), customer=f"c{i}") for i in range(3)]
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        registry.candidates_many(batch)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert counting.largest <= PROBES_PER_ROUND_TRIP
    assert peak <= 2 * PROBES_PER_ROUND_TRIP * PER_PROBE + len(batch) * 4 * MAX_PROBED_CHARS, peak
