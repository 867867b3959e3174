"""Client side of RecognitionService: the HIS's check and the doctor's decision."""

from __future__ import annotations

import grpc

from mutualrec.client.upload import auth_metadata
from mutualrec.v1 import common_pb2, recognition_pb2, recognition_pb2_grpc

DECISIONS = {"accept": recognition_pb2.ACCEPTED, "decline": recognition_pb2.DECLINED}
DECLINE_REASONS = [
    value.name.lower().replace("_", "-")
    for value in recognition_pb2.DeclineReason.DESCRIPTOR.values
    if value.number
]


def check_order(
    channel: grpc.Channel,
    api_key: str,
    document_number: str,
    ordered_codes: list[str],
    *,
    document_type: str = "RESIDENT_ID_CARD",
    issuing_country: str = "",
    order_id: str = "",
    department: str = "",
    accept_language: str = "",
) -> recognition_pb2.CheckOrderResponse:
    """Ask which ordered items the patient already holds a recognizable result of.

    ``accept_language`` chooses the reasons' language ("en", "zh"); Chinese by default.
    """
    stub = recognition_pb2_grpc.RecognitionServiceStub(channel)
    response: recognition_pb2.CheckOrderResponse = stub.CheckOrder(
        recognition_pb2.CheckOrderRequest(
            patient=common_pb2.PatientIdentity(
                document_type=document_type,
                document_number=document_number,
                issuing_country=issuing_country,
            ),
            ordered_codes=ordered_codes,
            context=recognition_pb2.ClinicalContext(order_id=order_id, department=department),
            accept_language=accept_language,
        ),
        metadata=auth_metadata(api_key),
    )
    return response


def record_decision(
    channel: grpc.Channel,
    api_key: str,
    check_id: str,
    line: int | str,
    decision: str,
    reason: str = "",
    reason_text: str = "",
) -> recognition_pb2.RecordDecisionResponse:
    """Report the doctor's decision on one line of a check.

    ``line`` is the line number or the line's catalog item code; ``reason`` is a decline reason
    such as ``patient-request``.
    """
    stub = recognition_pb2_grpc.RecognitionServiceStub(channel)
    response: recognition_pb2.RecordDecisionResponse = stub.RecordDecision(
        recognition_pb2.RecordDecisionRequest(
            check_id=check_id,
            line=line if isinstance(line, int) else 0,
            item_code=line if isinstance(line, str) else "",
            decision=DECISIONS[decision],
            reason=reason.upper().replace("-", "_") or None,
            reason_text=reason_text,
        ),
        metadata=auth_metadata(api_key),
    )
    return response


def check_report(response: recognition_pb2.CheckOrderResponse) -> list[str]:
    """A check's reply as a doctor reads it: one table row per line, where to open images."""
    from mutualrec.client.table import LEFT, RIGHT, render

    rows = [
        (
            str(line.line),
            line.ordered_code,
            recognition_pb2.Verdict.Name(line.verdict),
            line.result.issuer_code or "-",
            line.estimated_saving or "-",
            line.reason,
        )
        for line in response.lines
    ]
    header = ("line", "ordered", "verdict", "issuer", "saving", "reason")
    lines = [f"check {response.check_id} (catalog {response.catalog_version})"]
    lines += render(header, rows, (RIGHT, LEFT, LEFT, LEFT, RIGHT, LEFT), indent="  ")
    lines += [
        f"  line {line.line}: open the images with {line.result.imaging.open_url}"
        for line in response.lines
        if line.result.imaging.open_url and line.verdict == recognition_pb2.RECOGNIZABLE
    ]
    lines.append(f"estimated saving if accepted: {response.total_estimated_saving} yuan")
    return lines
