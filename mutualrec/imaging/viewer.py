"""Who reads a patient's imaging history: the patient, a share link of theirs limited to one
study, or a hospital whose recent check recognized the study."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from mutualrec.security.access import DOCTOR, HOSPITAL
from mutualrec.security.api_keys import Principal

# A hospital opens another hospital's study only while a check it made recognized that study
# (a RECOGNIZABLE line citing it): as long as the doctor may still record a decision on that line.
RECENT_CHECK = dt.timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who reads: a patient, a share link of theirs limited to one study, or a hospital whose
    check within :data:`RECENT_CHECK` recognized the study (``patient_key`` empty: the study
    names the patient)."""

    patient_key: str
    shared_study_id: int | None = None
    share_link_id: str | None = None
    # The caller's network address, recorded with every use of a share link.
    peer: str = ""
    checking_institution_id: int | None = None
    # A study link: the one check (and its study) that opens it, not any recent check.
    check_id: str | None = None
    checked_study_uid: str | None = None

    def study_uid(self, requested: str) -> str:
        """The study a request names: a study link's own when the request names none."""
        return requested or self.checked_study_uid or ""


def viewer_of(principal: Principal, peer: str) -> Viewer:
    """The viewer an authorized study reader (patient, share link, hospital) is."""
    if principal.role == DOCTOR:
        # A study link opens the one study its check recognized, for that check's institution.
        return Viewer(
            patient_key="",
            checking_institution_id=principal.institution_id,
            check_id=principal.check_id,
            checked_study_uid=principal.checked_study_uid,
            peer=peer,
        )
    if principal.role == HOSPITAL:
        # A hospital reads a study only while a recent check of its recognized that study.
        return Viewer(patient_key="", checking_institution_id=principal.institution_id, peer=peer)
    return Viewer(
        patient_key=own_patient_key(principal),
        shared_study_id=principal.shared_study_id,
        share_link_id=principal.share_link_id,
        peer=peer,
    )


def own_patient_key(principal: Principal) -> str:
    """The patient whose own data a patient token (or a share link) reads."""
    # The authorization interceptor admits only patients (and share links) to these reads.
    assert principal.patient_key is not None
    return principal.patient_key
