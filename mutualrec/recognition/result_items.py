"""Which catalog items a held result is, as rows of the recognition index.

Ingest calls these in its own transaction, so a result and its index rows commit together.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy.orm import Session

from mutualrec.ingest.lab_result import LabResult
from mutualrec.localtime import LOCAL_ZONE
from mutualrec.matching.catalog import Catalog, CatalogItem, ItemCategory
from mutualrec.matching.codes import SeriesFacts, items_for_lab_result, items_for_study
from mutualrec.matching.declared import contradictions
from mutualrec.matching.order_lines import HELD
from mutualrec.matching.units import CanonicalValue, canonical_value
from mutualrec.services.reference import ReferenceCache
from mutualrec.storage import imaging_index, recognition_index
from mutualrec.storage.imaging_index import StudyOverview

# DICOM study dates and times are the hospital's local time.


def lab_ref(lab_result_id: int) -> str:
    """The recognition reference of a lab result."""
    return f"lab:{lab_result_id}"


def study_ref(study_instance_uid: str) -> str:
    """The recognition reference of an imaging study."""
    return f"study:{study_instance_uid}"


def _range(result: LabResult) -> str:
    if result.reference_low is None and result.reference_high is None:
        return result.reference_text
    low = "" if result.reference_low is None else str(result.reference_low)
    high = "" if result.reference_high is None else str(result.reference_high)
    return f"{low}-{high}"


_json_string = json.encoder.encode_basestring


def lab_detail(result: LabResult, canonical: CanonicalValue | None = None) -> str:
    """What a doctor sees of a recognized lab result, as JSON; with ``canonical``, the value in
    the item's canonical unit beside the value as reported."""
    value = result.value
    shown = str(value.number) if value.number is not None else value.text
    if value.kind == "Range":
        shown = f"{value.low or ''}-{value.high or ''}"
    # What json.dumps(..., ensure_ascii=False) writes for this dict of strings, spelled out: it
    # is built for every result ingested, and the generic encoder costs three times as much.
    string = _json_string
    text = (
        f'{{"loinc": {string(result.loinc[0] if result.loinc else "")}, '
        f'"display": {string(result.code_text)}, '
        f'"value": {string(shown)}, '
        f'"unit": {string(value.unit)}, '
        f'"range": {string(_range(result))}, '
        f'"interpretation": {string(";".join(result.interpretation))}}}'
    )
    if canonical is None:
        return text
    converted = "" if canonical.value is None else str(canonical.value)
    return (
        f'{text[:-1]}, "canonical_value": {string(converted)}, '
        f'"canonical_unit": {string(canonical.unit)}, "unit_note": {string(canonical.note)}}}'
    )


def lab_rows(
    lab_result_id: int,
    result: LabResult,
    patient_key: str,
    version: int,
    institution_id: int,
    item_codes: Iterable[str],
    detail_of: Callable[[LabResult, str], str] | None = None,
) -> list[dict[str, Any]]:
    """Index rows of one lab result version, one per catalog item it is.

    ``detail_of`` gives the detail of the result as one item (its value in that item's unit);
    without it every row shows the result as reported.
    """
    detail = lab_detail(result) if detail_of is None else ""
    # The Specimen's collection time when the document carries one, else the Observation's
    # effective time (for a lab result, when the specimen was taken).
    collected_at = (result.specimen_collected_at or result.effective_at).astimezone(dt.UTC)
    return [
        {
            "patient_key": patient_key,
            "item_code": item_code,
            "kind": "lab",
            "result_ref": lab_ref(lab_result_id),
            "version": version,
            "status": result.status.value,
            "report_time": result.report_time.astimezone(dt.UTC),
            "institution_id": institution_id,
            "detail": detail if detail_of is None else detail_of(result, item_code),
            "collected_at": collected_at,
        }
        for item_code in sorted(item_codes)
    ]


def lab_item_mapper(
    reference: ReferenceCache, institution_id: int
) -> Callable[[LabResult], frozenset[str]]:
    """The catalog items of the institution's lab results: by LOINC, else its local codes."""
    catalog = reference.data().catalog
    mapping = reference.mappings(institution_id)

    def items_of(result: LabResult) -> frozenset[str]:
        if not result.has_value:
            return frozenset()
        local = [coding.code for coding in result.local_codes]
        return items_for_lab_result(result.loinc, local, mapping, catalog, result.groups)

    return items_of


def panel_detail(result: LabResult, panel: CatalogItem) -> str:
    """What a doctor sees of a panel (a CBC) a result carries: the panel, not the one analyte."""
    code, members = next(
        ((code, members) for code, members in result.groups if code in panel.loinc),
        (panel.loinc[0], ()),
    )
    return json.dumps(
        {
            "loinc": code,
            "display": panel.name_zh,
            "value": f"{len(members)} results",
            "unit": "",
            "range": "",
            "interpretation": "",
        },
        ensure_ascii=False,
    )


def detail_for_item(catalog: Catalog) -> Callable[[LabResult, str], str]:
    """The detail of a lab result as one catalog item: its value in the item's canonical unit,
    or the panel it carries."""

    def detail_of(result: LabResult, item_code: str) -> str:
        item = catalog.get(item_code)
        if item is not None and item.is_panel:
            return panel_detail(result, item)
        value = result.value
        canonical = None
        if item is not None and value.kind == "Quantity":
            canonical = canonical_value(value.number, value.unit, item)
        return lab_detail(result, canonical)

    return detail_of


def lab_detail_mapper(reference: ReferenceCache) -> Callable[[LabResult, str], str]:
    """:func:`detail_for_item` under the current catalog."""
    return detail_for_item(reference.data().catalog)


def _study_time(study_date: dt.date, overview: StudyOverview) -> dt.datetime:
    moment = dt.datetime.combine(study_date, overview.study_time or dt.time())
    return moment.replace(tzinfo=LOCAL_ZONE).astimezone(dt.UTC)


def study_detail(overview: StudyOverview) -> str:
    """What a doctor sees of a recognized study, as JSON."""
    return json.dumps(
        {
            "study_instance_uid": overview.study_instance_uid,
            "accession_number": overview.accession_number,
            "modalities": ",".join(overview.modalities),
            "body_parts": ",".join(overview.body_parts),
            "contrast": overview.contrast,
            "description": overview.description,
            "instance_count": overview.instance_count,
        },
        ensure_ascii=False,
    )


NO_DATE = (
    "no study date (StudyDate, SeriesDate, AcquisitionDate and ContentDate are all empty): no "
    "validity window can start, so the study is kept in the patient's history but never "
    "recognized"
)


def _recognition(
    overview: StudyOverview, series: list[SeriesFacts], catalog: Catalog
) -> tuple[frozenset[str], str, str]:
    """The items the study's rows name, the rows' status, and why it is not recognized."""
    if overview.study_date is None:
        return frozenset(), "final", NO_DATE
    code = overview.performed_item_code
    declared = catalog.get(code) if code else None
    if declared is not None and declared.category is ItemCategory.IMAGING:
        if overview.declared_item_review == "overruled":
            return items_for_study(None, series, catalog), "final", ""
        problems = contradictions(declared, series)
        if problems and overview.declared_item_review != "confirmed":
            reason = (
                f"the declared item {declared.code} contradicts the images: "
                f"{'; '.join(problems)}. Not recognized for it until an administrator resolves "
                "it (mutualrec admin review-declared-item)"
            )
            return frozenset({declared.code}), HELD, reason
    return items_for_study(code or None, series, catalog), "final", ""


def index_study(session: Session, overview: StudyOverview, catalog: Catalog) -> frozenset[str]:
    """Bring a study's index rows and its not-recognized reason up to date; the items it is.

    A study has no report in DICOM: its report time is the study's date and time. It is final
    once held. A study without a date is no item; one whose declared item contradicts its
    images is held for that item (a row a check explains, never recognizes).
    """
    study_instance_uid = overview.study_instance_uid
    parties = imaging_index.study_parties(session, study_instance_uid)
    if parties is None:
        return frozenset()
    series = [SeriesFacts(m, b, c) for m, b, c in parties.series]
    items, status, reason = _recognition(overview, series, catalog)
    if reason != overview.not_recognized_reason:
        imaging_index.set_not_recognized_reason(session, study_instance_uid, reason)
    ref = study_ref(study_instance_uid)
    if overview.study_date is not None:
        detail = study_detail(overview)
        report_time = _study_time(overview.study_date, overview)
        recognition_index.upsert_results(
            session,
            [
                {
                    "patient_key": parties.patient_key,
                    "item_code": item_code,
                    "kind": "imaging",
                    "result_ref": ref,
                    "version": 1,
                    "status": status,
                    "report_time": report_time,
                    "institution_id": parties.institution_id,
                    "detail": detail,
                    "collected_at": None,
                }
                for item_code in sorted(items)
            ],
        )
    recognition_index.drop_stale_items(session, {ref: items})
    return frozenset() if status == HELD else items


def review_declared_item(
    session: Session, study_instance_uid: str, confirmed: bool, catalog: Catalog
) -> StudyOverview | None:
    """An administrator's word on a study's declared item: it stands (``confirmed``) or the
    header does. Re-indexes the study; None when no such study is held."""
    review = "confirmed" if confirmed else "overruled"
    if not imaging_index.set_declared_item_review(session, study_instance_uid, review):
        return None
    overview = imaging_index.study_overview(session, study_instance_uid)
    assert overview is not None
    index_study(session, overview, catalog)
    return imaging_index.study_overview(session, study_instance_uid)
