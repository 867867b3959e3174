"""The health service tells operators when audit entries were lost.

``mutualrec.audit`` is SERVING while every entry reached the trail and turns NOT_SERVING for the
life of the process once one could not be written: the ordering-time check keeps answering
(the overall status is untouched), but a probe or an operator sees that the trail has a hole
and the log says which entries and why.
"""

from __future__ import annotations

import asyncio
import contextlib

from grpc_health.v1 import health_pb2
from grpc_health.v1.health import aio as health_aio

from mutualrec.services.audit import AUDIT_HEALTH_SERVICE, AuditWriter

_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def report_audit_losses(health: health_aio.HealthServicer, writer: AuditWriter) -> None:
    """Publish the audit trail's state now and whenever the writer loses entries."""
    loop = asyncio.get_running_loop()
    pending: set[asyncio.Future[None]] = set()
    await health.set(AUDIT_HEALTH_SERVICE, _NOT_SERVING if writer.lost else _SERVING)

    def mark() -> None:
        future = asyncio.ensure_future(health.set(AUDIT_HEALTH_SERVICE, _NOT_SERVING))
        pending.add(future)
        future.add_done_callback(pending.discard)

    def lost(_total: int) -> None:
        # From the writer's thread; after the server's loop is gone there is no one to tell.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(mark)

    writer.on_loss(lost)
