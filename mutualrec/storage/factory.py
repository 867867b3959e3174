"""Builds the object store the settings name."""

from __future__ import annotations

from pathlib import Path

from mutualrec.config import Settings
from mutualrec.security.sealing import Keyring
from mutualrec.storage.fs_store import FileSystemObjectStore
from mutualrec.storage.objects import ObjectStore
from mutualrec.storage.sealed_store import SealedDocuments


def open_object_store(settings: Settings) -> ObjectStore:
    """The object store of ``settings``: a local directory or an S3 bucket.

    The embedded default creates what it needs; an S3 bucket is created only when it is the
    embedded-style deployment's own (auto-migrating) store, otherwise it must exist already.
    """
    inner: ObjectStore
    if settings.s3 is not None:
        # Imported only here: the S3 client and its HTTP stack (about 19 MiB) are no weight
        # for a server on a directory.
        from mutualrec.storage.s3_store import S3ObjectStore

        inner = S3ObjectStore(settings.s3, create_bucket=settings.auto_migrate)
    else:
        root = Path(settings.object_store_url.removeprefix("file://"))
        inner = FileSystemObjectStore(root, fsync=settings.fs_fsync)
    # FHIR originals hold residents' identity numbers: encrypted at rest, whichever backend.
    return SealedDocuments(inner, Keyring.of(settings.document_keys[0], settings.document_keys[1:]))
