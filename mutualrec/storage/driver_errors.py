"""The driver's exceptions as SQLAlchemy's, for the storage paths that use the driver directly."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from sqlalchemy.exc import DBAPIError


@contextmanager
def as_sqlalchemy_errors() -> Iterator[None]:
    """Raise what psycopg raises inside the block as SQLAlchemy's class of the same name
    (OperationalError, DataError, ...), as a statement through SQLAlchemy would.

    The hot paths run prepared statements on the driver's own connections, and taking one from
    the pool (``Engine.raw_connection``) does not translate a failed connect either. The
    services tell an index outage (UNAVAILABLE) from a value the index refused by SQLAlchemy's
    classes; a bare psycopg error reached the callers as an unexpected failure (UNKNOWN, HTTP
    500) when the index went away under a caller whose key was cached.
    """
    try:
        yield
    except psycopg.Error as error:
        raise DBAPIError.instance(None, None, error, psycopg.Error) from error
