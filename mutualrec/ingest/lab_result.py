"""A lab result as the region indexes it, normalized from one FHIR Observation.

The normalizer reads what matching and patients need (codes, value, reference range, times,
status) and checks what ``fhir.resources`` does not: the status binding, LOINC syntax, UCUM
units, a subject and an effective time, report times not in the future.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, fields
from decimal import Decimal, InvalidOperation
from typing import Any

from mutualrec.localtime import LOCAL_ZONE
from mutualrec.matching.facts import FINAL_STATUSES, ResultStatus
from mutualrec.matching.ucum import is_ucum
from mutualrec.violations import Violation

LOINC_SYSTEM = "http://loinc.org"
UCUM_SYSTEM = "http://unitsofmeasure.org"
# Date-only FHIR times are the local day of the city's hospitals.
# Hospital clocks drift; a report time further ahead than this is an error in the feed (the
# server's setting MUTUALREC_CLOCK_SKEW_SECONDS). Small: a time accepted ahead of the check's
# clock reads as "just now", however far ahead it is.
CLOCK_TOLERANCE = dt.timedelta(seconds=60)
_LOINC_SHAPE = re.compile(r"^\d{1,7}-\d$")
_FHIR_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")
# FHIR dateTime/instant with a time: seconds and a zone are required, fractions optional.
_FHIR_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


# Statuses that correct a final result; a changed final result must carry one of them.
AMENDING_STATUSES = FINAL_STATUSES - {ResultStatus.FINAL}


@dataclass(frozen=True, slots=True)
class Coding:
    """A code of a code system."""

    system: str
    code: str
    display: str = ""

    def __reduce__(self) -> tuple[type[Coding], tuple[Any, ...]]:
        return Coding, _state_of(self)


@dataclass(frozen=True, slots=True)
class LabValue:
    """The value of a result; ``kind`` names the FHIR value[x] type it came from."""

    kind: str
    number: Decimal | None = None
    unit: str = ""
    text: str = ""
    code: Coding | None = None
    low: Decimal | None = None
    high: Decimal | None = None

    def __reduce__(self) -> tuple[type[LabValue], tuple[Any, ...]]:
        return LabValue, _state_of(self)


@dataclass(frozen=True, slots=True)
class ReportContext:
    """What an Observation borrows from its bundle: report, specimen and their times."""

    report_ref: str = ""
    report_issued: dt.datetime | None = None
    specimen_collected_at: dt.datetime | None = None
    # The report's own effective time (effectiveDateTime or effectivePeriod.start): a LIS that
    # exports report-centred bundles times the report and leaves its results untimed.
    report_effective: dt.datetime | None = None
    # The report's entry in the bundle, for telling the LIS where an inherited time came from.
    report_index: int = -1


@dataclass(frozen=True, slots=True)
class LabResult:
    """One Observation, normalized. ``identity`` is unique within the issuing institution."""

    identity: str
    status: ResultStatus
    loinc: tuple[str, ...]
    local_codes: tuple[Coding, ...]
    code_text: str
    value: LabValue
    reference_low: Decimal | None
    reference_high: Decimal | None
    reference_text: str
    interpretation: tuple[str, ...]
    specimen_collected_at: dt.datetime | None
    effective_at: dt.datetime
    issued_at: dt.datetime | None
    report_ref: str
    # The groups (DiagnosticReport, panel Observation) the result is a member of: each group's
    # LOINC code and the LOINC codes of the group's members that carry a value. A panel item
    # (a complete blood count) is recognized from these, never from one result alone.
    groups: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def __reduce__(self) -> tuple[type[LabResult], tuple[Any, ...]]:
        # Results cross from the parse workers to the server by pickle; dataclasses' own
        # pickling of slotted classes walks fields() in Python for every object, several times
        # what the positional arguments cost.
        return LabResult, _state_of(self)

    @property
    def has_value(self) -> bool:
        """Whether the result carries a value; one without (a panel's grouping entry, a
        cancelled test, an interpretation alone) is kept and shown, never recognized."""
        return self.value.kind != "none"

    @property
    def report_time(self) -> dt.datetime:
        """When the result was reported: the validity window of recognition runs from here."""
        return self.issued_at or self.effective_at

    def content_sha256(self, patient_key: str) -> str:
        """Digest of the content that makes a version: same digest, same result.

        Computed over the normalized record rather than the raw JSON, because a LIS re-sending
        a result regenerates bundle-local references (``urn:uuid:``) that change nothing.
        """
        canonical = json.dumps(
            [
                patient_key,
                self.status.value,
                self.loinc,
                [[c.system, c.code] for c in self.local_codes],
                self.code_text,
                _value_repr(self.value),
                _decimal_repr(self.reference_low),
                _decimal_repr(self.reference_high),
                self.reference_text,
                self.interpretation,
                _time_repr(self.specimen_collected_at),
                _time_repr(self.effective_at),
                _time_repr(self.issued_at),
                self.report_ref,
                # Only when there are groups, so results outside any group keep their digest.
                *(
                    [[[code, list(members)] for code, members in self.groups]]
                    if self.groups
                    else []
                ),
            ],
            ensure_ascii=False,
            separators=(",", ":"),
        )
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


Groups = tuple[tuple[str, tuple[str, ...]], ...]


def groups_text(groups: Groups) -> str:
    """``groups`` as stored beside a version: ``code=member,member;code=...`` (LOINC codes)."""
    return ";".join(f"{code}={','.join(members)}" for code, members in groups)


def parse_groups(text: str) -> Groups:
    """The groups :func:`groups_text` wrote."""
    found: list[tuple[str, tuple[str, ...]]] = []
    for part in text.split(";") if text else []:
        code, _, members = part.partition("=")
        found.append((code, tuple(m for m in members.split(",") if m)))
    return tuple(found)


# Each class's fields in __init__ order, read by C code: the arguments that rebuild an instance.
_STATE_GETTERS: dict[type, Callable[[Any], tuple[Any, ...]]] = {
    cls: operator.attrgetter(*(f.name for f in fields(cls)))
    for cls in (Coding, LabValue, LabResult)
}


def _state_of(value: Coding | LabValue | LabResult) -> tuple[Any, ...]:
    return _STATE_GETTERS[type(value)](value)


def _decimal_repr(value: Decimal | None) -> str | None:
    return None if value is None else str(value.normalize())


def _time_repr(value: dt.datetime | None) -> str | None:
    return None if value is None else value.astimezone(dt.UTC).isoformat()


def _value_repr(value: LabValue) -> list[Any]:
    code = [value.code.system, value.code.code] if value.code else None
    return [
        value.kind,
        _decimal_repr(value.number),
        value.unit,
        value.text,
        code,
        _decimal_repr(value.low),
        _decimal_repr(value.high),
    ]


# One tzinfo object per UTC offset: results cross to the server by pickle, which writes a shared
# object once, and a feed's times carry one or two offsets.
_ZONES: dict[dt.tzinfo, dt.tzinfo] = {}


# Cached: the Observations of one report (and their Specimen and DiagnosticReport) repeat its
# times, and datetimes are immutable.
@functools.lru_cache(maxsize=8192)
def parse_fhir_time(text: str) -> dt.datetime:
    """A FHIR date, dateTime or instant as an aware datetime.

    Partial dates (``2026``, ``2026-11``, ``2026-11-01``) mean the start of that period in
    Asia/Shanghai; FHIR requires a zone on every value that has a time.
    """
    match = _FHIR_DATE.match(text)
    if match:
        year, month, day = match.groups()
        return _in_utc_range(
            dt.datetime(int(year), int(month or 1), int(day or 1), tzinfo=LOCAL_ZONE)
        )
    if not _FHIR_DATETIME.match(text):
        raise ValueError("not a FHIR dateTime: YYYY-MM-DDThh:mm:ss[.fff] and a zone")
    moment = _in_utc_range(dt.datetime.fromisoformat(text))
    zone = moment.tzinfo
    assert zone is not None  # the pattern requires a zone
    shared = _ZONES.setdefault(zone, zone)
    return moment if shared is zone else moment.replace(tzinfo=shared)


def _in_utc_range(moment: dt.datetime) -> dt.datetime:
    """``moment``, if it is an instant Python can hold in UTC too: 0001-01-01T00:00+14:00 is not,
    and converting it (to store or compare it) would overflow."""
    try:
        moment.astimezone(dt.UTC)
    except OverflowError:
        raise ValueError("outside the years 1 to 9999 once converted to UTC") from None
    return moment


class _Reader:
    """Collects violations while reading one Observation."""

    def __init__(self, path: Callable[[str], str]) -> None:
        self.path = path
        self.violations: list[Violation] = []

    def add(self, field: str, description: str, reason: str) -> None:
        self.violations.append(Violation(self.path(field), description, reason))

    def time(self, node: Any, field: str) -> dt.datetime | None:
        if node is None:
            return None
        if not isinstance(node, str):
            self.add(field, f"{node!r:.80} is not a FHIR date or dateTime string", "INVALID_VALUE")
            return None
        try:
            return parse_fhir_time(node)
        except ValueError:
            self.add(field, f"{node!r} is not a FHIR date or dateTime", "INVALID_VALUE")
            return None

    def decimal(self, node: Any, field: str) -> Decimal | None:
        if node is None:
            return None
        try:
            return Decimal(str(node))
        except InvalidOperation:
            self.add(field, f"{node!r} is not a decimal", "INVALID_VALUE")
            return None

    def unit(self, quantity: dict[str, Any], field: str) -> str:
        """The UCUM code of a Quantity; a violation when its unit is not UCUM."""
        system = quantity.get("system")
        code = quantity.get("code")
        unit = quantity.get("unit")
        if system is not None and system != UCUM_SYSTEM:
            self.add(
                f"{field}.system",
                f"units must be UCUM ({UCUM_SYSTEM}), got {system!r}",
                "NOT_UCUM",
            )
            return ""
        if isinstance(code, str):
            if not is_ucum(code):
                self.add(f"{field}.code", f"{code!r} is not a UCUM unit", "NOT_UCUM")
            return code
        if isinstance(unit, str):
            # Many LIS send only the display unit; accepted when it is itself valid UCUM.
            if not is_ucum(unit):
                self.add(
                    f"{field}.unit",
                    f"{unit!r} is not a UCUM unit; send the UCUM code in {field}.code",
                    "NOT_UCUM",
                )
            return unit
        return ""


def _codings(node: Any) -> list[dict[str, Any]]:
    if not isinstance(node, dict):
        return []
    return [c for c in node.get("coding", []) if isinstance(c, dict)]


def _first_coding(node: Any) -> Coding | None:
    for coding in _codings(node):
        if isinstance(coding.get("code"), str):
            return Coding(str(coding.get("system", "")), coding["code"], coding.get("display", ""))
    return None


# The longest text of each kind the index holds (its column sizes): longer is this entry's
# violation, not a database error failing the whole document (PostgreSQL enforces the sizes).
_MAX_IDENTITY, _MAX_SYSTEM, _MAX_CODE, _MAX_DECIMAL = 300, 200, 64, 40


def _check_lengths(
    reader: _Reader,
    identity: str | None,
    loinc: tuple[str, ...],
    local: tuple[Coding, ...],
    value: LabValue | None,
    reference: tuple[Decimal | None, Decimal | None],
) -> None:
    value = value or LabValue("none")
    numbers = (value.number, value.low, value.high, *reference)
    checks = [
        ("identifier", identity or "", _MAX_IDENTITY),
        ("code.coding", ";".join(loinc[1:]), _MAX_SYSTEM),
        ("code.coding", local[0].system if local else "", _MAX_SYSTEM),
        ("code.coding", local[0].code if local else "", _MAX_CODE),
        ("value[x]", value.unit, _MAX_CODE),
        ("value[x]", value.code.system if value.code else "", _MAX_SYSTEM),
        ("value[x]", value.code.code if value.code else "", _MAX_CODE),
        *(("value[x]", str(n), _MAX_DECIMAL) for n in numbers if n is not None),
    ]
    for field, text, limit in checks:
        if len(text) > limit:
            reader.add(field, f"{len(text)} characters; at most {limit} are kept", "TOO_LONG")


def observation_identity(resource: dict[str, Any]) -> str | None:
    """How the institution names the Observation: its business identifier, else its id."""
    identifiers = resource.get("identifier")
    # Read before the resource is validated: a malformed identifier names nothing here and is
    # the validator's violation.
    for identifier in identifiers if isinstance(identifiers, list) else []:
        if isinstance(identifier, dict) and identifier.get("value"):
            return f"identifier|{identifier.get('system', '')}|{identifier['value']}"
    resource_id = resource.get("id")
    if isinstance(resource_id, str) and resource_id:
        return f"id|{resource_id}"
    return None


def _read_status(resource: dict[str, Any], reader: _Reader) -> ResultStatus | None:
    status = resource.get("status")
    if status is None:
        reader.add("status", "required, missing", "MISSING_FIELD")
        return None
    try:
        return ResultStatus(status)
    except ValueError:
        reader.add("status", f"{status!r} is not an ObservationStatus code", "INVALID_CODE")
        return None


def _read_codes(
    resource: dict[str, Any], reader: _Reader
) -> tuple[tuple[str, ...], tuple[Coding, ...], str]:
    code = resource.get("code")
    if not isinstance(code, dict):
        reader.add("code", "required, missing", "MISSING_FIELD")
        return (), (), ""
    loinc: list[str] = []
    local: list[Coding] = []
    for position, coding in enumerate(code.get("coding", []) or []):
        value = coding.get("code") if isinstance(coding, dict) else None
        if not isinstance(value, str):
            continue
        if coding.get("system") == LOINC_SYSTEM:
            if not _LOINC_SHAPE.match(value):
                reader.add(
                    f"code.coding[{position}].code",
                    f"{value!r} is not a LOINC code (digits, a hyphen, a check digit)",
                    "INVALID_CODE",
                )
            loinc.append(value)
        else:
            local.append(Coding(str(coding.get("system", "")), value, coding.get("display", "")))
    if not loinc and not local:
        reader.add(
            "code.coding",
            "a result needs a coded test: a LOINC coding or the hospital's local code",
            "MISSING_FIELD",
        )
    return tuple(loinc), tuple(local), str(code.get("text", ""))


def _read_value(resource: dict[str, Any], reader: _Reader) -> LabValue | None:
    if isinstance(quantity := resource.get("valueQuantity"), dict):
        number = reader.decimal(quantity.get("value"), "valueQuantity.value")
        unit = reader.unit(quantity, "valueQuantity")
        comparator = quantity.get("comparator", "")
        return LabValue("Quantity", number=number, unit=unit, text=str(comparator))
    if isinstance(concept := resource.get("valueCodeableConcept"), dict):
        coding = _first_coding(concept)
        label = str(concept.get("text", "") or (coding.display if coding else ""))
        return LabValue("CodeableConcept", code=coding, text=label)
    if isinstance(text := resource.get("valueString"), str):
        return LabValue("string", text=text)
    if isinstance(flag := resource.get("valueBoolean"), bool):
        return LabValue("boolean", text="true" if flag else "false")
    if isinstance(integer := resource.get("valueInteger"), int):
        return LabValue("integer", number=Decimal(integer))
    if isinstance(range_ := resource.get("valueRange"), dict):
        units: list[str] = []
        bounds: list[Decimal | None] = []
        for end in ("low", "high"):
            bound = range_.get(end)
            if isinstance(bound, dict):
                bounds.append(reader.decimal(bound.get("value"), f"valueRange.{end}.value"))
                units.append(reader.unit(bound, f"valueRange.{end}"))
            else:
                bounds.append(None)
        return LabValue(
            "Range", unit=next((u for u in units if u), ""), low=bounds[0], high=bounds[1]
        )
    return None


def _read_reference_range(
    resource: dict[str, Any], reader: _Reader
) -> tuple[Decimal | None, Decimal | None, str]:
    ranges = resource.get("referenceRange") or []
    if not ranges or not isinstance(ranges[0], dict):
        return None, None, ""
    first = ranges[0]
    bounds: list[Decimal | None] = []
    for end in ("low", "high"):
        bound = first.get(end)
        if isinstance(bound, dict):
            bounds.append(reader.decimal(bound.get("value"), f"referenceRange[0].{end}.value"))
            reader.unit(bound, f"referenceRange[0].{end}")
        else:
            bounds.append(None)
    return bounds[0], bounds[1], str(first.get("text", ""))


def _has_effective(resource: dict[str, Any]) -> bool:
    # A JSON null is no value at all: it falls through to "required", never to a None time.
    if resource.get("effectiveDateTime") is not None:
        return True
    if resource.get("effectiveInstant") is not None:
        return True
    period = resource.get("effectivePeriod")
    return isinstance(period, dict) and (
        period.get("start") is not None or period.get("end") is not None
    )


def inherited_fields(resource: dict[str, Any], context: ReportContext) -> tuple[str, ...]:
    """The times an Observation takes from its DiagnosticReport because it has none itself."""
    found: list[str] = []
    if not _has_effective(resource) and context.report_effective is not None:
        found.append("effective[x]")
    if resource.get("issued") is None and context.report_issued is not None:
        found.append("issued")
    return tuple(found)


def _read_effective(
    resource: dict[str, Any], reader: _Reader, context: ReportContext
) -> dt.datetime | None:
    for field in ("effectiveDateTime", "effectiveInstant"):
        if resource.get(field) is not None:
            return reader.time(resource[field], field)
    period = resource.get("effectivePeriod")
    if isinstance(period, dict):
        for field in ("start", "end"):
            if period.get(field) is not None:
                return reader.time(period[field], f"effectivePeriod.{field}")
    if context.report_effective is not None:
        return context.report_effective
    reader.add(
        "effective[x]",
        "required: when the specimen was taken or the test performed (effectiveDateTime), "
        "here or on the DiagnosticReport whose result it is",
        "MISSING_FIELD",
    )
    return None


def _says_why_no_value(resource: dict[str, Any]) -> bool:
    return any(
        resource.get(element)
        for element in ("dataAbsentReason", "interpretation", "component", "hasMember")
    )


def normalize_observation(
    resource: dict[str, Any],
    path: Callable[[str], str],
    context: ReportContext,
    received_at: dt.datetime,
    *,
    clock_skew: dt.timedelta = CLOCK_TOLERANCE,
) -> LabResult | list[Violation]:
    """The normalized result of a structurally valid Observation, or what is wrong with it.

    ``path`` turns an element name into its document path; the subject is resolved by the
    caller, who knows the bundle.
    """
    reader = _Reader(path)
    identity = observation_identity(resource)
    if identity is None:
        reader.add(
            "identifier",
            "a result needs a business identifier (or at least a resource id) to be versioned",
            "MISSING_FIELD",
        )
    status = _read_status(resource, reader)
    loinc, local, code_text = _read_codes(resource, reader)
    effective = _read_effective(resource, reader, context)
    issued = reader.time(resource.get("issued"), "issued") or context.report_issued
    value = _read_value(resource, reader)
    # Results without a value that are results all the same: a dataAbsentReason (specimen
    # haemolysed, test cancelled), a susceptibility told by its interpretation alone, a panel's
    # grouping entry whose members carry the values. Kept and shown, never recognized.
    if value is None and status in FINAL_STATUSES and not _says_why_no_value(resource):
        reader.add(
            "value[x]",
            "a final result needs a value, or a dataAbsentReason saying why there is none "
            "(an interpretation, components or hasMember members also do)",
            "MISSING_FIELD",
        )
    reference_low, reference_high, reference_text = _read_reference_range(resource, reader)
    horizon = received_at + clock_skew
    for field, moment in (("issued", issued), ("effective[x]", effective)):
        if moment is not None and moment > horizon:
            reader.add(
                field,
                f"{moment.isoformat()} is in the future (received at {received_at.isoformat()})",
                "FUTURE_TIME",
            )
    interpretation = tuple(
        c["code"]
        for concept in resource.get("interpretation", []) or []
        for c in _codings(concept)
        if isinstance(c.get("code"), str)
    )
    _check_lengths(reader, identity, loinc, local, value, (reference_low, reference_high))
    if reader.violations:
        return reader.violations
    assert identity is not None
    assert status is not None
    assert effective is not None
    return LabResult(
        identity=identity,
        status=status,
        loinc=loinc,
        local_codes=local,
        code_text=code_text,
        value=value or LabValue("none"),
        reference_low=reference_low,
        reference_high=reference_high,
        reference_text=reference_text,
        interpretation=interpretation,
        specimen_collected_at=context.specimen_collected_at,
        effective_at=effective,
        issued_at=issued,
        report_ref=context.report_ref,
    )
