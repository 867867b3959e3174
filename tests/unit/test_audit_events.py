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
