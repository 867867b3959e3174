"""Operators' upkeep of the index and the object store: migrations, the sweep of unreferenced
blobs, tallying statistics again."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from mutualrec.storage import db, statistics_index
from mutualrec.storage.objects import ObjectStore
from mutualrec.storage.sweep import SweepReport, sweep


@dataclass(frozen=True, slots=True)
class SchemaRevision:
    """Where the database's schema is, and where this code needs it."""

    # None: an empty database.
    current: str | None
    head: str


def upgrade_schema(database_url: str) -> SchemaRevision:
    """Apply every migration the database lacks."""
    engine = db.make_engine(database_url)
    try:
        db.upgrade(engine)
        return SchemaRevision(db.current_revision(engine), db.head_revision())
    finally:
        engine.dispose()


def schema_revision(database_url: str) -> SchemaRevision:
    """The database's schema revision and the one this code needs."""
    engine = db.make_engine(database_url)
    try:
        return SchemaRevision(db.current_revision(engine), db.head_revision())
    finally:
        engine.dispose()


class Maintenance:
    """Upkeep of one index and its object store (opened only by what needs it)."""

    def __init__(
        self, sessions: sessionmaker[Session], open_store: Callable[[], ObjectStore]
    ) -> None:
        self._sessions = sessions
        self._open_store = open_store

    def sweep(self, grace: dt.timedelta, remove: bool) -> SweepReport:
        """Remove (or only count) blobs no index row refers to, older than ``grace``: left by
        crashes between a blob and its row."""
        return sweep(
            self._open_store(),
            self._sessions,
            now=dt.datetime.now(dt.UTC),
            grace=grace,
            remove=remove,
        )

    def rebuild_statistics(self) -> int:
        """Tally every day again from the record of checks and decisions; how many days. The
        service must be stopped meanwhile."""
        with self._sessions.begin() as session:
            return statistics_index.rebuild(session)
