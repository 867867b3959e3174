"""Identity documents: resident ID validation and the keyed patient hash."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mutualrec.identity import InvalidIdentity, parse_identity, patient_key

SECRET = b"s" * 32
# Published worked example of GB 11643-1999 (the standard's own sample number).
STANDARD_EXAMPLE = "11010519491231002X"


def _check_digit_by_definition(first17: str) -> str:
    """ISO 7064 MOD 11-2 computed from its definition (weights 2^(17-i) mod 11)."""
    total = sum(int(d) * (2 ** (17 - i) % 11) for i, d in enumerate(first17))
    return "10X98765432"[total % 11]


birth_dates = st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2025, 12, 31))


@st.composite
def resident_ids(draw: st.DrawFn) -> str:
    region = draw(st.sampled_from(["500103", "500106", "110105", "510104"]))
    born = draw(birth_dates).strftime("%Y%m%d")
    sequence = draw(st.integers(0, 999))
    first17 = f"{region}{born}{sequence:03d}"
    return first17 + _check_digit_by_definition(first17)


def test_standard_example_is_valid() -> None:
    assert parse_identity("RESIDENT_ID_CARD", STANDARD_EXAMPLE).number == STANDARD_EXAMPLE


def test_trailing_x_is_upper_cased() -> None:
    doc = parse_identity("RESIDENT_ID_CARD", STANDARD_EXAMPLE.lower())
    assert doc.number == STANDARD_EXAMPLE


@given(resident_ids())
def test_valid_numbers_are_accepted(number: str) -> None:
    assert parse_identity("RESIDENT_ID_CARD", number).number == number


@given(resident_ids(), st.integers(0, 16), st.integers(1, 9))
def test_any_single_digit_change_is_caught(number: str, position: int, delta: int) -> None:
    changed_digit = str((int(number[position]) + delta) % 10)
    mutated = number[:position] + changed_digit + number[position + 1 :]
    # MOD 11-2 detects every single-digit error; a changed birth date may fail earlier.
    with pytest.raises(InvalidIdentity):
        parse_identity("RESIDENT_ID_CARD", mutated)


@pytest.mark.parametrize(
    ("number", "fragment"),
    [
        ("1101051949123100", "17 digits"),
        ("11010519491231002Y", "17 digits"),
        ("110105194913310021", "birth date"),
        ("110105194912310021", "check digit"),
    ],
)
def test_invalid_resident_ids(number: str, fragment: str) -> None:
    with pytest.raises(InvalidIdentity, match=fragment) as raised:
        parse_identity("RESIDENT_ID_CARD", number, field_prefix="header.patient.")
    assert raised.value.field == "header.patient.document_number"


def test_passport_needs_its_country() -> None:
    with pytest.raises(InvalidIdentity) as raised:
        parse_identity("PASSPORT", "E12345678")
    assert raised.value.field == "issuing_country"
    assert parse_identity("PASSPORT", "e1234-5678", "chn").canonical() == "PASSPORT|CHN|E12345678"


def test_unknown_document_type() -> None:
    with pytest.raises(InvalidIdentity) as raised:
        parse_identity("LIBRARY_CARD", "12345")
    assert raised.value.field == "document_type"


def test_patient_key_depends_on_document_and_secret_only() -> None:
    doc = parse_identity("RESIDENT_ID_CARD", STANDARD_EXAMPLE)
    same = parse_identity("RESIDENT_ID_CARD", " " + STANDARD_EXAMPLE.lower() + " ")
    other = parse_identity("RESIDENT_ID_CARD", "50010319680315109X")
    assert patient_key(doc, SECRET) == patient_key(same, SECRET)
    assert patient_key(doc, SECRET) != patient_key(doc, b"t" * 32)
    assert patient_key(doc, SECRET) != patient_key(other, SECRET)
    assert STANDARD_EXAMPLE not in patient_key(doc, SECRET)
    assert len(patient_key(doc, SECRET)) == 64
