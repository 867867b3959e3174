"""Client side of UploadStudy: files and folders to a stream of chunk messages."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc

from mutualrec.v1 import common_pb2, ingest_pb2, ingest_pb2_grpc

CHUNK_BYTES = 1024 * 1024


def find_files(paths: Iterable[str | Path]) -> list[Path]:
    """Every regular file named or below a named folder, in a stable order."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for dirpath, dirnames, filenames in os.walk(path):
                dirnames.sort()
                found.extend(
                    Path(dirpath) / name for name in sorted(filenames) if not name.startswith(".")
                )
        elif path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"no such file or folder: {path}")
    return found


@dataclass
class Progress:
    """Counters a terminal progress line reads."""

    files_total: int
    bytes_total: int
    files_sent: int = 0
    bytes_sent: int = 0


def upload_requests(
    header: ingest_pb2.UploadHeader,
    files: list[Path],
    progress: Progress | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> Iterator[ingest_pb2.UploadStudyRequest]:
    """The messages of one upload: the header, then every file as chunks, read lazily."""
    yield ingest_pb2.UploadStudyRequest(header=header)
    for path in files:
        with path.open("rb") as handle:
            block = handle.read(CHUNK_BYTES)
            while True:
                following = handle.read(CHUNK_BYTES)
                yield ingest_pb2.UploadStudyRequest(
                    chunk=ingest_pb2.InstanceChunk(
                        source_name=path.name, data=block, end_of_instance=not following
                    )
                )
                if progress is not None:
                    progress.bytes_sent += len(block)
                if not following:
                    break
                block = following
        if progress is not None:
            progress.files_sent += 1
            if on_progress is not None:
                on_progress(progress)


def make_header(
    document_number: str,
    document_type: str = "RESIDENT_ID_CARD",
    issuing_country: str = "",
    accession_number: str = "",
    performed_item_code: str = "",
) -> ingest_pb2.UploadHeader:
    """An upload header for a patient's identity document."""
    return ingest_pb2.UploadHeader(
        patient=common_pb2.PatientIdentity(
            document_type=common_pb2.IdentityDocumentType.Value(document_type),  # type: ignore[arg-type]
            document_number=document_number,
            issuing_country=issuing_country,
        ),
        accession_number=accession_number,
        performed_item_code=performed_item_code,
    )


def auth_metadata(api_key: str) -> tuple[tuple[str, str], ...]:
    """The call metadata that carries an API key (none without one: a client certificate
    names the hospital)."""
    return (("authorization", f"Bearer {api_key}"),) if api_key else ()


def upload_study(
    channel: grpc.Channel,
    api_key: str,
    header: ingest_pb2.UploadHeader,
    files: list[Path],
    *,
    on_progress: Callable[[Progress], None] | None = None,
    timeout: float | None = None,
) -> ingest_pb2.UploadStudyResponse:
    """Upload ``files`` as one study and return the server's per-instance outcomes."""
    stub = ingest_pb2_grpc.IngestServiceStub(channel)
    progress = Progress(len(files), sum(p.stat().st_size for p in files))
    response: ingest_pb2.UploadStudyResponse = stub.UploadStudy(
        upload_requests(header, files, progress, on_progress),
        metadata=auth_metadata(api_key),
        timeout=timeout,
    )
    return response
