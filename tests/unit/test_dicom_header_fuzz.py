"""Fuzzing the DICOM header reader: mutated and truncated real instances are read or refused
with named violations, never an exception of another kind."""

from __future__ import annotations

import io

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mutualrec.ingest.dicom_header import DicomHeader, read_header
from mutualrec.violations import Rejected
from tests.conftest import SAMPLES

SEEDS = [path.read_bytes() for path in sorted(SAMPLES.glob("*/*.dcm"))[::7]]
FUZZ = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _read(data: bytes) -> DicomHeader | Rejected:
    answer: DicomHeader | Rejected
    try:
        answer = read_header(io.BytesIO(data), len(data))
    except Rejected as refusal:
        answer = refusal
    if isinstance(answer, Rejected):
        assert answer.violations, "a refusal names at least one field"
        assert all(v.field and v.reason for v in answer.violations)
    return answer


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 8))):
        at = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "splice"]))
        if action == "flip":
            data[at] = draw(st.integers(0, 255))
        elif action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif action == "delete":
            del data[at : at + draw(st.integers(1, 16))]
        elif action == "truncate":
            del data[at:]
        else:
            # A plausible tag or length in the middle of the header: where parsers go wrong.
            data[at : at + 4] = draw(
                st.sampled_from([b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\xe0\x7f\x10\x00"])
            )
        if not data:
            break
    return bytes(data)


def test_the_seeds_are_instances_the_reader_accepts() -> None:
    assert SEEDS
    assert all(isinstance(_read(seed), DicomHeader) for seed in SEEDS)


@FUZZ
@given(mutated())
def test_mutated_instances_are_read_or_refused(data: bytes) -> None:
    _read(data)


@FUZZ
@given(st.sampled_from(SEEDS), st.integers(0, 4096))
def test_instances_cut_in_their_header_are_refused_or_read(seed: bytes, cut: int) -> None:
    _read(seed[: min(cut, len(seed))])
