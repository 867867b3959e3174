"""Database engines and the versioned schema (alembic migrations)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from mutualrec.private_files import new_private_dir, private_file, tighten_file
from mutualrec.violations import Unavailable

MIGRATIONS = Path(__file__).parent / "migrations"


class SchemaOutOfDate(Unavailable):
    """The database is not at the schema version this code needs (until it is migrated)."""


def normalize_url(url: str) -> str:
    """Use psycopg 3 for ``postgresql://`` URLs, the driver this project installs."""
    parsed = make_url(url)
    if parsed.drivername in {"postgresql", "postgres"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def _tune_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin (below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # WAL lets readers run beside the writer; NORMAL sync is durable across a process crash,
        # which is the failure the service promises to survive on the embedded default.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # A deferred transaction that reads then writes fails with SQLITE_BUSY at once when
        # another writer got there first; taking the write lock up front makes it wait instead.
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _private_sqlite(path: Path) -> None:
    """Make the index file 0600 before SQLite opens it: SQLite gives its write-ahead log and
    shared-memory files the main file's permissions, so none of them is world-readable."""
    new_private_dir(path.parent)
    private_file(path)
    for suffix in ("-wal", "-shm", "-journal"):
        tighten_file(path.with_name(path.name + suffix))


def make_engine(url: str, *, pool_size: int = 10, fast_records: bool = False) -> Engine:
    """An engine for ``url``, tuned for this service's concurrent ingest.

    ``fast_records`` (PostgreSQL): every statement commits by itself, without waiting for the
    WAL flush (asynchronous commit); for records whose loss in a database crash is tolerable,
    such as the answers of ordering-time checks. Never for results; a decision's statement
    switches its own commit back to synchronous.
    """
    url = normalize_url(url)
    if url.startswith("sqlite"):
        path = make_url(url).database
        if path and path != ":memory:":
            _private_sqlite(Path(path))
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        _tune_sqlite(engine)
        return engine
    # No pre-ping: it is a round trip on every checkout, as long as a whole ordering-time check.
    # A connection the server dropped fails one call (UNAVAILABLE) and is discarded by the pool;
    # recycling keeps connections younger than typical idle timeouts.
    # JIT compilation pays off for long analytic scans, not for this service's statements: it
    # spent 240 ms compiling a one-year statistics report that ran in 700.
    options = "-c jit=off"
    if fast_records:
        return create_engine(
            url,
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_recycle=600,
            isolation_level="AUTOCOMMIT",
            # Every statement commits by itself, so a connection comes back with nothing to
            # roll back: the pool's ROLLBACK on return would be a call into the driver per
            # check for nothing.
            pool_reset_on_return=None,
            connect_args={"options": f"{options} -c synchronous_commit=off"},
        )
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=600,
        connect_args={"options": options},
    )


def reads_without_transaction(session: Session) -> None:
    """Let ``session`` read without BEGIN and ROLLBACK on PostgreSQL: two round trips fewer for
    a read-only call whose statements need not share one snapshot. Call it first."""
    if session.get_bind().dialect.name == "postgresql":
        session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})


def _alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply migrations up to ``revision``."""
    command.upgrade(_alembic_config(engine), revision)


def head_revision() -> str:
    """The newest schema revision this code ships."""
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert head is not None, "the package ships no migrations"
    return head


def current_revision(engine: Engine) -> str | None:
    """The schema revision the database is at, or None for an empty database."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def ensure_schema(engine: Engine, *, auto_migrate: bool) -> None:
    """Bring the schema to head when allowed, else refuse to run on an old one."""
    if auto_migrate:
        upgrade(engine)
        return
    current, head = current_revision(engine), head_revision()
    if current != head:
        raise SchemaOutOfDate(
            f"the database schema is at {current or 'nothing'}, this version needs {head}: "
            "run `mutualrec db upgrade`"
        )
