"""The object-store contract, run against the directory backend and a real S3 server."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mutualrec.config import S3Settings
from mutualrec.storage.fs_store import FileSystemObjectStore
from mutualrec.storage.objects import ObjectNotFound, ObjectStore, ObjectStoreError
from mutualrec.storage.s3_store import S3ObjectStore

MiB = 1024 * 1024


def _s3_settings(server: Any, bucket: str, secret: str | None = None) -> S3Settings:
    return S3Settings(
        endpoint=server.endpoint,
        access_key=server.access_key,
        secret_key=secret or server.secret_key,
        bucket=bucket,
        secure=False,
        region=server.region,
    )


@pytest.fixture(params=["directory", pytest.param("s3", marks=pytest.mark.s3)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStore]:
    if request.param == "directory":
        yield FileSystemObjectStore(tmp_path / "objects")
    else:
        server = request.getfixturevalue("s3_server")
        bucket = f"t-{uuid.uuid4().hex[:12]}"
        yield S3ObjectStore(_s3_settings(server, bucket), create_bucket=True)


def _get(store: ObjectStore, key: str, offset: int = 0, length: int | None = None) -> bytes:
    return b"".join(store.open(key, offset, length))


def test_put_get_stat(store: ObjectStore) -> None:
    data = bytes(range(256)) * 1000
    store.put("dicom/1.2/3.4/5.6/abc.dcm", io.BytesIO(data), len(data))
    assert _get(store, "dicom/1.2/3.4/5.6/abc.dcm") == data
    assert store.stat("dicom/1.2/3.4/5.6/abc.dcm").size == len(data)


def test_range_reads(store: ObjectStore) -> None:
    data = b"0123456789" * 100
    store.put("k/range", io.BytesIO(data), len(data))
    assert _get(store, "k/range", 10, 5) == data[10:15]
    assert _get(store, "k/range", 995) == data[995:]


def test_large_object_streams_in_chunks(store: ObjectStore) -> None:
    data = (b"abcdefgh" * (MiB // 8)) * 3 + b"tail"
    store.put("big/object", io.BytesIO(data), len(data))
    chunks = list(store.open("big/object"))
    assert len(chunks) > 1
    assert b"".join(chunks) == data


def test_overwrite_is_whole(store: ObjectStore) -> None:
    store.put("k/v", io.BytesIO(b"first"), 5)
    store.put("k/v", io.BytesIO(b"second!"), 7)
    assert _get(store, "k/v") == b"second!"


def test_missing_objects(store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFound):
        store.stat("no/such/key")
    with pytest.raises(ObjectNotFound):
        _get(store, "no/such/key")
    store.delete("no/such/key")


def test_list_by_prefix_and_delete(store: ObjectStore) -> None:
    for key in ("a/1/x", "a/1/y", "a/2/z", "b/1/x"):
        store.put(key, io.BytesIO(key.encode()), len(key))
    assert sorted(o.key for o in store.list("a/")) == ["a/1/x", "a/1/y", "a/2/z"]
    assert sorted(o.key for o in store.list("a/1/")) == ["a/1/x", "a/1/y"]
    assert {o.size for o in store.list("b/")} == {5}
    store.delete("a/1/x")
    assert sorted(o.key for o in store.list("a/")) == ["a/1/y", "a/2/z"]


@pytest.mark.parametrize("key", ["../escape", "/abs", "a//b", "a/../b", "", "a b"])
def test_unsafe_keys_are_refused(store: ObjectStore, key: str) -> None:
    with pytest.raises(ValueError, match="object key"):
        store.put(key, io.BytesIO(b"x"), 1)


def test_short_stream_leaves_nothing(tmp_path: Path) -> None:
    store = FileSystemObjectStore(tmp_path / "objects")
    with pytest.raises(ObjectStoreError):
        store.put("k/short", io.BytesIO(b"abc"), 10)
    assert list(store.list("")) == []
    assert list((tmp_path / "objects" / ".tmp").iterdir()) == []


@pytest.mark.s3
def test_wrong_s3_credentials_are_an_error(s3_server: Any) -> None:
    with pytest.raises(ObjectStoreError):
        S3ObjectStore(_s3_settings(s3_server, "anything", secret="wrong"), create_bucket=True)


@pytest.mark.s3
def test_missing_bucket_is_not_created_unless_asked(s3_server: Any) -> None:
    with pytest.raises(ObjectStoreError, match="does not exist"):
        S3ObjectStore(_s3_settings(s3_server, f"absent-{uuid.uuid4().hex[:8]}"))


def test_sync_after_puts(store: ObjectStore) -> None:
    store.put("dicom/a/b/c.dcm", io.BytesIO(b"x"), 1)
    store.sync()
    store.sync()
    assert [o.key for o in store.list("dicom/")] == ["dicom/a/b/c.dcm"]


def test_directory_store_syncs_every_changed_directory(tmp_path: Path) -> None:
    store = FileSystemObjectStore(tmp_path / "objects")
    store.put("dicom/a/b/c.dcm", io.BytesIO(b"x"), 1)
    root = tmp_path / "objects"
    # The file's directory and the parents of every directory created for it.
    assert store._unsynced_dirs == {
        root,
        root / "dicom",
        root / "dicom" / "a",
        root / "dicom" / "a" / "b",
    }
    assert store._unsynced_files == {root / "dicom" / "a" / "b" / "c.dcm"}
    store.sync()
    assert store._unsynced_dirs == set()
    assert store._unsynced_files == set()
    store.put("dicom/a/b/d.dcm", io.BytesIO(b"y"), 1)
    assert store._unsynced_dirs == {root / "dicom" / "a" / "b"}


def test_directory_store_barrier_covers_a_batch(tmp_path: Path) -> None:
    store = FileSystemObjectStore(tmp_path / "objects")
    batch = {f"dicom/s/{n}/{n}.dcm": bytes([n]) * (n * 1000 + 1) for n in range(20)}
    for key, data in batch.items():
        store.put(key, io.BytesIO(data), len(data))
    store.sync()
    assert {key: _get(store, key) for key in batch} == batch
    assert store._unsynced_files == set()


def test_directory_store_sync_with_nothing_pending(tmp_path: Path) -> None:
    store = FileSystemObjectStore(tmp_path / "objects")
    store.sync()
    store.put("k/a", io.BytesIO(b"a"), 1)
    store.sync()
    store.sync()
    assert _get(store, "k/a") == b"a"


def test_directory_store_sync_after_a_pending_object_was_deleted(tmp_path: Path) -> None:
    store = FileSystemObjectStore(tmp_path / "objects")
    store.put("k/l/gone", io.BytesIO(b"g"), 1)
    store.put("k/kept", io.BytesIO(b"k"), 1)
    store.delete("k/l/gone")
    store.sync()
    assert [o.key for o in store.list("k/")] == ["k/kept"]


def test_put_over_a_torn_leftover_stores_the_bytes_sent(tmp_path: Path) -> None:
    # A crash after a rename but before the barrier can leave a short or empty file under the
    # key; sending the object again must replace it, never keep it.
    store = FileSystemObjectStore(tmp_path / "objects")
    data = b"0123456789" * 1000
    torn = tmp_path / "objects" / "dicom" / "s" / "i.dcm"
    torn.parent.mkdir(parents=True)
    torn.write_bytes(data[:100])
    store.put("dicom/s/i.dcm", io.BytesIO(data), len(data))
    store.sync()
    assert _get(store, "dicom/s/i.dcm") == data
    torn.write_bytes(b"")
    store.put("dicom/s/i.dcm", io.BytesIO(data), len(data))
    assert _get(store, "dicom/s/i.dcm") == data
    assert list((tmp_path / "objects" / ".tmp").iterdir()) == []


def test_directory_store_renames_without_replacing_unless_asked(tmp_path: Path) -> None:
    # A new key takes the no-replace rename; an existing one (perhaps an object a row points
    # at) is the case that must be made durable before its rename.
    store = FileSystemObjectStore(tmp_path / "objects")
    source = tmp_path / "objects" / ".tmp" / "new"
    source.write_bytes(b"new")
    target = tmp_path / "objects" / "k"
    assert store._rename_new(str(source), target) is True
    assert target.read_bytes() == b"new"
    source.write_bytes(b"newer")
    assert store._rename_new(str(source), target) is False
    assert target.read_bytes() == b"new"
    store.put("k", io.BytesIO(b"newer"), 5)
    assert _get(store, "k") == b"newer"
