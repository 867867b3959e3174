#!/usr/bin/env python3
"""A gRPC server whose UploadStudy only counts the instances it receives: the transport ceiling.

It uses mutualrec's contract and the same grpc.aio server options as ``mutualrec serve``, but
stores, parses and indexes nothing, so the ingest benchmark can show how much of mutualrec's
time is the gRPC transport (Python client and grpc.aio server) itself. Diagnostic only.

    PYTHONPATH=. .venv/bin/python bench/null_ingest_server.py [--listen 127.0.0.1:0]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import AsyncIterator

import grpc

from mutualrec.config import load_settings
from mutualrec.server import max_message_bytes
from mutualrec.v1 import ingest_pb2, ingest_pb2_grpc


class NullIngest(ingest_pb2_grpc.IngestServiceServicer):  # type: ignore[misc]  # untyped stub
    """Reads every message of an upload and answers STORED for each complete instance."""

    async def UploadStudy(
        self,
        request_iterator: AsyncIterator[ingest_pb2.UploadStudyRequest],
        context: grpc.aio.ServicerContext[object, object],
    ) -> ingest_pb2.UploadStudyResponse:
        """Count instances and bytes; keep nothing."""
        instances = 0
        async for message in request_iterator:
            if message.WhichOneof("part") == "chunk" and message.chunk.end_of_instance:
                instances += 1
        return ingest_pb2.UploadStudyResponse(counts=ingest_pb2.UploadCounts(stored=instances))


async def serve(listen: str) -> None:
    """Serve until SIGTERM or SIGINT."""
    limit = max_message_bytes(load_settings({}))
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
            ("grpc.so_reuseport", 0),
        ]
    )
    ingest_pb2_grpc.add_IngestServiceServicer_to_server(NullIngest(), server)
    port = server.add_insecure_port(listen)
    await server.start()
    print(f"null ingest listening on {listen.rsplit(':', 1)[0]}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await server.stop(5)


def main() -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--listen", default="127.0.0.1:0")
    asyncio.run(serve(parser.parse_args().listen))
    return 0


if __name__ == "__main__":
    sys.exit(main())
