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

# 天网 hears about every move to running and to a terminal status.
CALLBACK_ON = frozenset({RUNNING}) | TERMINAL


class InvalidTransition(ValueError):
    pass


def can_move(current: str, target: str) -> bool:
    return current in ALLOWED_FROM.get(target, ())


def sources(target: str) -> frozenset[str]:
    """The statuses from which `target` may be reached; raises for an unknown target."""
    try:
        return ALLOWED_FROM[target]
    except KeyError:
        raise InvalidTransition(f"no transition leads to {target!r}") from None


def is_terminal(status: str) -> bool:
    return status in TERMINAL
