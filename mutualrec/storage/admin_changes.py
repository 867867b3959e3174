"""A counter of administrators' changes, so every server drops its caches within a second.

Servers keep reference data (qualifications, mappings, prices, institutions) and verified keys in
memory. Every change to them bumps ``admin_change.version`` in the change's own transaction; each
server reads that one row about once a second and, when it moved, forgets what it cached.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from mutualrec.storage.models import AdminChange
from mutualrec.storage.sql import insert_ignoring_conflicts

_ROW = 1


def bump(session: Session) -> None:
    """Count one change, in the caller's transaction (it commits or rolls back with it)."""
    increment = (
        update(AdminChange).where(AdminChange.id == _ROW).values(version=AdminChange.version + 1)
    )
    if session.execute(increment).rowcount:  # type: ignore[attr-defined]
        return
    # The migration creates the row; a database whose row was removed gets it back.
    if not insert_ignoring_conflicts(session, AdminChange, {"id": _ROW, "version": 1}):
        session.execute(increment)


def version(session: Session) -> int:
    """How many changes were counted (0 before the first)."""
    return int(session.scalar(select(AdminChange.version).where(AdminChange.id == _ROW)) or 0)
