"""Every reason text a doctor reads, in one place, so wording stays consistent and reviewable.

One line each, English, times in Asia/Shanghai: the region's clinical clock, whatever zone the
facts arrived in.
"""

from __future__ import annotations

import datetime as dt

from mutualrec.localtime import LOCAL_ZONE
from mutualrec.matching.catalog import CatalogItem
from mutualrec.matching.facts import InstitutionFacts, InstitutionLevel, ResultFacts, Scope

_LEVEL_NAMES = {
    InstitutionLevel.PRIMARY: "primary",
    InstitutionLevel.SECONDARY: "secondary",
    InstitutionLevel.TERTIARY: "tertiary",
}


def local_time(value: dt.datetime) -> str:
    """``value`` as a doctor in the region reads it: ``2026-11-01 08:30``."""
    return value.astimezone(LOCAL_ZONE).strftime("%Y-%m-%d %H:%M")


def _item(item: CatalogItem) -> str:
    return f"{item.name_zh} ({item.name_en})"


def _count(amount: int, unit: str) -> str:
    return f"{amount} {unit}" if amount == 1 else f"{amount} {unit}s"


def _ago(age: dt.timedelta) -> str:
    if age >= dt.timedelta(days=1):
        return _count(age.days, "day") + " ago"
    if age >= dt.timedelta(hours=1):
        return _count(age // dt.timedelta(hours=1), "hour") + " ago"
    if age >= dt.timedelta(minutes=1):
        return _count(age // dt.timedelta(minutes=1), "minute") + " ago"
    # Also a report stamped slightly after the check arrived: clocks of hospitals drift.
    return "just now"


def _window(window: dt.timedelta) -> str:
    if window % dt.timedelta(days=1):
        return _count(window // dt.timedelta(hours=1), "hour")
    return _count(window.days, "day")


def _covers(result_item: CatalogItem, ordered: CatalogItem) -> str:
    return "" if result_item.code == ordered.code else f", which covers {ordered.name_zh}"


def _reported(
    result_item: CatalogItem,
    ordered: CatalogItem,
    result: ResultFacts,
    age: dt.timedelta,
) -> str:
    return (
        f"{_item(result_item)}{_covers(result_item, ordered)} from {result.issuer.name}, "
        f"reported {local_time(result.report_time)}, {_ago(age)}"
    )


def recognizable(
    result_item: CatalogItem,
    ordered: CatalogItem,
    result: ResultFacts,
    age: dt.timedelta,
    valid_until: dt.datetime,
) -> str:
    """A result the doctor may adopt instead of ordering again."""
    return f"{_reported(result_item, ordered, result, age)}; valid until {local_time(valid_until)}"


def expired(
    result_item: CatalogItem,
    ordered: CatalogItem,
    result: ResultFacts,
    age: dt.timedelta,
    valid_until: dt.datetime,
    window: dt.timedelta,
) -> str:
    """The newest final result is older than the item's validity window."""
    return (
        f"{_reported(result_item, ordered, result, age)}; expired {local_time(valid_until)} "
        f"(valid for {_window(window)})"
    )


def issuer_without_mark(
    result_item: CatalogItem, ordered: CatalogItem, result: ResultFacts, age: dt.timedelta
) -> str:
    """The issuer held no recognition qualification for the item when it reported."""
    return (
        f"{_reported(result_item, ordered, result, age)}; {result.issuer.name} held no "
        f"recognition qualification (HR) for {result_item.name_zh} at that time"
    )


def issuer_out_of_scope(
    result_item: CatalogItem,
    ordered: CatalogItem,
    result: ResultFacts,
    age: dt.timedelta,
    asker: InstitutionFacts,
    scopes: frozenset[Scope],
) -> str:
    """The issuer's qualification does not reach the asking institution."""
    held = "/".join(sorted(scope.value for scope in scopes))
    return (
        f"{_reported(result_item, ordered, result, age)}; its {held} recognition qualification "
        f"does not cover {asker.name}"
    )


def issuer_level_too_low(
    result_item: CatalogItem,
    ordered: CatalogItem,
    result: ResultFacts,
    age: dt.timedelta,
    asker: InstitutionFacts,
) -> str:
    """A higher-level asker need not accept a lower-level issuer's result."""
    return (
        f"{_reported(result_item, ordered, result, age)}; results of a "
        f"{_LEVEL_NAMES[result.issuer.level]} institution are not recognized by "
        f"{asker.name} ({_LEVEL_NAMES[asker.level]})"
    )


def preliminary_only(
    result_item: CatalogItem, ordered: CatalogItem, result: ResultFacts, age: dt.timedelta
) -> str:
    """Only a result without its final report exists."""
    return f"{_reported(result_item, ordered, result, age)}; no final report yet"


def held_for_review(
    result_item: CatalogItem, ordered: CatalogItem, result: ResultFacts, age: dt.timedelta
) -> str:
    """The only result is a study whose declared item contradicts its images."""
    return (
        f"{_reported(result_item, ordered, result, age)}; the item declared for this study "
        "contradicts its images, so it is not recognized until an administrator resolves it"
    )


def no_result(ordered: CatalogItem) -> str:
    """Nothing on record that could stand for the ordered item."""
    return f"No result of {_item(ordered)} on record for this patient"


def not_covered(code: str, catalog_version: str) -> str:
    """A code that names something real, but not a recognized item."""
    return f"{code} is not a mutually recognized item (catalog {catalog_version})"


def unknown_code(code: str) -> str:
    """A code that neither the catalog, LOINC nor the institution's code table knows."""
    return f"{code} is not a known item code, LOINC code or local order code of this institution"
