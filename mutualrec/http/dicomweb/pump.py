"""A response body made on its own thread and sent from the event loop, a few megabytes at
a time.

One producer thread per response reads and checks (file reads and SHA-256 release the GIL on
large buffers) while the event loop sends what it made before: the two overlap, and the loop
wakes once per batch handed over, not once per chunk read. A bounded number of batches wait
at a time, so a slow client holds a few megabytes, not the study.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections.abc import AsyncIterator, Callable

# Buffers sent as they are: the file chunks a store or a cache gives, never copied again.
Buffer = bytes | memoryview
# What the producer calls to hand over a batch of buffers; blocks while ``depth`` wait.
Emit = Callable[[list[Buffer]], None]


class _Stopped(Exception):
    """The consumer went away: the producer's next hand-over ends it."""


class _End:
    """The producer finished (``failure`` None) or failed."""

    def __init__(self, failure: BaseException | None) -> None:
        self.failure = failure


async def produced(produce: Callable[[Emit], None], depth: int = 3) -> AsyncIterator[Buffer]:
    """The buffers of the batches ``produce`` hands to its ``emit``, in order, made on a
    thread of their own (in a copy of the caller's context). A failure of ``produce`` is raised
    here after the buffers it handed over before it; leaving the iteration early stops
    ``produce`` at its next hand-over."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[list[Buffer] | _End] = asyncio.Queue()
    room = threading.Semaphore(depth)
    stopped = threading.Event()

    def emit(batch: list[Buffer]) -> None:
        room.acquire()
        if stopped.is_set():
            raise _Stopped
        loop.call_soon_threadsafe(queue.put_nowait, batch)

    def run() -> None:
        failure: BaseException | None = None
        try:
            produce(emit)
        except _Stopped:
            return
        except BaseException as exc:  # handed to the consumer, which raises it
            failure = exc
        if not stopped.is_set():
            # The loop may have closed meanwhile: then nobody is waiting.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(queue.put_nowait, _End(failure))

    context = contextvars.copy_context()
    thread = threading.Thread(target=context.run, args=(run,), name="response-body", daemon=True)
    thread.start()
    try:
        while True:
            item = await queue.get()
            if isinstance(item, _End):
                if item.failure is not None:
                    raise item.failure
                return
            room.release()
            for buffer in item:
                yield buffer
    finally:
        # Early exit (client gone, send failed) or the end: a producer blocked in emit() wakes
        # and stops; nothing it made after this is looked at.
        stopped.set()
        room.release()
