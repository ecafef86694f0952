"""The matcher's work per message is bounded (issue 10 item 7): the keyword-index probes of a message are
at most MAX_PROBED_CHARS × MAX_KEYWORD_CHARS, each at most MAX_KEYWORD_CHARS characters, generated one
at a time. Pure: no Redis here (tests/test_matcher_worst_case.py runs the worst case against the index)."""
from __future__ import annotations

import random
import subprocess
import sys
import tracemalloc
from pathlib import Path

from app.domain.probes import MAX_KEYWORD_CHARS, MAX_PROBED_CHARS, substrings

ALL_LENGTHS = range(1, MAX_KEYWORD_CHARS + 1)
ROOT = Path(__file__).resolve().parents[2]


def random_cjk(n: int, seed: int = 7) -> str:
    rng = random.Random(seed)
    return "".join(chr(rng.randrange(0x4E00, 0x9FFF)) for _ in range(n))


def test_probes_of_a_4_kib_message_against_every_keyword_length():
    text = random_cjk(MAX_PROBED_CHARS)
    probes = list(substrings(text, ALL_LENGTHS))
    expected = sum(MAX_PROBED_CHARS - length + 1 for length in ALL_LENGTHS)
    assert len(probes) == expected <= MAX_PROBED_CHARS * MAX_KEYWORD_CHARS
    assert max(len(p) for p in probes) == MAX_KEYWORD_CHARS


def test_a_longer_message_and_longer_lengths_add_no_probes():
    text = random_cjk(3 * MAX_PROBED_CHARS)
    lengths = [*ALL_LENGTHS, MAX_KEYWORD_CHARS + 1, 1000, 2000]  # e.g. left in the index before the cap
    probes = list(substrings(text, lengths))
    assert len(probes) == sum(MAX_PROBED_CHARS - length + 1 for length in ALL_LENGTHS)
    assert all(p in text[:MAX_PROBED_CHARS] and len(p) <= MAX_KEYWORD_CHARS for p in probes)


def probe_peak() -> tuple[int, int]:
    """(probes, peak bytes traced while generating them) for a 4 KiB message."""
    text = random_cjk(MAX_PROBED_CHARS)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        count = sum(1 for _ in substrings(text, ALL_LENGTHS))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return count, peak


def test_probes_are_generated_one_at_a_time():
    # In a process of its own: tracemalloc counts every thread's allocations, and in the whole suite the
    # threads of earlier tests' fakes and clients are still running (they once put the peak at 66 KB).
    out = subprocess.run([sys.executable, "-c", "from tests.unit.test_matcher_bounds import probe_peak; "
                          "print(*probe_peak())"], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    count, peak = map(int, out.stdout.split())
    assert count > 100_000
    # The text's first MAX_PROBED_CHARS characters (4 bytes each at most) and a probe: nothing that grows
    # with the number of probes.
    assert peak <= 2 * 4 * MAX_PROBED_CHARS + 16 * 1024, peak
