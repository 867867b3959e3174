"""RecognitionService: the HIS's ordering-time check and the doctor's decision."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from typing import TypeAlias

import grpc

from mutualrec.api.auth import caller
from mutualrec.api.patients import identity_document
from mutualrec.identity import InvalidIdentity
from mutualrec.matching.decisions import DeclineReason
from mutualrec.matching.order_lines import CheckedLine
from mutualrec.matching.result_details import ImagingDetail, LabDetail
from mutualrec.money import yuan
from mutualrec.runtime import Runtime
from mutualrec.services.recognition import (
    CheckContext,
    CheckReport,
    CheckRequest,
    DecisionRequest,
)
from mutualrec.v1 import recognition_pb2, recognition_pb2_grpc
from mutualrec.violations import Rejected

Context: TypeAlias = grpc.aio.ServicerContext

_VERDICTS = {
    "RECOGNIZABLE": recognition_pb2.RECOGNIZABLE,
    "EXPIRED": recognition_pb2.EXPIRED,
    "NO_RESULT": recognition_pb2.NO_RESULT,
    "ISSUER_NOT_QUALIFIED": recognition_pb2.ISSUER_NOT_QUALIFIED,
    "PRELIMINARY_ONLY": recognition_pb2.PRELIMINARY_ONLY,
    "NOT_COVERED": recognition_pb2.NOT_COVERED,
    "UNKNOWN_CODE": recognition_pb2.UNKNOWN_CODE,
}
_DECLINE_REASONS = {reason: getattr(recognition_pb2, reason.value) for reason in DeclineReason}
_REASONS_BY_PROTO = {number: reason for reason, number in _DECLINE_REASONS.items()}


def _time(moment: dt.datetime | None) -> str:
    return "" if moment is None else moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _result_proto(
    checked: CheckedLine, open_url: Callable[[str], str]
) -> recognition_pb2.RecognizedResult | None:
    finding, cited, detail = checked.finding, checked.cited, checked.detail
    if finding.result is None or cited is None:
        return None
    result = recognition_pb2.RecognizedResult(
        kind=cited.kind,
        result_ref=cited.result_ref,
        version=cited.version,
        status=cited.status,
        issuer_code=finding.result.issuer.code,
        issuer_name=finding.result.issuer.name,
        report_time=_time(cited.report_time),
        age_seconds=int(finding.age.total_seconds()) if finding.age is not None else 0,
        valid_until=_time(finding.valid_until),
        item_code=cited.item_code,
    )
    if isinstance(detail, LabDetail):
        result.lab.CopyFrom(
            recognition_pb2.LabValue(
                loinc=detail.loinc,
                display=detail.display,
                value=detail.value,
                unit=detail.unit,
                reference_range=detail.reference_range,
                interpretation=detail.interpretation,
                canonical_value=detail.canonical_value,
                canonical_unit=detail.canonical_unit,
                unit_note=detail.unit_note,
            )
        )
    elif isinstance(detail, ImagingDetail):
        uid = detail.study_instance_uid
        result.imaging.CopyFrom(
            recognition_pb2.ImagingStudyRef(
                study_instance_uid=uid,
                accession_number=detail.accession_number,
                modalities=detail.modalities,
                body_parts=detail.body_parts,
                contrast=detail.contrast,
                description=detail.description,
                instance_count=detail.instance_count,
                open_url=open_url(uid),
            )
        )
    return result


def _report_proto(
    report: CheckReport, open_url: Callable[[str], str]
) -> recognition_pb2.CheckOrderResponse:
    """``report`` as its message; ``open_url``: the link opening a recognized study's UID."""
    lines = []
    for number, checked in enumerate(report.lines):
        finding = checked.finding
        item = checked.line.item
        lines.append(
            recognition_pb2.CheckLine(
                line=number,
                ordered_code=checked.line.ordered_code,
                item_code=item.code if item else "",
                item_name=item.name_zh if item else "",
                verdict=_VERDICTS[finding.verdict.value],
                reason=finding.reason.text(report.language),
                result=_result_proto(checked, open_url),
                estimated_saving=yuan(finding.saving_fen),
                expired_since=_time(finding.expired_since),
            )
        )
    return recognition_pb2.CheckOrderResponse(
        check_id=report.check_id,
        received_at=_time(report.received_at),
        catalog_version=report.catalog_version,
        lines=lines,
        total_estimated_saving=yuan(report.total_saving_fen),
    )


class RecognitionService(recognition_pb2_grpc.RecognitionServiceServicer):  # type: ignore[misc]
    """Translates checks and decisions between messages and the recognition service."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def CheckOrder(
        self, request: recognition_pb2.CheckOrderRequest, context: Context
    ) -> recognition_pb2.CheckOrderResponse:
        """Per ordered item, whether the patient holds a result that must be recognized."""
        received_at = dt.datetime.now(dt.UTC)
        principal = caller(self.runtime, context)
        try:
            document = identity_document(request.patient, "patient.")
        except InvalidIdentity as exc:
            raise Rejected.one(
                "the patient's identity document is invalid",
                exc.field,
                str(exc),
                "INVALID_IDENTITY",
            ) from exc
        check = CheckRequest(
            patient=document,
            ordered_codes=request.ordered_codes,
            context=CheckContext(
                request.context.order_id, request.context.department, request.context.emergency
            ),
            accept_language=request.accept_language,
            received_at=received_at,
        )
        report = await self.runtime.recognition.check(check, principal)
        assert principal.institution_id is not None  # only hospitals check orders
        open_url = functools.partial(
            self.runtime.study_links.open_url,
            report.check_id,
            report.received_at,
            principal.institution_id,
        )
        return _report_proto(report, open_url)

    async def RecordDecision(
        self, request: recognition_pb2.RecordDecisionRequest, context: Context
    ) -> recognition_pb2.RecordDecisionResponse:
        """Record accepted, or declined with a reason, for one line of a check."""
        principal = caller(self.runtime, context)
        if request.decision not in (recognition_pb2.ACCEPTED, recognition_pb2.DECLINED):
            raise Rejected.one(
                "the decision is missing", "decision", "ACCEPTED or DECLINED", "MISSING_DECISION"
            )
        decision = DecisionRequest(
            check_id=request.check_id,
            line=request.item_code.strip() or request.line,
            accepted=request.decision == recognition_pb2.ACCEPTED,
            reason=_REASONS_BY_PROTO.get(request.reason),
            reason_text=request.reason_text,
            decided_at=dt.datetime.now(dt.UTC),
        )
        decided = await self.runtime.recognition.decide(decision, principal)
        return recognition_pb2.RecordDecisionResponse(
            check_id=decided.check_id,
            line=decided.line,
            decision=recognition_pb2.ACCEPTED if decided.accepted else recognition_pb2.DECLINED,
            reason=(
                _DECLINE_REASONS[decided.reason]
                if decided.reason
                else recognition_pb2.DECLINE_REASON_UNSPECIFIED
            ),
            booked_saving=yuan(decided.booked_saving_fen),
            already_recorded=decided.already_recorded,
            decided_at=_time(decided.decided_at),
        )
