"""C-STORE statuses of instance outcomes: the code, an ErrorComment an LO holds, the tag."""

from __future__ import annotations

from mutualrec.dicom_net.statuses import (
    COMMENT_MAX,
    DUPLICATE,
    HELD_UNLINKED,
    PATIENT_UNKNOWN,
    REFUSED,
    SUCCESS,
    StoreStatus,
    comment,
    status_of,
)
from mutualrec.ingest.study_upload import InstanceOutcome, OutcomeKind
from mutualrec.violations import Violation


def _rejected(*violations: Violation) -> InstanceOutcome:
    return InstanceOutcome(0, "x", OutcomeKind.REJECTED, reason="refused", violations=violations)


def test_stored_and_new_versions_are_plain_success() -> None:
    for kind in (OutcomeKind.STORED, OutcomeKind.NEW_VERSION):
        assert status_of(InstanceOutcome(0, "x", kind, version=2)) == StoreStatus(SUCCESS)


def test_a_duplicate_is_a_warning_naming_the_version_held() -> None:
    status = status_of(InstanceOutcome(0, "x", OutcomeKind.DUPLICATE_IDENTICAL, version=3))
    assert status == StoreStatus(DUPLICATE, "duplicate: held already as v3")


def test_a_stored_instance_held_unlinked_is_a_warning_saying_how_to_link_it() -> None:
    status = status_of(InstanceOutcome(0, "x", OutcomeKind.STORED, version=1), held_unlinked=True)
    assert status.code == HELD_UNLINKED
    assert "LinkPatient" in status.comment
    assert len(status.comment) <= COMMENT_MAX
    assert status.offending_tag == 0x00100020
    # A duplicate of a held instance says it is a duplicate.
    again = InstanceOutcome(0, "x", OutcomeKind.DUPLICATE_IDENTICAL, version=1)
    assert status_of(again, held_unlinked=True).comment.startswith("duplicate")


def test_a_refusal_names_the_reason_and_the_attribute() -> None:
    violation = Violation("(0020,000D) StudyInstanceUID", "StudyInstanceUID is missing", "MISSING")
    status = status_of(_rejected(violation))
    assert status == StoreStatus(REFUSED, "MISSING: StudyInstanceUID is missing", 0x0020000D)


def test_a_refusal_of_the_whole_instance_names_no_attribute() -> None:
    status = status_of(_rejected(Violation("instance", "cut inside its pixel data", "TRUNCATED")))
    assert status.code == REFUSED
    assert status.offending_tag is None


def test_an_unknown_patient_has_its_own_failure_code() -> None:
    violation = Violation("(0010,0020) PatientID", "linked to no patient", "PATIENT_NOT_IDENTIFIED")
    status = status_of(_rejected(violation))
    assert status.code == PATIENT_UNKNOWN
    assert status.offending_tag == 0x00100020
    assert len(status.comment) <= COMMENT_MAX


def test_comments_fit_an_lo_value() -> None:
    long = comment("MALFORMED_DATE: " + "x" * 200)
    assert len(long) == COMMENT_MAX
    assert long.endswith("...")
    assert comment("患者 a\\b") == "?? a/b"
