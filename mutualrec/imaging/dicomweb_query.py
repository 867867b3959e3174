"""QIDO-RS queries (DICOM PS3.18 8.3.4 and 10.6): which query parameters a search takes, how
they are checked, and how an attribute's value matches a filter (PS3.4 C.2.2.2: single value,
UID list, wildcard, range).

Pure: no storage, no HTTP. A parameter this module does not know is refused by name, never
silently ignored, so a viewer learns that its filter was not applied.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

from mutualrec.violations import Rejected, Violation


class Level(Enum):
    """What a search returns, one entry per."""

    STUDY = "study"
    SERIES = "series"
    INSTANCE = "instance"


# Attributes one may match on, by the level that holds them (PS3.18 Table 10.6.1-5, and the
# common extras viewers send).
STUDY_KEYS = (
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "ModalitiesInStudy",
    "ReferringPhysicianName",
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyID",
    "StudyDescription",
)
SERIES_KEYS = (
    "Modality",
    "SeriesInstanceUID",
    "SeriesNumber",
    "SeriesDescription",
    "BodyPartExamined",
    "PerformedProcedureStepStartDate",
    "PerformedProcedureStepStartTime",
)
INSTANCE_KEYS = ("SOPClassUID", "SOPInstanceUID", "InstanceNumber")

# What an entry holds without includefield (PS3.18 Tables 10.6.3-3 to -5), beyond its keys.
STUDY_DEFAULTS = (
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "InstanceAvailability",
    "ModalitiesInStudy",
    "ReferringPhysicianName",
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyID",
    "StudyDescription",
    "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
    "RetrieveURL",
)
SERIES_DEFAULTS = (
    "Modality",
    "SeriesDescription",
    "SeriesInstanceUID",
    "SeriesNumber",
    "BodyPartExamined",
    "PerformedProcedureStepStartDate",
    "PerformedProcedureStepStartTime",
    "NumberOfSeriesRelatedInstances",
    "RetrieveURL",
)
INSTANCE_DEFAULTS = (
    "SOPClassUID",
    "SOPInstanceUID",
    "InstanceAvailability",
    "RetrieveURL",
    "InstanceNumber",
    "Rows",
    "Columns",
    "BitsAllocated",
    "NumberOfFrames",
)

DEFAULT_LIMIT = 1000
# A larger limit is clipped to this, as PS3.18 8.3.4.4 lets a server (not refused).
MAX_LIMIT = 1000
_CONTROL = ("limit", "offset", "fuzzymatching", "includefield")
_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
_HEX_TAG = re.compile(r"^[0-9A-Fa-f]{8}$")
_DATE_VRS = frozenset({"DA", "TM", "DT"})


@dataclass(frozen=True, slots=True)
class Query:
    """A checked search: filters by keyword, what to include beyond the defaults, paging."""

    level: Level
    filters: Mapping[str, str]
    include: frozenset[str]
    include_all: bool
    limit: int
    offset: int


def keys_for(level: Level, fixed: Iterable[Level] = ()) -> tuple[str, ...]:
    """The keys a search at ``level`` may filter on; ``fixed``: levels the path already names
    (a series search under one study filters on no study attribute but its UID)."""
    fixed = set(fixed)
    keys: list[str] = []
    if Level.STUDY not in fixed:
        keys += STUDY_KEYS
    if level in (Level.SERIES, Level.INSTANCE) and Level.SERIES not in fixed:
        keys += SERIES_KEYS
    if level is Level.INSTANCE:
        keys += INSTANCE_KEYS
    return tuple(keys)


def defaults_for(level: Level, fixed: Iterable[Level] = ()) -> tuple[str, ...]:
    """What an entry holds without includefield: its level's defaults, and those of the levels
    above when the path does not fix them (PS3.18 10.6.3.3.2)."""
    fixed = set(fixed)
    shown: list[str] = []
    if level is not Level.STUDY and Level.STUDY not in fixed:
        shown += [k for k in STUDY_DEFAULTS if k != "RetrieveURL"]
    if level is Level.INSTANCE and Level.SERIES not in fixed:
        shown += [k for k in SERIES_DEFAULTS if k != "RetrieveURL"]
    shown += {
        Level.STUDY: STUDY_DEFAULTS,
        Level.SERIES: SERIES_DEFAULTS,
        Level.INSTANCE: INSTANCE_DEFAULTS,
    }[level]
    if Level.STUDY in fixed or level is not Level.STUDY:
        shown.append("StudyInstanceUID")
    if level is Level.INSTANCE:
        shown.append("SeriesInstanceUID")
    return tuple(dict.fromkeys(shown))


def _keyword(name: str) -> str | None:
    """The keyword a parameter names, by keyword or by eight hex digits; None if unknown."""
    if _HEX_TAG.match(name):
        return keyword_for_tag(int(name, 16)) or None
    return name if tag_for_keyword(name) is not None else None


def _integer(value: str, name: str, problems: list[Violation], default: int) -> int:
    if value == "":
        return default
    if not value.isdigit() or len(value) > 9:
        problems.append(Violation(name, "must be a whole number of 0 or more", "NOT_A_NUMBER"))
        return default
    return int(value)


def _check_filter(keyword: str, value: str, name: str, problems: list[Violation]) -> None:
    vr = dictionary_VR(keyword)
    if vr == "UI":
        uids = [u for u in re.split(r"[\\,]", value) if u]
        if not uids or any(len(u) > 64 or not _UID.match(u) for u in uids):
            problems.append(Violation(name, "not a UID, nor a list of UIDs", "MALFORMED_UID"))
    elif vr in ("DA", "DT", "TM"):
        low, dash, high = value.partition("-")
        for part in (low, high) if dash else (low,):
            if part and not _valid_temporal(vr, part):
                problems.append(
                    Violation(name, f"{part[:20]!r} is not a {vr} value or range", "MALFORMED")
                )
                return
        if dash and not low and not high:
            problems.append(Violation(name, "a range needs at least one end", "MALFORMED"))
    elif vr in ("IS", "US", "UL", "SS", "SL") and not re.fullmatch(r"-?[0-9]{1,10}", value):
        problems.append(Violation(name, "must be a whole number", "NOT_A_NUMBER"))
    if len(value) > 256:
        problems.append(Violation(name, "at most 256 characters", "TOO_LONG"))


def _valid_temporal(vr: str, text: str) -> bool:
    try:
        if vr == "DA":
            dt.datetime.strptime(text, "%Y%m%d")
        elif vr == "TM":
            dt.datetime.strptime(text.split(".")[0].ljust(6, "0"), "%H%M%S")
        else:
            dt.datetime.strptime(text.split(".")[0][:14].ljust(14, "0"), "%Y%m%d%H%M%S")
    except ValueError:
        return False
    return text.replace(".", "").isdigit()


def parse_query(
    params: Iterable[tuple[str, str]], level: Level, fixed: Iterable[Level] = ()
) -> Query:
    """A search's query parameters, checked; :class:`Rejected` naming every bad parameter."""
    fixed = tuple(fixed)
    allowed = set(keys_for(level, fixed))
    problems: list[Violation] = []
    filters: dict[str, str] = {}
    include: set[str] = set()
    include_all = False
    limit, offset = DEFAULT_LIMIT, 0
    seen: set[str] = set()
    for name, value in params:
        if name in ("limit", "offset") and name in seen:
            problems.append(Violation(name, "given more than once", "REPEATED"))
            continue
        seen.add(name)
        if name == "limit":
            limit = _integer(value, name, problems, DEFAULT_LIMIT)
        elif name == "offset":
            offset = _integer(value, name, problems, 0)
        elif name == "fuzzymatching":
            # Accepted, as PS3.18 asks, and not applied: matching stays literal.
            if value not in ("true", "false"):
                problems.append(Violation(name, "must be true or false", "MALFORMED"))
        elif name == "includefield":
            for field in (f.strip() for f in value.split(",")):
                if field == "all":
                    include_all = True
                elif (known := _keyword(field)) is not None:
                    include.add(known)
                else:
                    problems.append(
                        Violation(name, f"{field[:40]!r} is not a DICOM attribute", "UNKNOWN")
                    )
        else:
            keyword = _keyword(name)
            if keyword is None or keyword not in allowed:
                what = "not a DICOM attribute" if keyword is None else "not searchable here"
                problems.append(
                    Violation(
                        name[:64],
                        f"{what}; searchable: {', '.join(sorted(allowed))}",
                        "UNSUPPORTED_PARAMETER",
                    )
                )
                continue
            if keyword in filters:
                problems.append(Violation(name, "given more than once", "REPEATED"))
                continue
            if value == "" or value == "*":
                # Universal matching (PS3.4 C.2.2.2.3): no filter, but the value is returned.
                include.add(keyword)
                continue
            _check_filter(keyword, value, name, problems)
            filters[keyword] = value
    if limit == 0 and "limit" in seen and not problems:
        problems.append(Violation("limit", "must be 1 or more", "OUT_OF_RANGE"))
    if problems:
        raise Rejected("the search is invalid", problems)
    return Query(
        level,
        filters,
        frozenset(include | set(filters)),
        include_all,
        min(limit, MAX_LIMIT),
        offset,
    )


def matches(keyword: str, wanted: str, values: list[str]) -> bool:
    """Whether an attribute holding ``values`` matches the filter ``wanted`` (an attribute of
    several values matches when one of them does, as for ModalitiesInStudy)."""
    vr = dictionary_VR(keyword)
    if vr == "UI":
        uids = {u for u in re.split(r"[\\,]", wanted) if u}
        return any(v in uids for v in values)
    if vr in _DATE_VRS and "-" in wanted:
        low, _, high = wanted.partition("-")
        return any(v and (not low or v >= low) and (not high or v <= _upper(high)) for v in values)
    if vr in _DATE_VRS:
        return any(v == wanted or (vr != "DA" and v.startswith(wanted)) for v in values)
    if "*" in wanted or "?" in wanted:
        # PN matching ignores case, as Orthanc and dcm4chee do; other VRs are exact.
        fold = vr == "PN"
        pattern = wanted.casefold() if fold else wanted
        return any(
            fnmatch.fnmatchcase(v.casefold() if fold else v, pattern.replace("[", "[[]"))
            for v in values
        )
    if vr == "PN":
        return any(v.casefold() == wanted.casefold() for v in values)
    return wanted in values


def _upper(high: str) -> str:
    """A range's upper end, inclusive of everything it starts (``1430`` takes ``143059``)."""
    return high + "\uffff"
