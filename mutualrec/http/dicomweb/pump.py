"""A response body made on its own thread and sent from the event loop, a few large buffers
at a time.

One producer thread per response reads and checks (file reads and SHA-256 release the GIL on
large buffers) while the event loop sends what it made before: the two overlap, and the loop
wakes once per buffer handed over, not once per chunk read. A bounded number of buffers wait
at a time, so a slow client holds a few megabytes, not the study.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections.abc import AsyncIterator, Callable

# What the producer calls to hand over one finished buffer; blocks while ``depth`` wait.
Emit = Callable[[memoryview], None]


class _Stopped(Exception):
    """The consumer went away: the producer's next hand-over ends it."""


class _End:
    """The producer finished (``failure`` None) or failed."""

    def __init__(self, failure: BaseException | None) -> None:
        self.failure = failure


async def produced(produce: Callable[[Emit], None], depth: int = 3) -> AsyncIterator[memoryview]:
    """The buffers ``produce`` hands to its ``emit``, in order, made on a thread of their own
    (in a copy of the caller's context). A failure of ``produce`` is raised here after the
    buffers it handed over before it; leaving the iteration early stops ``produce`` at its
    next hand-over."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[memoryview | _End] = asyncio.Queue()
    room = threading.Semaphore(depth)
    stopped = threading.Event()

    def emit(buffer: memoryview) -> None:
        room.acquire()
        if stopped.is_set():
            raise _Stopped
        loop.call_soon_threadsafe(queue.put_nowait, buffer)

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
            yield item
    finally:
        # Early exit (client gone, send failed) or the end: a producer blocked in emit() wakes
        # and stops; nothing it made after this is looked at.
        stopped.set()
        room.release()
