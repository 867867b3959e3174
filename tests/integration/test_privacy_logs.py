"""No log line names a patient: identity numbers, names and result values stay out of the logs,
on success and on every kind of refusal."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from typing import Any

import grpc
import pytest

from mutualrec.v1 import recognition_pb2
from tests.conftest import RunningServer
from tests.fhir_docs import PATIENT_ID, bundle, observation, submit
from tests.helpers import chunk_messages, file_messages, header_message, study_files, upload
from tests.integration.test_recognition import ASKER, ISSUER, _check, _decide, _fhir_time, _setup

NAME = "王秀英"
DICOM_NAME = "ZHANG^WEI"  # the CT sample's Patient's Name
# A value no code or date of the scenario holds, so finding it means the value leaked.
VALUE = 4.731


def _named_bundle(number: str) -> dict[str, Any]:
    document = bundle(
        [
            observation(
                "PRIV-1",
                value=VALUE,
                issued=_fhir_time(dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)),
            )
        ]
    )
    document["entry"][0]["resource"]["name"] = [{"text": NAME}]
    document["entry"][0]["resource"]["identifier"][0]["value"] = number
    return document


def test_no_log_line_holds_an_identity_number_a_name_or_a_value(
    server: RunningServer, manifest: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    keys = _setup(server)
    submit(server.channel, keys[ISSUER], _named_bundle(PATIENT_ID))
    checked = _check(server, keys[ASKER], "LAB-K", "IMG-CT-CHEST")
    _decide(server, keys[ASKER], checked.check_id, 0, decision=recognition_pb2.ACCEPTED)
    study = manifest["ct_chest_contrast_hosp_a"]
    assert study["institution_code"] == ISSUER
    study_key = keys[ISSUER]
    upload(server.channel, study_key, [header_message(study), *file_messages(study_files(study))])

    # Refusals that carry the same data: an invalid bundle, a malformed identity number, a
    # DICOM upload declaring another patient, a decision on a line that is not there.
    broken = _named_bundle(PATIENT_ID)
    broken["entry"][1]["resource"]["status"] = "not-a-status"
    broken["type"] = "transaction"
    bad_number = _named_bundle(PATIENT_ID[:-1] + "0")
    for document in (broken, bad_number):
        # Refused whole (INVALID_ARGUMENT) or entry by entry (REJECTED outcomes).
        with contextlib.suppress(grpc.RpcError):
            submit(server.channel, keys[ISSUER], document)
    with pytest.raises(grpc.RpcError):
        _check(server, keys[ASKER], "LAB-K", patient=PATIENT_ID[:-1] + "0")
    upload(
        server.channel,
        study_key,
        [
            header_message(study, document_number="500106195511021028"),
            *file_messages(study_files(study)[:1]),
        ],
    )
    with pytest.raises(grpc.RpcError):
        _decide(server, keys[ASKER], checked.check_id, 9, decision=recognition_pb2.ACCEPTED)
    # A corrupt instance whose file meta claims 1 KiB and whose first UID 1,000 bytes: read
    # as that UID, the rest of the header (the patient's name among it) is what pydicom quotes
    # when it warns about the value.
    first = study_files(study)[0].read_bytes()
    group_length = first.index(b"\x02\x00\x00\x00UL\x04\x00") + 8
    corrupt = bytearray(first)
    corrupt[group_length : group_length + 4] = (1024).to_bytes(4, "little")
    uid = corrupt.index(b"\x02\x00\x02\x00UI") + 6
    corrupt[uid : uid + 2] = (1000).to_bytes(2, "little")
    assert DICOM_NAME.encode() in corrupt[uid : uid + 1000]
    refused = upload(
        server.channel,
        study_key,
        [header_message(study), *chunk_messages(bytes(corrupt), "corrupt.dcm")],
    )
    assert refused.counts.rejected == 1

    logged = "\n".join(
        f"{record.getMessage()} {record.exc_text or ''} {record.args!r}"
        for record in caplog.records
    )
    study_patient = study["patient"]["document_number"]
    for secret in (PATIENT_ID, PATIENT_ID[:-1] + "0", study_patient, NAME, str(VALUE), DICOM_NAME):
        assert secret not in logged, secret
