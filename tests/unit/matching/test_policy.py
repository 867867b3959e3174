"""The region policy file: loading it, and the rules reading it. Expected values by hand."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mutualrec.matching.catalog import ItemCategory, packaged_catalog
from mutualrec.matching.facts import (
    Finding,
    InstitutionFacts,
    InstitutionLevel,
    ResultFacts,
    Verdict,
)
from mutualrec.matching.policy import (
    DEFAULT_POLICY,
    LevelRule,
    Policy,
    PolicyError,
    Suspension,
    WindowAnchor,
    load_policy,
)
from mutualrec.matching.rules import check_item
from tests.unit.matching.builders import ALL_MARKS, ASKER, ISSUER, SHANGHAI, result, shanghai

CATALOG = packaged_catalog()
COLLECTION_POLICY = """
version = "2027.1"

[categories.lab]
window_anchor = "collection"
level_rule = "same-level-only"

[[suspensions]]
institution = "CQ-0001"
item = "lab-k"
from = 2026-10-01
until = 2027-01-01T00:00:00+08:00
reason = "failed external quality assessment 2026Q3"
"""


def _find(
    code: str, results: list[ResultFacts], received: dt.datetime, policy: Policy, **kw: object
) -> Finding:
    item = CATALOG.get(code)
    assert item is not None
    asker = kw.get("asker", ASKER)
    assert isinstance(asker, InstitutionFacts)
    return check_item(item, CATALOG, results, asker, ALL_MARKS, received, policy)


def test_the_packaged_policy_is_todays_rules() -> None:
    assert DEFAULT_POLICY.version == "default"
    assert dict(DEFAULT_POLICY.anchors) == {
        ItemCategory.LAB: WindowAnchor.REPORT,
        ItemCategory.IMAGING: WindowAnchor.EXAM,
    }
    assert dict(DEFAULT_POLICY.level_rules) == {
        ItemCategory.LAB: LevelRule.LOWER_ACCEPTS_HIGHER,
        ItemCategory.IMAGING: LevelRule.LOWER_ACCEPTS_HIGHER,
    }
    assert DEFAULT_POLICY.suspensions == ()
    assert dataclasses.replace(DEFAULT_POLICY, sha256="", version="default") == Policy()


def test_a_policy_file_is_read_with_defaults_for_what_it_leaves_out() -> None:
    policy = load_policy(COLLECTION_POLICY)

    assert policy.version == "2027.1"
    assert policy.anchor(ItemCategory.LAB) is WindowAnchor.COLLECTION
    assert policy.level_rule(ItemCategory.LAB) is LevelRule.SAME_LEVEL_ONLY
    assert policy.anchor(ItemCategory.IMAGING) is WindowAnchor.EXAM
    assert policy.level_rule(ItemCategory.IMAGING) is LevelRule.LOWER_ACCEPTS_HIGHER
    assert policy.own_institution_counts is True
    assert policy.suspensions == (
        Suspension(
            "CQ-0001",
            "LAB-K",
            None,
            shanghai(2026, 10, 1),
            shanghai(2027, 1, 1),
            "failed external quality assessment 2026Q3",
        ),
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("version = ", [("file", "NOT_TOML")]),
        ("colour = 'red'", [("colour", "UNKNOWN_KEY"), ("version", "MISSING_FIELD")]),
        (
            "version = '1'\n[categories.imaging]\nwindow_anchor = 'report'\n",
            [("categories.imaging.window_anchor", "BAD_VALUE")],
        ),
        (
            "version = '1'\n[categories.lab]\nlevel_rule = 'anyone'\nwindow = 'x'\n",
            [("categories.lab.window", "UNKNOWN_KEY"), ("categories.lab.level_rule", "BAD_VALUE")],
        ),
        (
            "version = '1'\n[[suspensions]]\ninstitution = 'H1'\nfrom = 2026-01-01\n"
            "until = 2025-01-01\n",
            [
                ("suspensions[0]", "ITEM_OR_CATEGORY"),
                ("suspensions[0].until", "BAD_PERIOD"),
                ("suspensions[0].reason", "MISSING_FIELD"),
            ],
        ),
        (
            "version = '1'\n[[suspensions]]\ninstitution = 'H1'\ncategory = 'lab'\n"
            "from = 'soon'\nreason = 'EQA'\n",
            [("suspensions[0].from", "BAD_DATETIME")],
        ),
        (
            "version = '1'\n[statistics]\nown_institution_counts = 'no'\nsplit = true\n",
            [
                ("statistics.split", "UNKNOWN_KEY"),
                ("statistics.own_institution_counts", "BAD_VALUE"),
            ],
        ),
    ],
)
def test_a_bad_policy_file_lists_every_problem(text: str, expected: list[tuple[str, str]]) -> None:
    with pytest.raises(PolicyError) as refused:
        load_policy(text)

    assert [(v.field, v.reason) for v in refused.value.violations] == expected


def _lab(report: dt.datetime, collected: dt.datetime | None) -> ResultFacts:
    return dataclasses.replace(result(report, item_code="LAB-K"), collected_at=collected)


def test_a_collection_anchored_window_runs_from_the_specimen() -> None:
    policy = load_policy(COLLECTION_POLICY.split("[[suspensions]]")[0])
    potassium = _lab(shanghai(2026, 11, 10, 9, 0), shanghai(2026, 11, 3, 8, 0))

    by_report = _find("LAB-K", [potassium], shanghai(2026, 11, 12), DEFAULT_POLICY)
    by_collection = _find("LAB-K", [potassium], shanghai(2026, 11, 12), policy)

    assert by_report.verdict is Verdict.RECOGNIZABLE
    assert by_collection.verdict is Verdict.EXPIRED
    assert by_collection.reason.en == (
        "钾 (Potassium) from 重庆市第一人民医院, reported 2026-11-10 09:00, 1 day ago; "
        "expired 2026-11-10 08:00 (valid for 7 days from specimen collection 2026-11-03 08:00)"
    )
    assert by_collection.reason.zh == (
        "钾，重庆市第一人民医院，报告于2026-11-10 09:00（1天前）；"
        "已于2026-11-10 08:00过期（有效期7天，自2026-11-03 08:00采样起算）"
    )


def test_a_suspended_qualification_refuses_results_reported_during_it() -> None:
    policy = load_policy(COLLECTION_POLICY.replace("collection", "report"))
    before = _lab(shanghai(2026, 9, 30, 23, 59), None)
    during = _lab(shanghai(2026, 12, 31, 23, 59), None)
    after = _lab(shanghai(2027, 1, 1), None)

    assert _find("LAB-K", [before], shanghai(2026, 10, 2), policy).verdict is (Verdict.RECOGNIZABLE)
    suspended = _find("LAB-K", [during], shanghai(2027, 1, 1, 8), policy)
    assert suspended.verdict is Verdict.ISSUER_NOT_QUALIFIED
    assert suspended.reason.en == (
        "钾 (Potassium) from 重庆市第一人民医院, reported 2026-12-31 23:59, 8 hours ago; "
        "重庆市第一人民医院's recognition qualification for 钾 is suspended from 2026-10-01 00:00 "
        "(failed external quality assessment 2026Q3)"
    )
    assert _find("LAB-K", [after], shanghai(2027, 1, 2), policy).verdict is Verdict.RECOGNIZABLE
    # Another item of the same institution is not suspended.
    sodium = dataclasses.replace(during, item_code="LAB-NA")
    assert _find("LAB-NA", [sodium], shanghai(2027, 1, 1, 8), policy).verdict is (
        Verdict.RECOGNIZABLE
    )


def test_a_level_rule_refusal_says_so_before_a_missing_mark() -> None:
    clinic = InstitutionFacts(
        "CQ-0100", "社区卫生服务中心", InstitutionLevel.PRIMARY, "重庆市", "川渝"
    )
    chest = result(shanghai(2026, 11, 1, 8, 30), issuer=clinic)  # no mark: ALL_MARKS are ISSUER's

    found = _find("IMG-CT-CHEST", [chest], shanghai(2026, 11, 2, 8, 30), DEFAULT_POLICY)

    assert found.verdict is Verdict.ISSUER_NOT_QUALIFIED
    assert found.reason.zh.endswith(
        "按等级规则（lower-accepts-higher），重庆医科大学附属第二医院（三级）不互认一级机构的结果"
    )


def test_same_level_only_refuses_a_higher_issuer() -> None:
    policy = load_policy(COLLECTION_POLICY.split("[[suspensions]]")[0])
    secondary = dataclasses.replace(ASKER, level=InstitutionLevel.SECONDARY)

    found = check_item(
        CATALOG.get("LAB-K"),  # type: ignore[arg-type]
        CATALOG,
        [_lab(shanghai(2026, 11, 1, 8), None)],
        secondary,
        ALL_MARKS,
        shanghai(2026, 11, 2, 8),
        policy,
    )

    assert found.verdict is Verdict.ISSUER_NOT_QUALIFIED
    assert found.reason.en.endswith(
        "by the level rule (same-level-only) results of a tertiary institution are not "
        "recognized by 重庆医科大学附属第二医院 (secondary)"
    )


@given(
    report_offset=st.integers(min_value=0, max_value=20 * 24 * 3600),
    collection_lead=st.integers(min_value=0, max_value=10 * 24 * 3600),
    check_offset=st.integers(min_value=0, max_value=30 * 24 * 3600),
    anchor=st.sampled_from([WindowAnchor.REPORT, WindowAnchor.COLLECTION]),
)
def test_lab_windows_run_from_the_anchor_the_policy_names(
    report_offset: int, collection_lead: int, check_offset: int, anchor: WindowAnchor
) -> None:
    origin = dt.datetime(2026, 1, 1, tzinfo=SHANGHAI)
    report = origin + dt.timedelta(seconds=report_offset)
    collected = report - dt.timedelta(seconds=collection_lead)
    received = report + dt.timedelta(seconds=check_offset)
    policy = Policy(anchors={ItemCategory.LAB: anchor, ItemCategory.IMAGING: WindowAnchor.EXAM})

    found = _find("LAB-K", [_lab(report, collected)], received, policy)

    start = collected if anchor is WindowAnchor.COLLECTION else report
    expected = received <= start + dt.timedelta(days=7)  # LAB-K: 7 days, from the catalog file
    assert found.verdict is (Verdict.RECOGNIZABLE if expected else Verdict.EXPIRED)
    assert found.valid_until == start + dt.timedelta(days=7)


@given(
    report_offset=st.integers(min_value=0, max_value=200 * 24 * 3600),
    check_offset=st.integers(min_value=0, max_value=200 * 24 * 3600),
    anchor=st.sampled_from(list(WindowAnchor)),
)
def test_a_study_always_runs_from_its_exam_time(
    report_offset: int, check_offset: int, anchor: WindowAnchor
) -> None:
    exam = dt.datetime(2026, 1, 1, tzinfo=SHANGHAI) + dt.timedelta(seconds=report_offset)
    received = exam + dt.timedelta(seconds=check_offset)
    # Whatever the lab anchor, and even a collection time on a study row, a study's window runs
    # from the exam: imaging has no other anchor.
    study = dataclasses.replace(result(exam), collected_at=exam - dt.timedelta(days=30))
    policy = Policy(anchors={ItemCategory.LAB: anchor, ItemCategory.IMAGING: WindowAnchor.EXAM})

    found = _find("IMG-CT-CHEST", [study], received, policy)

    assert found.valid_until == exam + dt.timedelta(days=90)  # CT chest: 90 days


@given(
    issuer_level=st.sampled_from(list(InstitutionLevel)),
    asker_level=st.sampled_from(list(InstitutionLevel)),
    lab_rule=st.sampled_from(list(LevelRule)),
    imaging_rule=st.sampled_from(list(LevelRule)),
)
def test_level_rules_apply_per_category(
    issuer_level: InstitutionLevel,
    asker_level: InstitutionLevel,
    lab_rule: LevelRule,
    imaging_rule: LevelRule,
) -> None:
    issuer = dataclasses.replace(ISSUER, level=issuer_level)
    asker = dataclasses.replace(ASKER, level=asker_level)
    policy = Policy(level_rules={ItemCategory.LAB: lab_rule, ItemCategory.IMAGING: imaging_rule})
    received = shanghai(2026, 11, 2)
    allowed = {
        LevelRule.SAME_LEVEL_ONLY: issuer_level == asker_level,
        LevelRule.LOWER_ACCEPTS_HIGHER: issuer_level >= asker_level,
        LevelRule.HIGHER_ACCEPTS_LOWER: True,
    }

    for code, rule in (("LAB-K", lab_rule), ("IMG-CT-CHEST", imaging_rule)):
        one = dataclasses.replace(result(shanghai(2026, 11, 1), item_code=code), issuer=issuer)
        found = _find(code, [one], received, policy, asker=asker)
        assert found.verdict is (
            Verdict.RECOGNIZABLE if allowed[rule] else Verdict.ISSUER_NOT_QUALIFIED
        )
