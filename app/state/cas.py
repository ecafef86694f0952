"""Compare-and-set of a row's `status`: `UPDATE … SET … WHERE <key> = :key AND status = :seen [AND …]`.

Whoever's update hits the row has won the move; everybody else learns the status they lost to. The
callers (`app.state.tasks`, `app.state.dispatches`) add what a move of their kind writes beside it.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session


@dataclass(frozen=True)
class Swap:
    won: bool
    previous: str | None  # the status seen (before the move if won); None: no such row


def swap_status(session: Session, model, key, allowed: frozenset[str], values: dict, where: tuple = (),
                attempts: int = 3) -> Swap:
    """Set `values` (the new status among them) on the row `key` if its status is one of `allowed`.

    `where` adds conditions of the caller's (e.g. that it still holds the lease): when one of those fails,
    the row is not the caller's to move and no second attempt is made.
    """
    column = model.__mapper__.primary_key[0]

    def cas(expected: str) -> bool:
        return session.execute(
            update(model).where(column == key, model.status == expected, *where)
            .values(**values).execution_options(synchronize_session=False)).rowcount == 1

    def status_now() -> str | None:
        return session.scalar(select(model.status).where(column == key))

    if len(allowed) == 1:
        # One possible source (the hot paths: claim, finish): try the update straight away.
        expected = next(iter(allowed))
        return Swap(True, expected) if cas(expected) else Swap(False, status_now())
    current = None
    for _ in range(attempts):  # read the status, update only if it is still that; re-read if it moved
        current = status_now()
        if current is None or current not in allowed:
            return Swap(False, current)
        if cas(current):
            return Swap(True, current)
        if where:
            return Swap(False, current)
    return Swap(False, current)
