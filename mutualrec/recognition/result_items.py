"""Which catalog items a held result is, and the rows of the recognition index that say so.

Pure: :mod:`mutualrec.services.result_indexing` writes these rows, in the transaction that
stores the result, so a result and its index rows commit together.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable

from mutualrec.ingest.lab_result import LabResult
from mutualrec.ingest.study_records import StudyOverview
from mutualrec.localtime import LOCAL_ZONE
from mutualrec.matching.catalog import Catalog, CatalogItem, ItemCategory
from mutualrec.matching.codes import SeriesFacts, items_for_study
from mutualrec.matching.declared import contradictions
from mutualrec.matching.indexed_results import HELD, ResultItems
from mutualrec.matching.units import CanonicalValue, canonical_value

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


def lab_items(
    lab_result_id: int,
    result: LabResult,
    patient_key: str,
    version: int,
    institution_id: int,
    item_codes: Iterable[str],
    detail_of: Callable[[LabResult, str], str],
) -> ResultItems:
    """What the recognition index holds of one lab result version: a row per catalog item it
    is, ``detail_of`` giving the result as that item (its value in the item's unit)."""
    # The Specimen's collection time when the document carries one, else the Observation's
    # effective time (for a lab result, when the specimen was taken).
    collected_at = (result.specimen_collected_at or result.effective_at).astimezone(dt.UTC)
    return ResultItems(
        patient_key=patient_key,
        kind="lab",
        result_ref=lab_ref(lab_result_id),
        version=version,
        status=result.status.value,
        report_time=result.report_time.astimezone(dt.UTC),
        institution_id=institution_id,
        details=tuple([(code, detail_of(result, code)) for code in sorted(item_codes)]),
        collected_at=collected_at,
    )


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


def study_recognition(
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


def study_items(
    overview: StudyOverview,
    patient_key: str,
    institution_id: int,
    item_codes: Iterable[str],
    status: str,
) -> ResultItems:
    """What the recognition index holds of a dated study: a row per catalog item it is.

    A study has no report in DICOM: its report time is the study's date and time.
    """
    assert overview.study_date is not None  # an undated study is no item
    detail = study_detail(overview)
    return ResultItems(
        patient_key=patient_key,
        kind="imaging",
        result_ref=study_ref(overview.study_instance_uid),
        version=1,
        status=status,
        report_time=_study_time(overview.study_date, overview),
        institution_id=institution_id,
        details=tuple([(code, detail) for code in sorted(item_codes)]),
    )
