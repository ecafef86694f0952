"""The task status graph (CONTRACTS.md §1 "Statuses") checked against a table written from the contract."""
from __future__ import annotations

import itertools

import pytest

from app.domain import states

ALL = ["pending", "waiting", "running", "completed", "failed", "cancelled", "timeout"]
TERMINAL = {"completed", "failed", "cancelled", "timeout"}

# Written from the contract text, not from the module:
# pending -> waiting -> running -> completed | failed; cancelled from pending/waiting;
# timeout from pending/waiting/running. Nothing else; terminal statuses never move.
CONTRACT_MOVES = {
    ("pending", "waiting"),
    ("waiting", "running"),
    ("running", "completed"),
    ("running", "failed"),
    ("pending", "cancelled"),
    ("waiting", "cancelled"),
    ("pending", "timeout"),
    ("waiting", "timeout"),
    ("running", "timeout"),
}


def test_status_names_and_terminal_set():
    assert list(states.STATUSES) == ALL
    assert set(states.TERMINAL) == TERMINAL
    assert (states.PENDING, states.WAITING, states.RUNNING) == ("pending", "waiting", "running")


@pytest.mark.parametrize("current,target", list(itertools.product(ALL, ALL)))
def test_full_transition_matrix(current, target):
    assert states.can_move(current, target) is ((current, target) in CONTRACT_MOVES)


@pytest.mark.parametrize("status", sorted(TERMINAL))
def test_terminal_statuses_never_move(status):
    assert states.is_terminal(status)
    assert not any(states.can_move(status, target) for target in ALL)


@pytest.mark.parametrize("status", ["pending", "waiting", "running"])
def test_live_statuses_are_not_terminal(status):
    assert not states.is_terminal(status)


@pytest.mark.parametrize("target", [t for t in ALL if any(m[1] == t for m in CONTRACT_MOVES)])
def test_sources_lists_exactly_the_contract_sources(target):
    assert set(states.sources(target)) == {src for src, dst in CONTRACT_MOVES if dst == target}


@pytest.mark.parametrize("target", ["bogus", "", "COMPLETED", "done", "pending"])
def test_sources_raises_for_targets_nothing_leads_to(target):
    # "pending" is only ever the initial status: no move leads to it.
    with pytest.raises(states.InvalidTransition):
        states.sources(target)


def test_invalid_transition_is_a_value_error():
    assert issubclass(states.InvalidTransition, ValueError)


@pytest.mark.parametrize("bogus", ["bogus", "", "Running"])
def test_unknown_statuses_cannot_move_anywhere(bogus):
    assert not any(states.can_move(bogus, t) for t in ALL)
    assert not any(states.can_move(s, bogus) for s in ALL)


def test_callbacks_on_running_and_every_terminal_status():
    # "POST $TIANWANG_CALLBACK_URL on every move to running and to a terminal status"
    assert set(states.CALLBACK_ON) == {"running"} | TERMINAL
    assert "pending" not in states.CALLBACK_ON and "waiting" not in states.CALLBACK_ON


# The operator's moves (CONTRACTS.md §1: POST /api/task/retry; a task received again after a cancel).
OPERATOR_MOVES = {("failed", "running"), ("timeout", "waiting"), ("cancelled", "waiting")}


@pytest.mark.parametrize("current,target", list(itertools.product(ALL, ALL)))
def test_operator_moves_are_exactly_retry_and_rearm(current, target):
    try:
        allowed = current in states.sources(target, operator=True)
    except states.InvalidTransition:
        allowed = False
    assert allowed is ((current, target) in OPERATOR_MOVES)


def test_no_ordinary_move_leaves_a_finished_status():
    """A claim or a finish can never take a finished task out of its end: only an operator can."""
    for target in ALL:
        try:
            ordinary = states.sources(target)
        except states.InvalidTransition:
            continue
        assert not ordinary & TERMINAL
