"""Annex L terms the catalog uses beyond the common ones, and how headers spell them."""

from __future__ import annotations

import pytest

from mutualrec.matching.body_part import normalize_body_part


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("ABDOMENPELVIS", "ABDOMENPELVIS"),
        ("Abdomen Pelvis", "ABDOMENPELVIS"),
        ("abdomen and pelvis", "ABDOMENPELVIS"),
        ("HEADNECK", "HEADNECK"),
        ("Head and Neck", "HEADNECK"),
        ("头颈部", "HEADNECK"),
        ("BILEDUCT", "BILEDUCT"),
        ("胆道", "BILEDUCT"),
        ("CAROTID", "CAROTID"),
        ("颈动脉", "CAROTID"),
        ("PROSTATE", "PROSTATE"),
        ("前列腺", "PROSTATE"),
        ("KIDNEY", "KIDNEY"),
        # The single-part terms stay what they were.
        ("HEAD", "HEAD"),
        ("NECK", "NECK"),
        ("PELVIS", "PELVIS"),
    ],
)
def test_catalog_terms_normalize(raw: str, expected: str) -> None:
    assert normalize_body_part(raw) == expected
