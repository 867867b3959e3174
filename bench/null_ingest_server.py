#!/usr/bin/env python3
"""A gRPC server whose UploadStudy only counts the instances it receives: the transport ceiling.

It uses mutualrec's contract and the same grpc.aio server options as ``mutualrec serve``, but
stores, parses and indexes nothing, so the ingest benchmark can show how much of mutualrec's
time is the gRPC transport (Python client and grpc.aio server) itself. Diagnostic only.

With ``--store DIR`` it also keeps every instance the way any durable store must, and nothing
more: SHA-256 of its bytes, a temporary file, fsync (unless ``--no-fsync``), a rename into
place; written by worker threads while the next instance arrives, two in flight per upload. No
parsing, no validation, no index. That is the floor under any CPython ingest server that keeps
instances as files, as Orthanc does with ``SyncStorageArea``.

With ``--store DIR --group`` the files go through mutualrec's own local-directory store instead
(:class:`~mutualrec.storage.fs_store.FileSystemObjectStore`: write-back started on put, one
durability barrier per batch of up to ``MAX_BATCH`` instances, as ``mutualrec serve`` commits
them): the floor of group durability, still without parsing or an index.

    PYTHONPATH=. .venv/bin/python bench/null_ingest_server.py [--listen 127.0.0.1:0] \
        [--store DIR [--no-fsync] [--group]]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import hashlib
import io
import os
import signal
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import grpc

from mutualrec.config import load_settings
from mutualrec.server import max_message_bytes
from mutualrec.services.study_upload import MAX_BATCH
from mutualrec.storage.fs_store import FileSystemObjectStore
from mutualrec.v1 import ingest_pb2, ingest_pb2_grpc

# Instances being written per upload while the next one is received.
IN_FLIGHT = 2


def _sha256(chunks: list[bytes]) -> str:
    """Hex SHA-256 of an instance's chunks, as received."""
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


class FileKeeper:
    """Keeps instances as files below ``root``: hash, temporary file, fsync, rename."""

    def __init__(self, root: Path, fsync: bool) -> None:
        self.root = root
        self.fsync = fsync
        (root / "tmp").mkdir(parents=True, exist_ok=True)
        self.threads = concurrent.futures.ThreadPoolExecutor(8)

    def write(self, chunks: list[bytes]) -> None:
        """Write one instance's bytes durably under a name of its content hash."""
        digest = _sha256(chunks)
        fd, tmp_name = tempfile.mkstemp(dir=self.root / "tmp")
        with os.fdopen(fd, "wb") as out:
            out.writelines(chunks)
            if self.fsync:
                out.flush()
                os.fsync(out.fileno())
        os.replace(tmp_name, self.root / f"{digest}.dcm")

    def sync(self) -> None:
        """Nothing to do: each file was made durable before its rename."""


class GroupKeeper(FileKeeper):
    """Keeps instances in mutualrec's local-directory store, durable at each :meth:`sync`."""

    def __init__(self, root: Path, fsync: bool) -> None:
        super().__init__(root, fsync)
        self.store = FileSystemObjectStore(root / "objects", fsync=fsync)

    def write(self, chunks: list[bytes]) -> None:
        """Hash one instance's bytes and put them under that name; durable at the next sync."""
        name = _sha256(chunks)
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self.store.put(f"{name[:2]}/{name}.dcm", io.BytesIO(data), len(data))

    def sync(self) -> None:
        """The store's barrier for everything put so far."""
        self.store.sync()


class NullIngest(ingest_pb2_grpc.IngestServiceServicer):  # type: ignore[misc]  # untyped stub
    """Reads every message of an upload and answers STORED for each complete instance."""

    def __init__(self, keeper: FileKeeper | None) -> None:
        self.keeper = keeper

    async def UploadStudy(
        self,
        request_iterator: AsyncIterator[ingest_pb2.UploadStudyRequest],
        context: grpc.aio.ServicerContext[object, object],
    ) -> ingest_pb2.UploadStudyResponse:
        """Count instances; keep each one as a file with ``--store``, else nothing."""
        loop = asyncio.get_running_loop()
        instances = 0
        chunks: list[bytes] = []
        writing: set[asyncio.Future[None]] = set()
        unsynced = 0
        async for message in request_iterator:
            if message.WhichOneof("part") != "chunk":
                continue
            if self.keeper is not None:
                chunks.append(message.chunk.data)
            if message.chunk.end_of_instance:
                instances += 1
                if self.keeper is not None:
                    keeper = self.keeper
                    writing.add(loop.run_in_executor(keeper.threads, keeper.write, chunks))
                    chunks = []
                    unsynced += 1
                    if unsynced >= MAX_BATCH:
                        await asyncio.gather(*writing)
                        writing = set()
                        await loop.run_in_executor(keeper.threads, keeper.sync)
                        unsynced = 0
                    if len(writing) >= IN_FLIGHT:
                        _, writing = await asyncio.wait(
                            writing, return_when=asyncio.FIRST_COMPLETED
                        )
        if writing:
            await asyncio.gather(*writing)
        if self.keeper is not None:
            await loop.run_in_executor(self.keeper.threads, self.keeper.sync)
        return ingest_pb2.UploadStudyResponse(counts=ingest_pb2.UploadCounts(stored=instances))


async def serve(listen: str, keeper: FileKeeper | None) -> None:
    """Serve until SIGTERM or SIGINT."""
    limit = max_message_bytes(load_settings({}))
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
            ("grpc.so_reuseport", 0),
        ]
    )
    ingest_pb2_grpc.add_IngestServiceServicer_to_server(NullIngest(keeper), server)
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
    parser.add_argument("--store", type=Path, help="keep each instance as a file below this")
    parser.add_argument("--no-fsync", dest="fsync", action="store_false")
    parser.add_argument(
        "--group", action="store_true", help="mutualrec's store: one barrier per batch"
    )
    args = parser.parse_args()
    kind = GroupKeeper if args.group else FileKeeper
    keeper = kind(args.store, args.fsync) if args.store else None
    asyncio.run(serve(args.listen, keeper))
    return 0


if __name__ == "__main__":
    sys.exit(main())
