"""What a running server holds: settings, the index engine, the object store, worker threads."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from mutualrec.config import Settings
from mutualrec.storage.db import ensure_schema, make_engine
from mutualrec.storage.factory import open_object_store
from mutualrec.storage.objects import ObjectStore

P = ParamSpec("P")
T = TypeVar("T")


@dataclass
class Runtime:
    """Shared resources of one server process."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    store: ObjectStore
    executor: ThreadPoolExecutor

    @classmethod
    def open(cls, settings: Settings) -> Runtime:
        """Connect to the index (migrating it when allowed) and the object store."""
        engine = make_engine(settings.database_url, pool_size=settings.blocking_workers)
        ensure_schema(engine, auto_migrate=settings.auto_migrate)
        return cls(
            settings=settings,
            engine=engine,
            sessions=sessionmaker(engine, expire_on_commit=False),
            store=open_object_store(settings),
            executor=ThreadPoolExecutor(
                max_workers=settings.blocking_workers, thread_name_prefix="mutualrec-io"
            ),
        )

    async def run_blocking(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run blocking storage or parsing work on the worker threads, off the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(fn, *args, **kwargs))

    def close(self) -> None:
        """Release threads and connections."""
        self.executor.shutdown(wait=True)
        self.engine.dispose()
