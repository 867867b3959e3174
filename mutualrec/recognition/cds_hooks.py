"""CDS Hooks 2.0 (order-select, order-sign) as pure translation: the discovery document, a hook
request read into the order check it asks for, the check's recognizable lines as cards, and
feedback read into decisions. No HTTP here and no storage: the HTTP door calls these around
the recognition service, as the gRPC door translates CheckOrder and RecordDecision.

Every refusal names its field as a path into the JSON sent
(``context.draftOrders.entry[2].resource.code``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mutualrec.identity import IdentityDocument
from mutualrec.ingest.fhir_patient import identity_from_identifiers
from mutualrec.matching.decisions import DeclineReason
from mutualrec.matching.facts import Verdict
from mutualrec.matching.language import Language, Reason
from mutualrec.matching.order_lines import CheckedLine
from mutualrec.matching.reasons import (
    DECLINE_REASON_NAMES,
    card_summary,
    local_time,
    remove_duplicate_order,
    valid_until_text,
)
from mutualrec.matching.result_details import ImagingDetail, LabDetail
from mutualrec.violations import Rejected, Violation, clip

LOINC_SYSTEM = "http://loinc.org"
CATALOG_SYSTEM = "https://fhir.mutualrec.org/CodeSystem/recognition-item"
DECLINE_REASON_SYSTEM = "https://fhir.mutualrec.org/CodeSystem/decline-reason"
# The spec: a card's summary "SHOULD be <140 characters".
MAX_SUMMARY = 139
MAX_CODE = 64
MAX_FEEDBACK = 100
SOURCE_LABEL = Reason("Mutual recognition of results", "检查检验结果互认平台")


@dataclass(frozen=True, slots=True)
class CdsService:
    """One CDS service as discovery lists it."""

    id: str
    hook: str
    title: str
    description: str


SERVICES: Mapping[str, CdsService] = {
    service.id: service
    for service in (
        CdsService(
            "order-select",
            "order-select",
            "Mutual recognition: results already held",
            "When orders are selected, cards for tests and exams the patient already holds a "
            "recognizable result of, from any hospital of the region (检查检验结果互认).",
        ),
        CdsService(
            "order-sign",
            "order-sign",
            "Mutual recognition before signing",
            "Before orders are signed, cards for tests and exams the patient already holds a "
            "recognizable result of, from any hospital of the region (检查检验结果互认).",
        ),
    )
}
PREFETCH = {"patient": "Patient/{{context.patientId}}"}
USAGE = (
    "The EHR signs each call's JWT with a key the region's administrator registered for its "
    "institution (mutualrec admin add-cds-client); the prefetched Patient carries the "
    "patient's identity document among its identifiers."
)


def discovery() -> dict[str, Any]:
    """The discovery document (``GET /cds-services``)."""
    return {
        "services": [
            {
                "hook": s.hook,
                "title": s.title,
                "description": s.description,
                "id": s.id,
                "prefetch": dict(PREFETCH),
                "usageRequirements": USAGE,
            }
            for s in SERVICES.values()
        ]
    }


@dataclass(frozen=True, slots=True)
class DraftOrder:
    """One ServiceRequest of the draft orders: where it is, how to name it, what it orders."""

    entry: int
    # "ServiceRequest/<id>", or "" when the draft has no id (then no suggestion can remove it).
    reference: str
    code: str


@dataclass(frozen=True, slots=True)
class OrderCheck:
    """What a hook request asks: this patient's check of these draft orders."""

    hook_instance: str
    patient: IdentityDocument
    orders: list[DraftOrder]

    @property
    def codes(self) -> list[str]:
        """The codes to check, each once: two drafts of one code share its line."""
        return list(dict.fromkeys(order.code for order in self.orders))


def _object(value: Any, field: str, violations: list[Violation]) -> dict[str, Any] | None:
    if isinstance(value, dict):
        return value
    what = "missing" if value is None else f"a JSON {type(value).__name__}"
    violations.append(Violation(field, f"must be a JSON object, is {what}", "NOT_AN_OBJECT"))
    return None


def _code_of(resource: dict[str, Any], path: str, violations: list[Violation]) -> str | None:
    """The code a ServiceRequest orders: a catalog item code first, then LOINC, then the
    hospital's local code (the first other coding), as the check resolves them."""
    code = resource.get("code")
    codings = code.get("coding") if isinstance(code, dict) else None
    usable = [
        (position, c)
        for position, c in enumerate(codings if isinstance(codings, list) else [])
        if isinstance(c, dict) and isinstance(c.get("code"), str) and c["code"].strip()
    ]
    if not usable:
        violations.append(
            Violation(
                f"{path}.code",
                "a ServiceRequest names what is ordered: code.coding with a code",
                "MISSING_CODE",
            )
        )
        return None
    rank = {CATALOG_SYSTEM: 0, LOINC_SYSTEM: 1}
    position, chosen = min(usable, key=lambda pc: (rank.get(str(pc[1].get("system")), 2), pc[0]))
    value: str = chosen["code"].strip()
    if len(value) > MAX_CODE:
        violations.append(
            Violation(
                f"{path}.code.coding[{position}].code",
                f"at most {MAX_CODE} characters",
                "TOO_LONG",
            )
        )
        return None
    return value


def _draft_orders(
    context: dict[str, Any], selections: set[str] | None, violations: list[Violation]
) -> list[DraftOrder]:
    bundle = _object(context.get("draftOrders"), "context.draftOrders", violations)
    if bundle is None:
        return []
    if bundle.get("resourceType") != "Bundle":
        violations.append(
            Violation("context.draftOrders.resourceType", "must be Bundle", "NOT_A_BUNDLE")
        )
        return []
    entries = bundle.get("entry", [])
    if not isinstance(entries, list):
        violations.append(
            Violation("context.draftOrders.entry", "must be a JSON array", "NOT_AN_ARRAY")
        )
        return []
    orders = []
    for position, entry in enumerate(entries):
        path = f"context.draftOrders.entry[{position}]"
        entry_object = _object(entry, path, violations)
        if entry_object is None:
            continue
        resource = _object(entry_object.get("resource"), f"{path}.resource", violations)
        # Medication and other orders are not ours to recognize.
        if resource is None or resource.get("resourceType") != "ServiceRequest":
            continue
        resource_id = resource.get("id")
        reference = f"ServiceRequest/{resource_id}" if isinstance(resource_id, str) else ""
        # order-select: only the orders just selected are advised on.
        if selections is not None and reference not in selections:
            continue
        code = _code_of(resource, f"{path}.resource", violations)
        if code is not None:
            orders.append(DraftOrder(position, reference, code))
    return orders


def _patient(
    body: dict[str, Any], context: dict[str, Any], violations: list[Violation]
) -> IdentityDocument | None:
    prefetch = _object(body.get("prefetch"), "prefetch", violations)
    if prefetch is None:
        return None
    patient = _object(prefetch.get("patient"), "prefetch.patient", violations)
    if patient is None:
        return None
    if patient.get("resourceType") != "Patient":
        violations.append(
            Violation("prefetch.patient.resourceType", "must be Patient", "NOT_A_PATIENT")
        )
        return None
    patient_id = context.get("patientId")
    if not isinstance(patient_id, str) or not patient_id:
        violations.append(
            Violation("context.patientId", "the FHIR id of the patient", "MISSING_FIELD")
        )
    elif "id" in patient and patient["id"] != patient_id:
        violations.append(
            Violation(
                "prefetch.patient.id",
                "the prefetched Patient is not context.patientId",
                "PATIENT_MISMATCH",
            )
        )
    found = identity_from_identifiers(patient.get("identifier"), "prefetch.patient.identifier")
    if isinstance(found, Violation):
        violations.append(found)
        return None
    if found is None:
        violations.append(
            Violation(
                "prefetch.patient.identifier",
                "no identity document among the identifiers (resident ID card, passport...)",
                "MISSING_IDENTITY",
            )
        )
    return found


def read_request(service: CdsService, body: Any) -> OrderCheck:
    """The order check a hook request asks for; :class:`Rejected` listing every problem."""
    violations: list[Violation] = []
    request = _object(body, "", violations)
    if request is None:
        raise Rejected("the hook request is not a JSON object", violations)
    if request.get("hook") != service.hook:
        violations.append(Violation("hook", f"this service answers {service.hook}", "WRONG_HOOK"))
    hook_instance = request.get("hookInstance")
    if not isinstance(hook_instance, str) or not hook_instance:
        violations.append(Violation("hookInstance", "a UUID for this hook call", "MISSING_FIELD"))
        hook_instance = ""
    context = _object(request.get("context"), "context", violations)
    orders: list[DraftOrder] = []
    patient = None
    if context is not None:
        selections: set[str] | None = None
        if service.hook == "order-select":
            chosen = context.get("selections")
            if not isinstance(chosen, list) or not all(isinstance(s, str) for s in chosen):
                violations.append(
                    Violation(
                        "context.selections",
                        "the references of the orders just selected, e.g. ServiceRequest/1",
                        "MISSING_FIELD",
                    )
                )
            else:
                selections = set(chosen)
        orders = _draft_orders(context, selections, violations)
        patient = _patient(request, context, violations)
    if violations or patient is None:
        raise Rejected("the hook request cannot be checked", violations)
    return OrderCheck(hook_instance, patient, orders)


def request_field(service_field: str) -> str:
    """Where a field the recognition service names is in a hook request."""
    if service_field.startswith("ordered_codes"):
        return "context.draftOrders.entry"
    if service_field == "accept_language":
        return "Accept-Language"
    return service_field


def card_uuid(check_id: str, line: int) -> str:
    """A card's id: the check and line it stands for, which its feedback names."""
    return f"{check_id}:{line}"


def _detail(checked: CheckedLine, language: Language) -> str:
    finding, detail = checked.finding, checked.detail
    zh = language is Language.ZH
    parts = [f"**{finding.reason.text(language)}**"]
    if isinstance(detail, LabDetail) and detail.value:
        value = f"{detail.value} {detail.unit}".strip()
        if detail.reference_range:
            value += f" ({'参考范围' if zh else 'reference range'} {detail.reference_range})"
        parts.append(f"{detail.display or detail.loinc}: {value}")
    elif isinstance(detail, ImagingDetail):
        described = " ".join(p for p in (detail.modalities, detail.body_parts) if p)
        parts.append(f"{described} {detail.description}".strip())
    if finding.result is not None and checked.cited is not None:
        issued = local_time(checked.cited.report_time)
        parts.append(
            f"{'出具机构' if zh else 'Issuer'}: {finding.result.issuer.name}; "
            f"{'报告时间' if zh else 'reported'} {issued}"
        )
    if finding.valid_until is not None:
        parts.append(valid_until_text(finding.valid_until).text(language))
    return "\n\n".join(parts)


def override_reasons(language: Language) -> list[dict[str, str]]:
    """The decline reasons of the recognition rules, as the codings an override names."""
    return [
        {
            "code": reason.value,
            "system": DECLINE_REASON_SYSTEM,
            "display": DECLINE_REASON_NAMES[reason.value].text(language),
        }
        for reason in DeclineReason
    ]


def cards(
    check_id: str,
    lines: Sequence[CheckedLine],
    orders: Sequence[DraftOrder],
    language: Language,
    open_url: Callable[[str], str],
) -> list[dict[str, Any]]:
    """One card per recognizable line: its summary, detail, a link to open an imaging study,
    the suggestion to delete the draft orders it makes needless (when every item of their code
    is recognizable), and the override reasons. ``open_url``: the link that opens a recognized
    study's UID (the check's study link)."""
    answered: list[dict[str, Any]] = []
    reasons = override_reasons(language)
    for number, checked in enumerate(lines):
        finding, item = checked.finding, checked.line.item
        if finding.verdict is not Verdict.RECOGNIZABLE or item is None or finding.result is None:
            continue
        uuid = card_uuid(check_id, number)
        age = finding.age or dt.timedelta(0)
        card: dict[str, Any] = {
            "uuid": uuid,
            "summary": clip(
                card_summary(item, finding.result.issuer.name, age).text(language), MAX_SUMMARY
            ),
            "detail": _detail(checked, language),
            "indicator": "info",
            "source": {
                "label": "检查检验结果互认平台"
                if language is Language.ZH
                else "Mutual recognition",
                "topic": {
                    "system": CATALOG_SYSTEM,
                    "code": item.code,
                    "display": item.name_zh if language is Language.ZH else item.name_en,
                },
            },
            "overrideReasons": reasons,
        }
        # An order is needless only when every item it stands for is recognizable: a panel
        # code with one analyte to measure still has to be done.
        ordered = checked.line.ordered_code.strip()
        needless = all(
            other.finding.verdict is Verdict.RECOGNIZABLE
            for other in lines
            if other.line.ordered_code.strip() == ordered
        )
        duplicates = [
            o.reference for o in orders if needless and o.reference and o.code.strip() == ordered
        ]
        if duplicates:
            label = remove_duplicate_order(item).text(language)
            card["suggestions"] = [
                {
                    "label": label,
                    "uuid": f"{uuid}:remove",
                    "isRecommended": True,
                    "actions": [
                        {"type": "delete", "description": label, "resourceId": reference}
                        for reference in duplicates
                    ],
                }
            ]
            card["selectionBehavior"] = "at-most-one"
        if isinstance(checked.detail, ImagingDetail) and checked.detail.study_instance_uid:
            card["links"] = [
                {
                    "label": "打开影像" if language is Language.ZH else "Open the study",
                    "url": open_url(checked.detail.study_instance_uid),
                    "type": "absolute",
                }
            ]
        answered.append(card)
    return answered


@dataclass(frozen=True, slots=True)
class Feedback:
    """A doctor's outcome on one card, as a decision on its check line."""

    check_id: str
    line: int
    accepted: bool
    reason: DeclineReason | None
    reason_text: str


def _feedback_item(item: Any, path: str, violations: list[Violation]) -> Feedback | None:
    given = _object(item, path, violations)
    if given is None:
        return None
    card = given.get("card")
    check_id, _, line = card.rpartition(":") if isinstance(card, str) else ("", "", "")
    if not check_id or not line.isdigit() or len(check_id) > 64:
        violations.append(
            Violation(f"{path}.card", "the uuid of a card this service answered", "UNKNOWN_CARD")
        )
        return None
    outcome = given.get("outcome")
    if outcome == "accepted":
        return Feedback(check_id, int(line), True, None, "")
    if outcome != "overridden":
        violations.append(Violation(f"{path}.outcome", "accepted or overridden", "BAD_OUTCOME"))
        return None
    override = given.get("overrideReason")
    reason_path = f"{path}.overrideReason.reason"
    coding = override.get("reason") if isinstance(override, dict) else None
    code = coding.get("code") if isinstance(coding, dict) else None
    try:
        reason = DeclineReason(code)
    except ValueError:
        violations.append(
            Violation(
                f"{reason_path}.code" if isinstance(coding, dict) else reason_path,
                "one of the card's overrideReasons",
                "UNKNOWN_REASON",
            )
        )
        return None
    comment = override.get("userComment", "") if isinstance(override, dict) else ""
    if not isinstance(comment, str):
        violations.append(
            Violation(f"{path}.overrideReason.userComment", "must be a string", "NOT_A_STRING")
        )
        return None
    return Feedback(check_id, int(line), False, reason, comment)


def read_feedback(body: Any) -> list[Feedback]:
    """The decisions a feedback request reports; :class:`Rejected` listing every problem."""
    violations: list[Violation] = []
    request = _object(body, "", violations)
    items = request.get("feedback") if request is not None else None
    if request is not None and (not isinstance(items, list) or not items):
        violations.append(Violation("feedback", "a non-empty JSON array", "MISSING_FIELD"))
    elif isinstance(items, list) and len(items) > MAX_FEEDBACK:
        violations.append(
            Violation("feedback", f"at most {MAX_FEEDBACK} items at once", "TOO_MANY")
        )
    read: list[Feedback] = []
    if not violations and isinstance(items, list):
        for position, item in enumerate(items):
            found = _feedback_item(item, f"feedback[{position}]", violations)
            if found is not None:
                read.append(found)
    if violations:
        raise Rejected("the feedback cannot be recorded", violations)
    return read


def feedback_field(position: int, service_field: str) -> str:
    """Where a field the recognition service names (in a decision) is in a feedback request."""
    prefix = f"feedback[{position}]"
    if service_field in {"reason", "reason_text"}:
        return f"{prefix}.overrideReason"
    if service_field == "decision":
        return f"{prefix}.outcome"
    return f"{prefix}.card"
