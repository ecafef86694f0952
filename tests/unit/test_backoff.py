"""The one backoff formula: bounded, growing, spread by jitter, and it stops growing at its cap."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain.backoff import exponential

firsts = st.floats(min_value=0.01, max_value=10)
caps = st.floats(min_value=0.01, max_value=3600)


@given(attempt=st.integers(min_value=-5, max_value=10_000), jitter=st.floats(min_value=0, max_value=1),
       first=firsts, cap=caps)
@settings(max_examples=300, deadline=None, database=None)
def test_a_wait_is_positive_and_never_past_the_cap(attempt, jitter, first, cap):
    assert 0 < exponential(attempt, jitter, first=first, cap=cap) <= cap


@given(attempt=st.integers(min_value=0, max_value=2_000), first=firsts, cap=caps)
@settings(max_examples=300, deadline=None, database=None)
def test_waits_never_shrink_as_attempts_grow(attempt, first, cap):
    for jitter in (0.0, 0.5, 1.0):
        assert exponential(attempt + 1, jitter, first=first, cap=cap) >= exponential(attempt, jitter, first=first, cap=cap)


@given(attempt=st.integers(min_value=0, max_value=2_000), first=firsts, cap=caps)
@settings(max_examples=300, deadline=None, database=None)
def test_jitter_spreads_a_wait_over_its_upper_half(attempt, first, cap):
    low, high = (exponential(attempt, j, first=first, cap=cap) for j in (0.0, 1.0))
    assert low == pytest.approx(high / 2)
    assert low <= exponential(attempt, 0.37, first=first, cap=cap) <= high


def test_the_first_wait_is_first_and_each_later_one_doubles_until_the_cap():
    waits = [exponential(n, 1.0, first=0.5, cap=7.0) for n in range(10)]
    assert waits[0] == 0.5
    growing = [w for w in waits if w < 7.0]
    assert all(b == 2 * a for a, b in zip(growing, growing[1:]))
    assert waits[len(growing):] == [7.0] * (10 - len(growing))  # it stops growing, and stays there
