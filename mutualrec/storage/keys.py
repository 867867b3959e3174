"""Every object-key layout of the store, in one place.

Keys are deterministic, built from validated UIDs and content hashes, so a re-send finds its
object and the sweep can tell from a key what index row would refer to it.
"""

from __future__ import annotations

DICOM_PREFIX = "dicom/"
FHIR_PREFIX = "fhir/"
THUMBNAIL_PREFIX = "thumbnails/"
# Every prefix the service writes under; the sweep looks at these and nothing else.
PREFIXES = (DICOM_PREFIX, FHIR_PREFIX, THUMBNAIL_PREFIX)


def instance_key(
    study_instance_uid: str, series_instance_uid: str, sop_instance_uid: str, sha256: str
) -> str:
    """Where a version of a DICOM instance is kept: one directory per series, the content hash
    keeping every version of an instance apart."""
    return (
        f"{DICOM_PREFIX}{study_instance_uid}/{series_instance_uid}/{sop_instance_uid}.{sha256}.dcm"
    )


def document_key(sha256: str) -> str:
    """Where the original FHIR document with this digest is kept."""
    return f"{FHIR_PREFIX}{sha256}.json"


def thumbnail_keys(series_instance_uid: str, instance_sha256: str) -> tuple[str, str]:
    """Where a series' thumbnail, rendered from the instance with this content hash, is kept:
    the PNG, and the text saying why none could be rendered."""
    base = f"{THUMBNAIL_PREFIX}{series_instance_uid}/{instance_sha256}"
    return base + ".png", base + ".none.txt"


def thumbnail_source(key: str) -> tuple[str, str] | None:
    """(series UID, instance SHA-256) a thumbnail key was derived from; None for another key."""
    parts = key.split("/")
    if len(parts) != 3:
        return None
    sha256 = parts[2].split(".", 1)[0]
    return parts[1], sha256
