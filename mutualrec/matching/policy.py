"""A region's recognition rules as data: a versioned TOML file an administrator loads.

The national rules leave choices to each region: where an item's validity window starts, which
institution levels recognize which, and whose qualification is suspended after a failed external
quality assessment. :data:`DEFAULT_POLICY` (the packaged file) reproduces the behaviour the
service had before these were data.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from mutualrec.localtime import LOCAL_ZONE
from mutualrec.matching.catalog import ItemCategory
from mutualrec.matching.facts import InstitutionLevel
from mutualrec.violations import Rejected, Violation


class WindowAnchor(enum.Enum):
    """The moment an item's validity window runs from."""

    REPORT = "report"  # the report's issued time
    COLLECTION = "collection"  # when the specimen was collected (FHIR effective time)
    EXAM = "exam"  # when the study was made (DICOM study date and time)


# An imaging study carries no report time in DICOM; a lab result is never an exam.
_ANCHORS = {
    ItemCategory.LAB: (WindowAnchor.REPORT, WindowAnchor.COLLECTION),
    ItemCategory.IMAGING: (WindowAnchor.EXAM,),
}


class LevelRule(enum.Enum):
    """Which institution levels recognize each other's results."""

    SAME_LEVEL_ONLY = "same-level-only"
    # Lower levels must accept higher ones' results; the same level is recognized too.
    LOWER_ACCEPTS_HIGHER = "lower-accepts-higher"
    # Also higher levels accept lower ones' results: every level recognizes every other.
    HIGHER_ACCEPTS_LOWER = "higher-accepts-lower"

    def allows(self, issuer: InstitutionLevel, asker: InstitutionLevel) -> bool:
        """Whether ``asker`` recognizes a result ``issuer`` reported."""
        if self is LevelRule.SAME_LEVEL_ONLY:
            return issuer == asker
        if self is LevelRule.LOWER_ACCEPTS_HIGHER:
            return issuer >= asker
        return True


@dataclass(frozen=True, slots=True)
class Suspension:
    """An institution's qualification for one item or a whole category, suspended in
    [start, end) (``end`` None: until further notice): its results reported then are not
    recognized."""

    institution_code: str
    item_code: str | None
    category: ItemCategory | None
    start: dt.datetime
    end: dt.datetime | None
    reason: str

    def covers(self, institution_code: str, item_code: str, category: ItemCategory) -> bool:
        """Whether the suspension is of this institution's qualification for the item."""
        return self.institution_code == institution_code and (
            self.item_code == item_code if self.item_code is not None else self.category is category
        )

    def during(self, moment: dt.datetime) -> bool:
        """Whether ``moment`` falls in the suspension."""
        return self.start <= moment and (self.end is None or moment < self.end)


def _every(value: Any) -> dict[ItemCategory, Any]:
    return {category: value for category in ItemCategory}


@dataclass(frozen=True, slots=True)
class Policy:
    """The regional rules a check applies. The defaults are the packaged policy's."""

    version: str = "default"
    anchors: Mapping[ItemCategory, WindowAnchor] = field(
        default_factory=lambda: {
            ItemCategory.LAB: WindowAnchor.REPORT,
            ItemCategory.IMAGING: WindowAnchor.EXAM,
        }
    )
    level_rules: Mapping[ItemCategory, LevelRule] = field(
        default_factory=lambda: _every(LevelRule.LOWER_ACCEPTS_HIGHER)
    )
    suspensions: tuple[Suspension, ...] = ()
    sha256: str = ""
    # Whether statistics count a hospital's reuse of its own earlier results as recognition
    # (they always report it apart as well).
    own_institution_counts: bool = True

    def anchor(self, category: ItemCategory) -> WindowAnchor:
        """Where windows of the category's items start."""
        return self.anchors[category]

    def level_rule(self, category: ItemCategory) -> LevelRule:
        """Which levels recognize each other for the category's items."""
        return self.level_rules[category]


class PolicyError(Rejected):
    """A policy file that cannot be loaded; ``violations`` lists every problem by key."""


_TOP_KEYS = {"version", "categories", "suspensions", "statistics"}
_STATISTICS_KEYS = {"own_institution_counts"}
_CATEGORY_KEYS = {"window_anchor", "level_rule"}
_SUSPENSION_KEYS = {"institution", "item", "category", "from", "until", "reason"}


def _moment(value: Any, where: str, problems: list[Violation]) -> dt.datetime | None:
    """A TOML date or date-time; without an offset it is the region's clock (Asia/Shanghai)."""
    if isinstance(value, dt.datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=LOCAL_ZONE)
    if isinstance(value, dt.date):
        return dt.datetime.combine(value, dt.time(), LOCAL_ZONE)
    problems.append(
        Violation(where, "a TOML date (2026-10-01) or date-time is expected", "BAD_DATETIME")
    )
    return None


def _unknown_keys(table: Mapping[str, Any], known: set[str], where: str) -> list[Violation]:
    return [
        Violation(
            f"{where}{key}", f"unknown key (known: {', '.join(sorted(known))})", "UNKNOWN_KEY"
        )
        for key in sorted(set(table) - known)
    ]


def _enum(kind: type[enum.Enum], value: Any, where: str, problems: list[Violation]) -> Any:
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(member.value for member in kind)
        problems.append(Violation(where, f"{value!r} is not one of {allowed}", "BAD_VALUE"))
        return None


def _categories(raw: Any, problems: list[Violation]) -> tuple[dict[Any, Any], dict[Any, Any]]:
    defaults = Policy()
    anchors: dict[ItemCategory, WindowAnchor] = dict(defaults.anchors)
    levels: dict[ItemCategory, LevelRule] = dict(defaults.level_rules)
    if not isinstance(raw, dict):
        problems.append(Violation("categories", "a table of categories", "BAD_VALUE"))
        return anchors, levels
    problems += _unknown_keys(raw, {c.value for c in ItemCategory}, "categories.")
    for category in ItemCategory:
        table = raw.get(category.value, {})
        where = f"categories.{category.value}."
        if not isinstance(table, dict):
            problems.append(Violation(where.rstrip("."), "a table", "BAD_VALUE"))
            continue
        problems += _unknown_keys(table, _CATEGORY_KEYS, where)
        if "window_anchor" in table:
            anchor = _enum(WindowAnchor, table["window_anchor"], where + "window_anchor", problems)
            if anchor is not None and anchor not in _ANCHORS[category]:
                allowed = ", ".join(a.value for a in _ANCHORS[category])
                problems.append(
                    Violation(
                        where + "window_anchor",
                        f"{category.value} windows start at {allowed}",
                        "BAD_VALUE",
                    )
                )
            elif anchor is not None:
                anchors[category] = anchor
        if "level_rule" in table:
            rule = _enum(LevelRule, table["level_rule"], where + "level_rule", problems)
            if rule is not None:
                levels[category] = rule
    return anchors, levels


def _suspension(raw: Any, where: str, problems: list[Violation]) -> Suspension | None:
    if not isinstance(raw, dict):
        problems.append(Violation(where, "a table", "BAD_VALUE"))
        return None
    before = len(problems)
    problems += _unknown_keys(raw, _SUSPENSION_KEYS, where + ".")
    institution = raw.get("institution")
    if not isinstance(institution, str) or not institution.strip():
        problems.append(Violation(where + ".institution", "an institution code", "MISSING_FIELD"))
    item, category = raw.get("item"), raw.get("category")
    if (item is None) == (category is None):
        problems.append(
            Violation(where, "names exactly one of item and category", "ITEM_OR_CATEGORY")
        )
    elif item is not None and not isinstance(item, str):
        problems.append(Violation(where + ".item", "a catalog item code", "BAD_VALUE"))
    parsed_category = (
        _enum(ItemCategory, category, where + ".category", problems) if category else None
    )
    start = _moment(raw.get("from"), where + ".from", problems)
    end = _moment(raw["until"], where + ".until", problems) if "until" in raw else None
    if start is not None and end is not None and end <= start:
        problems.append(Violation(where + ".until", "ends after it starts", "BAD_PERIOD"))
    reason = raw.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        problems.append(
            Violation(
                where + ".reason",
                "why (e.g. failed external quality assessment 2026Q3)",
                "MISSING_FIELD",
            )
        )
    if len(problems) > before or start is None:
        return None
    assert isinstance(institution, str)
    assert isinstance(reason, str)
    return Suspension(
        institution.strip(),
        item.strip().upper() if isinstance(item, str) else None,
        parsed_category,
        start,
        end,
        reason.strip()[:200],
    )


def load_policy(text: str) -> Policy:
    """Parse and validate a policy file; raises :class:`PolicyError` listing every problem.

    Categories the file leaves out keep the default rules.
    """
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError.one("the policy file is not TOML", "file", str(exc), "NOT_TOML") from None
    problems = _unknown_keys(raw, _TOP_KEYS, "")
    version = raw.get("version")
    if not isinstance(version, str) or not version.strip():
        problems.append(Violation("version", "a version such as 2026.1", "MISSING_FIELD"))
    anchors, levels = _categories(raw.get("categories", {}), problems)
    statistics = raw.get("statistics", {})
    own_counts = True
    if not isinstance(statistics, dict):
        problems.append(Violation("statistics", "a table", "BAD_VALUE"))
    else:
        problems += _unknown_keys(statistics, _STATISTICS_KEYS, "statistics.")
        own_counts = statistics.get("own_institution_counts", True)
        if not isinstance(own_counts, bool):
            problems.append(
                Violation("statistics.own_institution_counts", "true or false", "BAD_VALUE")
            )
    suspensions_raw = raw.get("suspensions", [])
    suspensions: list[Suspension] = []
    if not isinstance(suspensions_raw, list):
        problems.append(Violation("suspensions", "an array of tables", "BAD_VALUE"))
    else:
        for index, entry in enumerate(suspensions_raw):
            suspension = _suspension(entry, f"suspensions[{index}]", problems)
            if suspension is not None:
                suspensions.append(suspension)
    if problems:
        raise PolicyError(f"the policy file has {len(problems)} problem(s)", problems)
    assert isinstance(version, str)
    return Policy(
        version=version.strip(),
        anchors=anchors,
        level_rules=levels,
        suspensions=tuple(suspensions),
        sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        own_institution_counts=bool(own_counts),
    )


def packaged_policy_text() -> str:
    """The packaged policy file: today's rules."""
    return (resources.files("mutualrec.matching") / "data" / "region_policy.toml").read_text(
        encoding="utf-8"
    )


DEFAULT_POLICY = load_policy(packaged_policy_text())
