#!/usr/bin/env python3
"""A CheckOrder server that does only what any check must: the transport and the two statements.

It speaks mutualrec's contract with the same grpc.aio server as ``mutualrec serve`` (one
process, or several on one port with SO_REUSEPORT), and per call does what no implementation of
the check can skip on PostgreSQL: key the patient (resident ID validation and HMAC), run the hot
read of ``mutualrec.storage.recognition_index`` (the patient's rows of the ordered items), and
record a check with five lines and thirteen statistics deltas through the same prepared
statement the server uses. Everything else is left out: no credential, no rate limit, no audit
entry, no catalog or code mapping, no rules (every line is a canned NO_RESULT), a canned reply.

So its rate and latency under bench/check_bench.py's load are a floor under any CheckOrder built
on CPython, grpcio and psycopg on the same machine: what the real server cannot beat, however
lean its own logic. Diagnostic only.

    PYTHONPATH=. .venv/bin/python bench/floor_check_server.py \\
        --database-url "host=/var/run/postgresql user=postgres dbname=mutualrec_city" \\
        --secret SECRET [--processes 2] [--driver thread|async] [--no-sql]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Sequence
from typing import Any

import grpc
import psycopg

# Run as a script, this file's directory is on sys.path, so the shared harness imports.
from harness import free_port, wait_listening

from mutualrec.identity import parse_identity, patient_key
from mutualrec.statistics.report import GroupBy
from mutualrec.statistics.tally import TALLY_REASONS, DayDeltas, TallyRow
from mutualrec.storage.recognition_index import (
    RECORD_CHECK_SQL,
    RESULTS_SQL,
    CheckLineRecord,
    CheckRecord,
    record_check_parameters,
)
from mutualrec.v1 import recognition_pb2, recognition_pb2_grpc

LINES = 5
# What one check of five lines appends to stat_delta in the real server (checks, items, the
# asker, its district and category, per item and per category), in the real column shape.
DELTA_KEYS = (
    [("district", "500103"), ("asking_institution", "1")]
    + [("item", f"ITEM-{n}") for n in range(LINES)]
    + [("category", "lab"), ("category", "imaging")]
    + [("issuing_institution", "-"), ("issuer_asker_pair", "-:1")]
    + [("district", "-"), ("asking_institution", "-")]
)
REPLY = recognition_pb2.CheckOrderResponse(
    check_id=str(uuid.uuid4()),
    received_at="2026-12-03T00:00:00Z",
    catalog_version="2026.1",
    total_estimated_saving="0.00",
    lines=[
        recognition_pb2.CheckLine(
            line=n,
            ordered_code=f"ITEM-{n}",
            item_code=f"ITEM-{n}",
            item_name="血常规",
            verdict=recognition_pb2.NO_RESULT,
            reason="no result of this item is held for the patient",
            estimated_saving="0.00",
        )
        for n in range(LINES)
    ],
)


def record_parameters(key: str, codes: Sequence[str]) -> list[Any]:
    """The parameters of the server's check statement for a canned five-line answer, laid
    out by ``recognition_index`` itself as the server's hot path does."""
    check_id = str(uuid.uuid4())
    now = dt.datetime.now(dt.UTC)
    ordered = (list(codes) + [f"ITEM-{n}" for n in range(LINES)])[:LINES]
    check = CheckRecord(
        id=check_id,
        institution_id=1,
        patient_key=key,
        received_at=now,
        catalog_version="2026.1",
        order_id="FLOOR",
        department="内科",
        emergency=False,
    )
    lines = [
        CheckLineRecord(
            check_id=check_id,
            line=n,
            ordered_code=ordered[n],
            item_code=f"ITEM-{n}",
            verdict="NO_RESULT",
            reason="no result of this item is held for the patient",
            result_ref="",
            result_version=0,
            issuer_institution_id=None,
            estimated_saving="0.00",
        )
        for n in range(LINES)
    ]
    # Every counter 1, as many stat_delta rows as the real check writes.
    deltas = DayDeltas(
        now.date(),
        tuple(
            TallyRow(
                GroupBy(group),
                group_key,
                checks=1,
                items_checked=1,
                items_recognizable=1,
                accepted=1,
                saving_fen=1,
                declined_by_reason=tuple((reason, 1) for reason in TALLY_REASONS),
                items_recognizable_own=1,
                accepted_own=1,
                saving_fen_own=1,
            )
            for group, group_key in DELTA_KEYS
        ),
    )
    return record_check_parameters(check, lines, deltas)


class FloorCheck(recognition_pb2_grpc.RecognitionServiceServicer):  # type: ignore[misc]
    """CheckOrder reduced to keying the patient and the two statements."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.secret = args.secret.encode("utf-8")
        self.local = threading.local()
        self.threads = concurrent.futures.ThreadPoolExecutor(args.connections)
        self.pool: asyncio.Queue[psycopg.AsyncConnection[Any]] = asyncio.Queue()

    async def open(self) -> None:
        """Open the async driver's connections."""
        if self.args.driver == "async" and self.args.sql:
            for _ in range(self.args.connections):
                connection = await psycopg.AsyncConnection.connect(
                    self.args.database_url, autocommit=True
                )
                await connection.execute("SET synchronous_commit TO OFF")
                self.pool.put_nowait(connection)

    def _connection(self) -> psycopg.Connection[Any]:
        connection: psycopg.Connection[Any] | None = getattr(self.local, "connection", None)
        if connection is None:
            connection = psycopg.connect(self.args.database_url, autocommit=True)
            connection.execute("SET synchronous_commit TO OFF")
            self.local.connection = connection
        return connection

    def _statements(self, key: str, codes: Sequence[str]) -> None:
        with self._connection().cursor() as cursor:
            cursor.execute(RESULTS_SQL, (key, list(codes)), prepare=True)
            cursor.fetchall()
            cursor.execute(RECORD_CHECK_SQL, record_parameters(key, codes), prepare=True)

    async def _statements_async(self, key: str, codes: Sequence[str]) -> None:
        connection = await self.pool.get()
        try:
            async with connection.cursor() as cursor:
                await cursor.execute(RESULTS_SQL, (key, list(codes)), prepare=True)
                await cursor.fetchall()
                await cursor.execute(RECORD_CHECK_SQL, record_parameters(key, codes), prepare=True)
        finally:
            self.pool.put_nowait(connection)

    async def CheckOrder(
        self, request: recognition_pb2.CheckOrderRequest, context: Any
    ) -> recognition_pb2.CheckOrderResponse:
        """Key the patient, read and record; answer the canned reply."""
        if self.args.sql:
            document = parse_identity("RESIDENT_ID_CARD", request.patient.document_number)
            key = patient_key(document, self.secret)
            codes = list(request.ordered_codes)
            if self.args.driver == "async":
                await self._statements_async(key, codes)
            else:
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(self.threads, self._statements, key, codes)
        return REPLY


async def serve(args: argparse.Namespace, port: int) -> None:
    """Serve on ``port`` until SIGTERM or SIGINT."""
    server = grpc.aio.server(options=[("grpc.so_reuseport", 1 if args.processes > 1 else 0)])
    servicer = FloorCheck(args)
    await servicer.open()
    recognition_pb2_grpc.add_RecognitionServiceServicer_to_server(servicer, server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    if args.worker is None:
        print(f"floor check listening on 127.0.0.1:{bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await server.stop(1)


def main() -> int:
    """Entry point: one server, or ``--processes`` of them on one port."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--database-url", default="", help="psycopg conninfo of the city")
    parser.add_argument("--secret", default="", help="the city's patient-key secret")
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--connections", type=int, default=4, help="per process")
    parser.add_argument("--driver", choices=("thread", "async"), default="thread")
    parser.add_argument(
        "--no-sql", dest="sql", action="store_false", help="the transport alone: no statements"
    )
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sql and not (args.database_url and args.secret):
        parser.error("--database-url and --secret are needed unless --no-sql")
    if args.processes == 1 or args.worker is not None:
        asyncio.run(serve(args, args.port))
        return 0
    port = free_port()
    workers = [
        subprocess.Popen([sys.executable, *sys.argv, "--worker", str(n), "--port", str(port)])
        for n in range(args.processes)
    ]
    wait_listening(port)
    print(f"floor check listening on 127.0.0.1:{port}", flush=True)

    def stop(*_: object) -> None:
        for worker in workers:
            worker.terminate()

    signal.signal(signal.SIGTERM, stop)
    for worker in workers:
        worker.wait()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
