"""Smoke test: the local Swift+s3api server speaks enough S3 for the minio SDK.

This checks the test fixture itself (tests/s3/server.py), not mutualrec code,
so that a failure in the S3 backend's tests can be told apart from a broken
server. Every operation the backend relies on is exercised once over real HTTP.
"""

from __future__ import annotations

import hashlib
import io
import os
import time
from collections.abc import Iterator

import pytest
from minio import Minio
from minio.error import S3Error

from tests.s3.server import LocalS3Server, s3_server_available

pytestmark = pytest.mark.s3

MiB = 1024 * 1024
BUCKET = "smoke-bucket"


@pytest.fixture(scope="module")
def s3_server() -> Iterator[LocalS3Server]:
    """One server for the whole module: start-up is the slow part."""
    reason = s3_server_available()
    if reason is not None:
        # In CI a missing install must fail loudly, not hide behind a skip.
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    start = time.monotonic()
    with LocalS3Server() as server:
        print(f"local S3 server ready in {time.monotonic() - start:.2f} s at {server.endpoint}")
        yield server


@pytest.fixture(scope="module")
def client(s3_server: LocalS3Server) -> Minio:
    """A minio client for the server, with the bucket created."""
    mc = Minio(
        s3_server.endpoint,
        access_key=s3_server.access_key,
        secret_key=s3_server.secret_key,
        secure=s3_server.secure,
        region=s3_server.region,
    )
    mc.make_bucket(BUCKET)
    return mc


def _read(mc: Minio, name: str, offset: int = 0, length: int = 0) -> bytes:
    """GET an object (or a range of it) and release the connection."""
    resp = mc.get_object(BUCKET, name, offset=offset, length=length)
    try:
        return bytes(resp.read())
    finally:
        resp.close()
        resp.release_conn()


def test_bucket_exists(client: Minio) -> None:
    assert client.bucket_exists(BUCKET)
    assert not client.bucket_exists("no-such-bucket")


def test_put_get_range_stat_remove(client: Minio) -> None:
    data = os.urandom(100_000)
    result = client.put_object(BUCKET, "a/one.bin", io.BytesIO(data), len(data))
    assert result.etag == hashlib.md5(data).hexdigest()

    assert _read(client, "a/one.bin") == data
    assert _read(client, "a/one.bin", offset=1000, length=500) == data[1000:1500]

    stat = client.stat_object(BUCKET, "a/one.bin")
    assert stat.size == len(data)
    assert stat.etag == hashlib.md5(data).hexdigest()

    client.remove_object(BUCKET, "a/one.bin")
    with pytest.raises(S3Error) as err:
        client.stat_object(BUCKET, "a/one.bin")
    assert err.value.code in {"NoSuchKey", "ResponseError"}  # HEAD has no body


def test_multipart_upload_unknown_length(client: Minio) -> None:
    # length=-1 forces minio to split into part_size parts: 5 + 5 + 2 MiB.
    data = os.urandom(12 * MiB)
    client.put_object(BUCKET, "big/obj.bin", io.BytesIO(data), length=-1, part_size=5 * MiB)

    stat = client.stat_object(BUCKET, "big/obj.bin")
    assert stat.size == len(data)
    # A multipart ETag is md5(concatenated part md5s) + "-<parts>".
    assert stat.etag is not None
    assert stat.etag.endswith("-3")

    assert _read(client, "big/obj.bin") == data
    # A range that spans the boundary between part 1 and part 2.
    lo = 5 * MiB - 10
    assert _read(client, "big/obj.bin", offset=lo, length=20) == data[lo : lo + 20]
    client.remove_object(BUCKET, "big/obj.bin")


def test_list_by_prefix_recursive(client: Minio) -> None:
    names = ["list/x/1", "list/x/2", "list/y/3", "other/4"]
    for name in names:
        client.put_object(BUCKET, name, io.BytesIO(name.encode()), len(name))

    listed = sorted(o.object_name or "" for o in client.list_objects(BUCKET, "list/", True))
    assert listed == ["list/x/1", "list/x/2", "list/y/3"]

    top = sorted(o.object_name or "" for o in client.list_objects(BUCKET, "list/"))
    assert top == ["list/x/", "list/y/"]

    for name in names:
        client.remove_object(BUCKET, name)
    assert list(client.list_objects(BUCKET, "list/", True)) == []


def test_wrong_secret_is_rejected(s3_server: LocalS3Server, client: Minio) -> None:
    bad = Minio(
        s3_server.endpoint,
        access_key=s3_server.access_key,
        secret_key="not-the-secret",
        secure=s3_server.secure,
        region=s3_server.region,
    )
    with pytest.raises(S3Error) as err:
        bad.list_objects(BUCKET).__next__()
    assert err.value.code in {"SignatureDoesNotMatch", "AccessDenied"}
