"""Object store on S3 through the ``minio`` SDK: MinIO in production, or any S3 service."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import BinaryIO

from minio import Minio
from minio.error import MinioException, S3Error

from mutualrec.config import S3Settings
from mutualrec.storage.objects import ObjectInfo, ObjectNotFound, ObjectStoreError, check_key

_READ_CHUNK = 1024 * 1024
# S3 needs a part size when the length is unknown; 16 MiB keeps a 2 GB study under 10k parts.
_PART_SIZE = 16 * 1024 * 1024
_MISSING = {"NoSuchKey", "NoSuchObject", "ResourceNotFound"}


class S3ObjectStore:
    """Objects in one bucket; a PUT is atomic in S3, so no temporary keys are needed."""

    def __init__(self, settings: S3Settings, *, create_bucket: bool = False) -> None:
        self.bucket = settings.bucket
        self.description = f"s3 bucket {settings.bucket} at {settings.endpoint}"
        self.client = Minio(
            settings.endpoint,
            access_key=settings.access_key,
            secret_key=settings.secret_key,
            secure=settings.secure,
            region=settings.region,
        )
        try:
            if not self.client.bucket_exists(self.bucket):
                if not create_bucket:
                    raise ObjectStoreError(f"bucket {self.bucket} does not exist")
                self.client.make_bucket(self.bucket)
        except MinioException as exc:
            raise ObjectStoreError(f"{self.description}: {exc}") from exc

    def put(self, key: str, stream: BinaryIO, length: int) -> None:
        """Upload ``length`` bytes of ``stream`` under ``key`` (multipart when large)."""
        try:
            self.client.put_object(
                self.bucket, check_key(key), stream, length, part_size=_PART_SIZE
            )
        except MinioException as exc:
            raise ObjectStoreError(f"put {key}: {exc}") from exc

    def open(self, key: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        """Stream the object (or a byte range of it) in chunks."""
        try:
            response = self.client.get_object(
                self.bucket, check_key(key), offset=offset, length=length or 0
            )
        except S3Error as exc:
            if exc.code in _MISSING:
                raise ObjectNotFound(key) from None
            raise ObjectStoreError(f"get {key}: {exc}") from exc
        except MinioException as exc:
            raise ObjectStoreError(f"get {key}: {exc}") from exc
        return self._drain(response)

    @staticmethod
    def _drain(response: object) -> Iterator[bytes]:
        try:
            yield from response.stream(_READ_CHUNK)  # type: ignore[attr-defined]
        finally:
            response.close()  # type: ignore[attr-defined]
            response.release_conn()  # type: ignore[attr-defined]

    def stat(self, key: str) -> ObjectInfo:
        """Size of the object under ``key``."""
        try:
            result = self.client.stat_object(self.bucket, check_key(key))
        except S3Error as exc:
            if exc.code in _MISSING:
                raise ObjectNotFound(key) from None
            raise ObjectStoreError(f"stat {key}: {exc}") from exc
        return ObjectInfo(key, int(result.size or 0), result.last_modified)

    def delete(self, key: str) -> None:
        """Remove the object; S3 treats a missing key as success already."""
        try:
            self.client.remove_object(self.bucket, check_key(key))
        except MinioException as exc:
            raise ObjectStoreError(f"delete {key}: {exc}") from exc

    def sync(self) -> None:
        """Nothing to do: S3 acknowledges a PUT once the object is durable."""

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects whose key starts with ``prefix``, in key order (as S3 lists them)."""
        try:
            for item in self.client.list_objects(self.bucket, prefix=prefix, recursive=True):
                yield ObjectInfo(str(item.object_name), int(item.size or 0), item.last_modified)
        except MinioException as exc:
            raise ObjectStoreError(f"list {prefix}: {exc}") from exc

    def remove_stale_temporaries(self, before: dt.datetime) -> int:
        """Nothing to remove: a PUT is atomic, and S3 (or a bucket lifecycle rule) discards the
        parts of an abandoned multipart upload."""
        return 0
