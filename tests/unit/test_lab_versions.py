"""What a submitted Observation does to the held result (mutualrec/ingest/lab_versions.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mutualrec.ingest.lab_versions import Change, HeldResult, Transition, decide_transition
from mutualrec.matching.facts import ResultStatus

S = ResultStatus
PATIENT = "patient-a"
OTHER_PATIENT = "patient-b"
# The held result is at version 2; version 1 had other content.
V1_SHA = "sha-of-version-1"
V2_SHA = "sha-of-version-2"
NEW_SHA = "sha-never-seen"
CONTENT = {"same": V2_SHA, "older": V1_SHA, "new": NEW_SHA}
REFUSAL_CODES = {
    "STATUS_REGRESSION",
    "AMENDMENT_STATUS_REQUIRED",
    "RESULT_WITHDRAWN",
    "IDENTIFIER_OF_OTHER_PATIENT",
}
FINAL_ISH = {S.FINAL, S.AMENDED, S.CORRECTED, S.APPENDED}
NOT_YET_FINAL = {S.REGISTERED, S.SPECIMEN_IN_PROCESS, S.PRELIMINARY, S.UNKNOWN}


def _held(status: S) -> HeldResult:
    return HeldResult(2, status, V2_SHA, PATIENT, {V1_SHA: 1, V2_SHA: 2})


def _decide(held: S | None, status: S, content: str, patient: str = PATIENT) -> Transition:
    return decide_transition(
        None if held is None else _held(held), status, CONTENT[content], patient
    )


# --- no result held yet --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "change"),
    [
        (S.FINAL, Change.CREATED),
        (S.PRELIMINARY, Change.CREATED),
        (S.REGISTERED, Change.CREATED),
        (S.AMENDED, Change.CREATED),
        (S.CANCELLED, Change.CREATED),
        (S.ENTERED_IN_ERROR, Change.WITHDRAWN),
    ],
)
def test_first_submission(status: S, change: Change) -> None:
    transition = _decide(None, status, "new")
    assert (transition.change, transition.version, transition.reason_code) == (change, 1, "")


# --- a result is held at version 2 ---------------------------------------------------------------

UNCHANGED = [
    # The current content again, whatever status the resend carries.
    (S.FINAL, S.FINAL, "same", 2),
    (S.PRELIMINARY, S.PRELIMINARY, "same", 2),
    (S.ENTERED_IN_ERROR, S.ENTERED_IN_ERROR, "same", 2),
    # Content identical to an older version: that version, not a new one.
    (S.FINAL, S.PRELIMINARY, "older", 1),
    (S.AMENDED, S.FINAL, "older", 1),
    (S.ENTERED_IN_ERROR, S.FINAL, "older", 1),
]


@pytest.mark.parametrize(("held", "status", "content", "version"), UNCHANGED)
def test_known_content_is_unchanged(held: S, status: S, content: str, version: int) -> None:
    assert _decide(held, status, content) == Transition(Change.UNCHANGED, version)


NEW_VERSIONS = [
    (S.REGISTERED, S.SPECIMEN_IN_PROCESS),
    (S.SPECIMEN_IN_PROCESS, S.PRELIMINARY),
    (S.PRELIMINARY, S.PRELIMINARY),
    (S.PRELIMINARY, S.FINAL),
    (S.PRELIMINARY, S.AMENDED),
    (S.UNKNOWN, S.FINAL),
    (S.FINAL, S.AMENDED),
    (S.FINAL, S.CORRECTED),
    (S.FINAL, S.APPENDED),
    (S.AMENDED, S.CORRECTED),
    (S.CORRECTED, S.AMENDED),
    (S.APPENDED, S.APPENDED),
    (S.CANCELLED, S.FINAL),
]


@pytest.mark.parametrize(("held", "status"), NEW_VERSIONS)
def test_changed_content_is_a_new_version(held: S, status: S) -> None:
    assert _decide(held, status, "new") == Transition(Change.NEW_VERSION, 3)


@pytest.mark.parametrize("held", [S.PRELIMINARY, S.FINAL, S.AMENDED, S.CANCELLED, S.REGISTERED])
def test_entered_in_error_withdraws_as_a_new_version(held: S) -> None:
    assert _decide(held, S.ENTERED_IN_ERROR, "new") == Transition(Change.WITHDRAWN, 3)


REFUSALS = [
    # A final-ish result does not go back.
    (S.FINAL, S.PRELIMINARY, PATIENT, "STATUS_REGRESSION"),
    (S.FINAL, S.REGISTERED, PATIENT, "STATUS_REGRESSION"),
    (S.FINAL, S.SPECIMEN_IN_PROCESS, PATIENT, "STATUS_REGRESSION"),
    (S.FINAL, S.UNKNOWN, PATIENT, "STATUS_REGRESSION"),
    (S.FINAL, S.CANCELLED, PATIENT, "STATUS_REGRESSION"),
    (S.FINAL, S.CANNOT_BE_OBTAINED, PATIENT, "STATUS_REGRESSION"),
    (S.AMENDED, S.PRELIMINARY, PATIENT, "STATUS_REGRESSION"),
    (S.CORRECTED, S.REGISTERED, PATIENT, "STATUS_REGRESSION"),
    (S.APPENDED, S.PRELIMINARY, PATIENT, "STATUS_REGRESSION"),
    # Changed final content must say it is an amendment.
    (S.FINAL, S.FINAL, PATIENT, "AMENDMENT_STATUS_REQUIRED"),
    (S.AMENDED, S.FINAL, PATIENT, "AMENDMENT_STATUS_REQUIRED"),
    (S.CORRECTED, S.FINAL, PATIENT, "AMENDMENT_STATUS_REQUIRED"),
    # A withdrawn result stays withdrawn.
    (S.ENTERED_IN_ERROR, S.FINAL, PATIENT, "RESULT_WITHDRAWN"),
    (S.ENTERED_IN_ERROR, S.AMENDED, PATIENT, "RESULT_WITHDRAWN"),
    (S.ENTERED_IN_ERROR, S.PRELIMINARY, PATIENT, "RESULT_WITHDRAWN"),
    (S.ENTERED_IN_ERROR, S.ENTERED_IN_ERROR, PATIENT, "RESULT_WITHDRAWN"),
    # An identifier never moves to another patient, whatever the statuses.
    (S.PRELIMINARY, S.FINAL, OTHER_PATIENT, "IDENTIFIER_OF_OTHER_PATIENT"),
    (S.FINAL, S.AMENDED, OTHER_PATIENT, "IDENTIFIER_OF_OTHER_PATIENT"),
    (S.FINAL, S.ENTERED_IN_ERROR, OTHER_PATIENT, "IDENTIFIER_OF_OTHER_PATIENT"),
    (S.ENTERED_IN_ERROR, S.FINAL, OTHER_PATIENT, "IDENTIFIER_OF_OTHER_PATIENT"),
]


@pytest.mark.parametrize(("held", "status", "patient", "code"), REFUSALS)
def test_refusals(held: S, status: S, patient: str, code: str) -> None:
    transition = _decide(held, status, "new", patient)
    assert (transition.change, transition.version, transition.reason_code) == (
        Change.REFUSED,
        0,
        code,
    )
    assert "version 2" in transition.reason
    assert held.value in transition.reason


def test_other_patient_is_checked_before_the_status() -> None:
    # Both a regression and a foreign patient: the foreign patient is what is wrong.
    assert _decide(S.FINAL, S.PRELIMINARY, "new", OTHER_PATIENT).reason_code == (
        "IDENTIFIER_OF_OTHER_PATIENT"
    )


# --- any sequence of submissions -----------------------------------------------------------------


@dataclass
class _Store:
    """The held result as lab_ingest keeps it: updated on CREATED, NEW_VERSION and WITHDRAWN."""

    held: HeldResult | None = None
    statuses: list[S] = field(default_factory=list)

    def submit(self, status: S, sha: str, patient: str) -> Transition:
        before = self.held
        transition = decide_transition(before, status, sha, patient)
        if transition.change in (Change.CREATED, Change.NEW_VERSION, Change.WITHDRAWN):
            known = dict(before.versions_by_sha256) if before else {}
            known[sha] = transition.version
            self.held = HeldResult(transition.version, status, sha, patient, known)
            self.statuses.append(status)
        return transition


submissions = st.lists(
    st.tuples(
        st.sampled_from(list(ResultStatus)),
        st.sampled_from(["a", "b", "c"]),  # few contents, so resends are frequent
        st.sampled_from([PATIENT, OTHER_PATIENT]),
    ),
    min_size=1,
    max_size=12,
)


@given(submissions)
def test_version_numbers_only_ever_increase_by_one(
    sequence: list[tuple[S, str, str]],
) -> None:
    store = _Store()
    for status, content, patient in sequence:
        # The digest covers status and patient, as LabResult.content_sha256 does.
        sha = f"{patient}|{status.value}|{content}"
        before = store.held
        transition = store.submit(status, sha, patient)
        if before is None:
            assert transition.change in (Change.CREATED, Change.WITHDRAWN)
            assert transition.version == 1
        elif transition.change in (Change.NEW_VERSION, Change.WITHDRAWN):
            assert transition.version == before.version + 1
        elif transition.change is Change.UNCHANGED:
            assert transition.version == before.versions_by_sha256[sha]
            assert store.held is before
        else:
            assert transition.change is Change.REFUSED
            assert transition.version == 0
            assert transition.reason_code in REFUSAL_CODES
            assert store.held is before


@given(submissions)
def test_a_final_result_never_becomes_preliminary(sequence: list[tuple[S, str, str]]) -> None:
    store = _Store()
    for status, content, patient in sequence:
        store.submit(status, f"{patient}|{status.value}|{content}", patient)
    for position, status in enumerate(store.statuses):
        if status in FINAL_ISH:
            later = store.statuses[position + 1 :]
            assert all(s in FINAL_ISH or s is S.ENTERED_IN_ERROR for s in later), store.statuses
            assert not NOT_YET_FINAL & set(later)


@given(submissions)
def test_a_result_keeps_its_patient(sequence: list[tuple[S, str, str]]) -> None:
    store = _Store()
    first_patient = sequence[0][2]
    for status, content, patient in sequence:
        store.submit(status, f"{patient}|{status.value}|{content}", patient)
        assert store.held is not None
        assert store.held.patient_key == first_patient


@given(submissions)
def test_nothing_is_accepted_after_a_withdrawal(sequence: list[tuple[S, str, str]]) -> None:
    store = _Store()
    withdrawn = False
    for status, content, patient in sequence:
        transition = store.submit(status, f"{patient}|{status.value}|{content}", patient)
        if withdrawn:
            assert transition.change in (Change.UNCHANGED, Change.REFUSED)
        withdrawn = withdrawn or transition.change is Change.WITHDRAWN
