"""Event-driven waits for pynetdicom's two reactor loops of an accepted association.

pynetdicom (3.0) polls: an association's DUL thread sleeps 1 ms, checks its socket with a
zero-timeout select and its queues, and loops; the association thread sleeps 1 ms and looks for
a decoded message, and loops. Both spin at about 1 kHz for the association's whole life, idle or
not, and a py-spy profile of four concurrent associations found them on 35 % of the server's
samples (docs/benchmarks.md, issue 21).

:func:`wait_for_events` makes both loops block until there is something to do, without
changing their code: each loop ends its idle turn with a non-blocking ``get`` on one queue, and
that ``get`` now waits (bounded by :data:`IDLE_CHECK_SECONDS`) for what would give the loop work:

* the DUL's event queue waits for the socket to become readable or the association thread to
  hand it a primitive to send (its ``to_provider_queue``, which then writes to a wake-up pipe);
* the DIMSE message queue waits for a decoded message, or for any primitive the DUL hands the
  association (a release or an abort request, through ``to_user_queue``).

The bound keeps what the loops check on every turn (timers, a kill) within that delay.
"""

from __future__ import annotations

import contextlib
import os
import queue
import select
import ssl
import threading
import weakref
from collections.abc import Callable
from typing import Any

from pynetdicom.association import Association

# The longest an idle loop waits before it looks at its timers and kill flag again.
IDLE_CHECK_SECONDS = 0.02


def wait_for_events(assoc: Association) -> None:
    """Make ``assoc``'s reactor loops wait for events instead of polling; call before the
    association's threads start (pynetdicom's EVT_CONN_OPEN)."""
    dul = assoc.dul
    _wake_dul_on_input(dul)
    _wake_association_on_input(assoc)
    # The DUL loop sleeps this long between idle turns; its queue now does the waiting.
    dul._run_loop_delay = 0


def _wake_dul_on_input(dul: Any) -> None:
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_read, False)
    os.set_blocking(wake_write, False)
    # The pipe lives as long as the DUL that waits on it.
    weakref.finalize(dul, _close, wake_read, wake_write)

    def wake() -> None:
        with contextlib.suppress(OSError):  # full (a wake-up is pending anyway) or closed
            os.write(wake_write, b"\0")

    def idle() -> None:
        if dul._kill_thread or dul.to_provider_queue.queue:
            return
        wrapper = dul.socket
        sock = wrapper.socket if wrapper is not None else None
        if sock is None:
            return
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return  # decrypted bytes buffered where select cannot see them
        try:
            ready, _, _ = select.select([sock, wake_read], [], [], IDLE_CHECK_SECONDS)
        except (OSError, ValueError):
            return  # closed meanwhile: the loop's own checks see it
        if wake_read in ready:
            with contextlib.suppress(OSError):
                os.read(wake_read, 4096)

    _after_put(dul.to_provider_queue, wake)
    _wait_when_empty(dul.event_queue, idle)


def _wake_association_on_input(assoc: Association) -> None:
    messages: queue.Queue[Any] = assoc.dimse.msg_queue
    arrived = threading.Condition()

    def wake() -> None:
        with arrived:
            arrived.notify_all()

    def idle() -> None:
        with arrived:
            if not messages.qsize() and not assoc._kill:
                arrived.wait(IDLE_CHECK_SECONDS)

    _after_put(messages, wake)
    _after_put(assoc.dul.to_user_queue, wake)
    _wait_when_empty(messages, idle)


def _after_put(target: queue.Queue[Any], then: Callable[[], None]) -> None:
    put = target.put

    def put_then(item: Any, block: bool = True, timeout: float | None = None) -> None:
        put(item, block, timeout)
        then()

    setattr(target, "put", put_then)  # noqa: B010 (an instance attribute shadows the method)


def _wait_when_empty(target: queue.Queue[Any], idle: Callable[[], None]) -> None:
    """A non-blocking ``get`` on an empty ``target`` first runs ``idle`` (which waits), then
    tries once more."""
    get = target.get

    def get_or_wait(block: bool = True, timeout: float | None = None) -> Any:
        if block:
            return get(block, timeout)
        try:
            return get(False)
        except queue.Empty:
            idle()
        return get(False)

    setattr(target, "get", get_or_wait)  # noqa: B010


def _close(*fds: int) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)
