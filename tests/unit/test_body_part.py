"""Normalizing body parts and contrast from DICOM headers as they arrive in the field."""

from __future__ import annotations

import pytest

from mutualrec.matching.body_part import has_contrast, normalize_body_part


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("CHEST", "CHEST"),
        ("Chest", "CHEST"),
        ("PORT CHEST", "CHEST"),
        ("chest pa", "CHEST"),
        ("胸部", "CHEST"),
        ("L-SPINE", "LSPINE"),
        ("Lumbar Spine", "LSPINE"),
        ("头颅", "HEAD"),
        ("ABD", "ABDOMEN"),
        ("", ""),
        ("   ", ""),
        ("XYZZY", ""),
    ],
)
def test_normalize_body_part(raw: str, expected: str) -> None:
    assert normalize_body_part(raw) == expected


@pytest.mark.parametrize(
    ("agent", "expected"),
    [("Iohexol", True), ("OMNIPAQUE 350", True), ("", False), ("NONE", False), ("no", False)],
)
def test_has_contrast(agent: str, expected: bool) -> None:
    assert has_contrast(agent) is expected
