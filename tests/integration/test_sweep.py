"""The sweep removes orphaned blobs, and only those, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import os
from typing import Any

from sqlalchemy import select

from mutualrec.client.upload import auth_metadata
from mutualrec.identity import parse_identity, patient_key
from mutualrec.security.patient_tokens import mint_patient_token
from mutualrec.storage.fs_store import FileSystemObjectStore
from mutualrec.storage.models import Instance, LabResultVersion
from mutualrec.storage.sealed_store import SealedDocuments
from mutualrec.storage.sweep import sweep
from mutualrec.v1 import imaging_pb2, imaging_pb2_grpc
from tests.conftest import RunningServer
from tests.fhir_docs import bundle, observation, submit
from tests.helpers import file_messages, header_message, study_files, upload

HOUR = dt.timedelta(hours=1)


def _directory(server: RunningServer) -> FileSystemObjectStore:
    """The directory behind the server's store (which seals FHIR originals on top of it)."""
    store = server.runtime.store
    assert isinstance(store, SealedDocuments)
    assert isinstance(store.inner, FileSystemObjectStore)
    return store.inner


def _put(server: RunningServer, key: str, data: bytes, age: dt.timedelta) -> None:
    server.runtime.store.put(key, io.BytesIO(data), len(data))
    store = _directory(server)
    moment = (dt.datetime.now(dt.UTC) - age).timestamp()
    os.utime(store.root / key, (moment, moment))


def _hold_everything(server: RunningServer, manifest: dict[str, Any]) -> None:
    """A study, a lab document and a rendered thumbnail: the three kinds of blobs."""
    sample = manifest["mr_brain_hosp_b"]
    key = server.add_hospital(sample["institution_code"])
    upload(server.channel, key, [header_message(sample), *file_messages(study_files(sample))])
    submit(server.channel, key, bundle([observation("SWEEP-1")]))
    settings = server.runtime.settings
    token = mint_patient_token(
        settings.token_secret,
        patient_key(
            parse_identity("RESIDENT_ID_CARD", sample["patient"]["document_number"]),
            settings.patient_key_secret,
        ),
        HOUR,
    ).token
    imaging_pb2_grpc.ImagingServiceStub(server.channel).GetThumbnail(
        imaging_pb2.GetThumbnailRequest(
            study_instance_uid=sample["study_instance_uid"],
            series_instance_uid=sample["files"][0]["series_instance_uid"],
        ),
        metadata=auth_metadata(token),
    )


def _held_hashes(server: RunningServer) -> dict[str, str]:
    """Every referenced blob key and the SHA-256 the index expects of it."""
    with server.runtime.sessions() as session:
        rows = session.execute(select(Instance.object_key, Instance.sha256)).tuples()
        dicom = {key: sha256 for key, sha256 in rows}
        documents = set(session.scalars(select(LabResultVersion.document_key)))
    for key in documents:
        dicom[key] = key.removeprefix("fhir/").removesuffix(".json")
    return dicom


def test_the_sweep_removes_old_orphans_and_keeps_everything_referenced(
    server: RunningServer, manifest: dict[str, Any]
) -> None:
    _hold_everything(server, manifest)
    store = server.runtime.store
    directory = _directory(server)
    held = _held_hashes(server)
    thumbnails = [info.key for info in store.list("thumbnails/")]
    assert len(thumbnails) == 1
    orphans = {
        "dicom/1.2.3/1.2.4/1.2.5.deadbeef.dcm": b"half an upload",
        "fhir/" + "0" * 64 + ".json": b"{}",
        "thumbnails/1.2.4/" + "1" * 64 + ".png": b"\x89PNG stale",
    }
    for key, data in orphans.items():
        _put(server, key, data, age=2 * HOUR)
    _put(server, "dicom/1.2.3/1.2.4/1.2.6.cafe.dcm", b"in flight", age=dt.timedelta(minutes=5))
    _put(server, "elsewhere/notes.txt", b"not ours", age=48 * HOUR)
    # Referenced blobs as old as the orphans: age alone must not condemn them.
    old = (dt.datetime.now(dt.UTC) - 3 * HOUR).timestamp()
    for key in [*held, *thumbnails]:
        os.utime(directory.root / key, (old, old))

    # Writes a crash cut short leave temporary files; only old ones are removed.
    stale, fresh = directory.root / ".tmp" / "tmp-stale", directory.root / ".tmp" / "tmp-fresh"
    stale.write_bytes(b"cut short")
    fresh.write_bytes(b"being written")
    os.utime(stale, (old, old))
    # The file system stamps with the kernel's clock, the sweep judges by the one it is given:
    # set the fresh one's time too, so a test run with a moved clock sees the same ages.
    moment = dt.datetime.now(dt.UTC).timestamp()
    os.utime(fresh, (moment, moment))

    dry = sweep(store, server.runtime.sessions, now=dt.datetime.now(dt.UTC), remove=False)
    assert sorted(dry.removed_keys) == sorted(orphans)
    assert all(store.stat(key) for key in orphans)

    report = sweep(store, server.runtime.sessions, now=dt.datetime.now(dt.UTC))

    assert sorted(report.removed_keys) == sorted(orphans)
    # The FHIR orphan is held sealed: 109 bytes of header and tag around its 2 bytes.
    assert report.removed_bytes == sum(len(data) for data in orphans.values()) + 109
    assert report.recent == 1
    assert report.removed_temporaries == 1
    assert not stale.exists()
    assert fresh.exists()
    assert dry.removed_temporaries == 0
    assert report.referenced == len(held) + len(thumbnails)
    remaining = {info.key for info in store.list("")}
    assert remaining == {
        *held,
        *thumbnails,
        "dicom/1.2.3/1.2.4/1.2.6.cafe.dcm",
        "elsewhere/notes.txt",
    }
    for key, sha256 in held.items():
        assert hashlib.sha256(b"".join(store.open(key))).hexdigest() == sha256
    again = sweep(store, server.runtime.sessions, now=dt.datetime.now(dt.UTC))
    assert again.removed == 0
