"""Client side of ImagingService and IdentityService: a patient's app, a doctor's viewer."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import grpc

from mutualrec.client.upload import auth_metadata
from mutualrec.v1 import imaging_pb2, imaging_pb2_grpc


def list_all_studies(
    channel: grpc.Channel, token: str, request: imaging_pb2.ListStudiesRequest
) -> Iterator[imaging_pb2.StudyListing]:
    """Every study the request's filters select, page after page."""
    stub = imaging_pb2_grpc.ImagingServiceStub(channel)
    page = imaging_pb2.ListStudiesRequest()
    page.CopyFrom(request)
    while True:
        response: imaging_pb2.ListStudiesResponse = stub.ListStudies(
            page, metadata=auth_metadata(token)
        )
        yield from response.studies
        if not response.next_page_token:
            return
        page.page_token = response.next_page_token


class DownloadError(Exception):
    """The server's stream did not make whole, intact files."""


@dataclass(frozen=True, slots=True)
class SavedFile:
    """A downloaded instance, written and checked against its SHA-256."""

    path: Path
    sop_instance_uid: str
    size_bytes: int


def _safe_relative(name: str) -> Path:
    # The server names files from UIDs; a viewer must still never write outside its folder.
    parts = PurePosixPath(name).parts
    if not parts or any(p in ("", ".", "..") or "\\" in p for p in parts) or name.startswith("/"):
        raise DownloadError(f"refusing the file name {name!r}")
    return Path(*parts)


def download_study(
    channel: grpc.Channel,
    token: str,
    study_instance_uid: str,
    folder: Path,
    series_instance_uid: str = "",
) -> list[SavedFile]:
    """Save the study's instances under ``folder``, each checked against its SHA-256.

    Each file is written to a temporary name and renamed once whole and verified, so an
    interrupted download leaves no truncated ``.dcm`` behind.
    """
    stub = imaging_pb2_grpc.ImagingServiceStub(channel)
    stream = stub.DownloadStudy(
        imaging_pb2.DownloadStudyRequest(
            study_instance_uid=study_instance_uid, series_instance_uid=series_instance_uid
        ),
        metadata=auth_metadata(token),
    )
    saved: list[SavedFile] = []
    current: imaging_pb2.DownloadedInstance | None = None
    handle = None
    digest = hashlib.sha256()
    try:
        for message in stream:
            if message.HasField("instance"):
                if current is not None:
                    raise DownloadError("an instance began before the previous one ended")
                current = message.instance
                target = folder / _safe_relative(current.file_name)
                target.parent.mkdir(parents=True, exist_ok=True)
                # Spans several messages: closed at the instance's end, or in `finally`.
                handle = tempfile.NamedTemporaryFile(  # noqa: SIM115
                    dir=target.parent, prefix=".part-", delete=False
                )
                digest = hashlib.sha256()
            if current is None or handle is None:
                raise DownloadError("data arrived before its instance's description")
            handle.write(message.data)
            digest.update(message.data)
            if message.end_of_instance:
                handle.close()
                if digest.hexdigest() != current.sha256:
                    os.unlink(handle.name)
                    raise DownloadError(f"{current.sop_instance_uid} failed its SHA-256 check")
                target = folder / _safe_relative(current.file_name)
                os.replace(handle.name, target)
                saved.append(SavedFile(target, current.sop_instance_uid, current.size_bytes))
                current, handle = None, None
        if current is not None:
            raise DownloadError(f"the stream ended inside {current.sop_instance_uid}")
    finally:
        if handle is not None:
            handle.close()
            Path(handle.name).unlink(missing_ok=True)
    return saved
