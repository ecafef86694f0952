"""The task status graph of CONTRACTS.md §1 "Statuses". Pure data; `app.state.tasks` applies it."""
from __future__ import annotations

PENDING, WAITING, RUNNING = "pending", "waiting", "running"
COMPLETED, FAILED, CANCELLED, TIMEOUT = "completed", "failed", "cancelled", "timeout"

STATUSES = (PENDING, WAITING, RUNNING, COMPLETED, FAILED, CANCELLED, TIMEOUT)
TERMINAL = frozenset({COMPLETED, FAILED, CANCELLED, TIMEOUT})

# target status -> the statuses it may be reached from
ALLOWED_FROM: dict[str, frozenset[str]] = {
    WAITING: frozenset({PENDING}),
    RUNNING: frozenset({WAITING}),
    COMPLETED: frozenset({RUNNING}),
    FAILED: frozenset({RUNNING}),
    CANCELLED: frozenset({PENDING, WAITING}),
    TIMEOUT: frozenset({PENDING, WAITING, RUNNING}),
}

# What only an operator (or 天网 re-issuing a task) may do to a finished task (CONTRACTS.md §1):
# retry a failed one (its action runs again), a timed-out one (it waits again), re-arm a cancelled one.
# Kept apart so that no ordinary move (a claim, a finish) can ever take a finished task out of its end.
OPERATOR_FROM: dict[str, frozenset[str]] = {
    RUNNING: frozenset({FAILED}),
    WAITING: frozenset({TIMEOUT, CANCELLED}),
}

# 天网 hears about every move to running and to a terminal status.
CALLBACK_ON = frozenset({RUNNING}) | TERMINAL


class InvalidTransition(ValueError):
    pass


def can_move(current: str, target: str) -> bool:
    return current in ALLOWED_FROM.get(target, ())


def sources(target: str, *, operator: bool = False) -> frozenset[str]:
    """The statuses from which `target` may be reached (by an operator's move: from which finished
    statuses); raises for a target no such move leads to."""
    try:
        return (OPERATOR_FROM if operator else ALLOWED_FROM)[target]
    except KeyError:
        raise InvalidTransition(f"no {'operator ' if operator else ''}transition leads to {target!r}") from None


def is_terminal(status: str) -> bool:
    return status in TERMINAL
