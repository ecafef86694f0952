"""How long to wait before trying again: one formula for every retry in the service (reconnecting to
轻简, re-posting a callback, re-running an action). Pure."""
from __future__ import annotations

_MAX_DOUBLINGS = 64  # far past any cap; keeps 2**attempt from overflowing a float


def exponential(attempt: int, jitter: float, *, first: float, cap: float) -> float:
    """`first`, 2×`first`, 4×`first` … seconds for attempt 0, 1, 2 …, never more than `cap`, scaled by a
    jitter in [0.5, 1] (`jitter` is a random number in [0, 1]) so that retries of many clients spread out."""
    step = min(cap, first * 2.0 ** min(max(0, attempt), _MAX_DOUBLINGS))
    return step * (0.5 + 0.5 * jitter)
