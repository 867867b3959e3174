"""storage.keys: every layout is a valid object key, and the sweep reads back what a thumbnail
key was derived from."""

from __future__ import annotations

from mutualrec.storage.keys import (
    PREFIXES,
    document_key,
    instance_key,
    thumbnail_keys,
    thumbnail_source,
)
from mutualrec.storage.objects import check_key

SHA = "ab" * 32


def test_every_layout_is_a_valid_key_under_a_swept_prefix() -> None:
    keys = [
        instance_key("1.2.3", "1.2.3.4", "1.2.3.4.5", SHA),
        document_key(SHA),
        *thumbnail_keys("1.2.3.4", SHA),
    ]
    for key in keys:
        assert check_key(key) == key
        assert key.startswith(PREFIXES)


def test_a_thumbnail_key_names_its_series_and_instance_hash() -> None:
    png, none = thumbnail_keys("1.2.3.4", SHA)
    assert thumbnail_source(png) == ("1.2.3.4", SHA)
    assert thumbnail_source(none) == ("1.2.3.4", SHA)
    assert thumbnail_source("thumbnails/stray") is None
