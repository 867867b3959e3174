"""What a caller sent is written to the audit trail in a form every index keeps."""

from __future__ import annotations

import datetime as dt

from mutualrec.security.audit import CallRecord, events_of


def test_nul_and_lone_surrogates_are_escaped_and_lengths_capped() -> None:
    record = CallRecord(
        "ImagingService/GetStudy",
        role="hospital",
        credential="mrk_0123",
        peer="ipv4:10.0.0.1:5" + "9" * 200,
        patients={"k" * 64: "study 1.2\x00.3 \ud800 中文 " + "x" * 400},
    )
    (event,) = events_of(record, "NOT_FOUND", dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    assert event.what.startswith("study 1.2\\x00.3 \\ud800 中文 xxx")
    assert len(event.what) == 300
    assert len(event.peer) == 100
    assert event.patient_key == "k" * 64


def test_a_call_the_browser_made_ahead_of_its_user_says_so_in_every_entry() -> None:
    record = CallRecord(
        "GET /dicomweb/studies/{study}/metadata",
        role="patient",
        credential="patient-token",
        patients={"a" * 64: "DICOMweb metadata of study 1.2.3", "b" * 64: "x" * 400},
        ahead=True,
    )
    first, second = events_of(record, "OK", dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    assert (
        first.what
        == "(fetched ahead by the browser, not yet opened) DICOMweb metadata of study 1.2.3"
    )
    # The mark leads, so a long description's clipping never drops it.
    assert second.what.startswith("(fetched ahead by the browser, not yet opened) xxx")
    assert len(second.what) == 300
    (asked,) = events_of(
        CallRecord("GET /", patients={"a" * 64: "list of studies"}),
        "OK",
        dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    )
    assert asked.what == "list of studies"
