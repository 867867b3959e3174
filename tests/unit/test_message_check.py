"""Checks of any request message by its descriptor: NUL characters and bytes that are not
protobuf, each named by the path of its field."""

from __future__ import annotations

from google.protobuf import struct_pb2

from mutualrec.api.message_check import malformed_violation, string_violations
from mutualrec.v1 import common_pb2, ingest_pb2, recognition_pb2
from mutualrec.violations import Violation


def test_every_string_with_a_nul_is_named_by_its_path() -> None:
    request = recognition_pb2.CheckOrderRequest(
        patient=common_pb2.PatientIdentity(document_number="5001\x00"),
        ordered_codes=["LAB-K", "\x00", "LAB-NA\x00"],
        context=recognition_pb2.ClinicalContext(order_id="A-1"),
    )
    assert [v.field for v in string_violations(request)] == [
        "ordered_codes[1]",
        "ordered_codes[2]",
        "patient.document_number",
    ]
    assert {v.reason for v in string_violations(request)} == {"NUL_CHARACTER"}


def test_clean_request_has_no_violation() -> None:
    request = ingest_pb2.UploadStudyRequest(
        header=ingest_pb2.UploadHeader(accession_number="CT24", performed_item_code="IMG-CT")
    )
    assert string_violations(request) == []


def test_malformed_bytes_name_the_field_where_they_break() -> None:
    descriptor = ingest_pb2.UploadStudyRequest.DESCRIPTOR
    # header (1) > accession_number (2): an encoded surrogate, which is not UTF-8.
    surrogate = b"\x0a\x05\x12\x03\xed\xa0\x80"
    assert malformed_violation(surrogate, descriptor).field == "header.accession_number"
    assert malformed_violation(surrogate, descriptor).reason == "NOT_UTF8"
    # header > accession_number declared 9 bytes long, 2 sent.
    truncated = b"\x0a\x04\x12\x09ab"
    assert malformed_violation(truncated, descriptor) == Violation(
        "header.accession_number", "the bytes end inside this field", "MALFORMED_REQUEST"
    )
    assert malformed_violation(b"\x08" + b"\xff" * 11, descriptor).reason == "MALFORMED_REQUEST"
    assert malformed_violation(b"\xff", None).field == "request"


def test_map_keys_and_values_are_checked() -> None:
    message = struct_pb2.Struct()
    message.fields["k\x00"].string_value = "ok"
    message.fields["note"].string_value = "\x00"
    assert sorted(v.field for v in string_violations(message)) == [
        "fields['k\\x00']",
        "fields['note'].string_value",
    ]
