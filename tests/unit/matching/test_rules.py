"""The recognition rules: windows, versions, qualifications, scope and level, satisfies, zones.

Expected values are written by hand from the rules in DESIGN.md and the catalog file, never
computed with the code under test.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mutualrec.matching.catalog import Catalog, ItemCategory, load_catalog, packaged_catalog
from mutualrec.matching.codes import resolve_ordered_code
from mutualrec.matching.facts import (
    Finding,
    InstitutionFacts,
    InstitutionLevel,
    Qualification,
    ResultFacts,
    ResultStatus,
    Scope,
    Verdict,
)
from mutualrec.matching.policy import LevelRule, Policy
from mutualrec.matching.rules import check_item, unresolved_finding
from tests.unit.matching.builders import (
    ALL_MARKS,
    ASKER,
    SHANGHAI,
    mark,
    result,
    shanghai,
)

CATALOG = packaged_catalog()
ONE_SECOND = dt.timedelta(seconds=1)
UTC_MINUS_5 = dt.timezone(dt.timedelta(hours=-5))
ZONES = st.sampled_from([dt.UTC, SHANGHAI, UTC_MINUS_5])
# Windows as the catalog file states them, copied by hand.
WINDOWS = {
    "LAB-CBC": dt.timedelta(days=3),
    "LAB-K": dt.timedelta(days=7),
    "LAB-GLU": dt.timedelta(days=30),
    "LAB-HBA1C": dt.timedelta(days=60),
    "IMG-CT-CHEST": dt.timedelta(days=90),
    "IMG-MR-KNEE": dt.timedelta(days=180),
}
# Which result also satisfies which other order, copied by hand from the catalog file.
ALSO_SATISFIES = {
    ("IMG-CT-CHEST-C", "IMG-CT-CHEST"),
    ("IMG-CT-HEAD-C", "IMG-CT-HEAD"),
    ("IMG-CT-ABD-C", "IMG-CT-ABD"),
    ("IMG-MR-BRAIN-C", "IMG-MR-BRAIN"),
    ("IMG-DX-CHEST-2V", "IMG-DX-CHEST-PA"),
}
FINAL = {ResultStatus.FINAL, ResultStatus.AMENDED, ResultStatus.CORRECTED, ResultStatus.APPENDED}
PENDING = {ResultStatus.REGISTERED, ResultStatus.SPECIMEN_IN_PROCESS, ResultStatus.PRELIMINARY}

report_times = st.datetimes(
    min_value=dt.datetime(2001, 1, 1),
    max_value=dt.datetime(2090, 1, 1),
    timezones=ZONES,
).map(lambda value: value.replace(microsecond=0))


def find(
    code: str,
    results: Sequence[ResultFacts],
    received_at: dt.datetime,
    *,
    asker: InstitutionFacts = ASKER,
    qualifications: Sequence[Qualification] = ALL_MARKS,
    policy: Policy | None = None,
    price_list: dict[str, int] | None = None,
    catalog: Catalog = CATALOG,
) -> Finding:
    item = catalog.get(code)
    assert item is not None
    return check_item(
        item,
        catalog,
        results,
        asker,
        qualifications,
        received_at,
        policy or Policy(),
        price_list,
    )


# --- examples with hand-written expected values -------------------------------------------


def test_recognizable_example() -> None:
    chest = result(shanghai(2026, 11, 1, 8, 30))
    found = find("IMG-CT-CHEST", [chest], shanghai(2026, 11, 21, 10, 0))
    assert found.verdict is Verdict.RECOGNIZABLE
    assert found.item is CATALOG.get("IMG-CT-CHEST")
    assert found.result is chest
    assert found.valid_until == shanghai(2027, 1, 30, 8, 30)
    assert found.age == dt.timedelta(days=20, hours=1, minutes=30)
    assert found.expired_since is None
    assert found.saving_fen == 20000  # 200 yuan
    assert found.reason.en == (
        "胸部CT平扫 (CT chest without contrast) from 重庆市第一人民医院, "
        "reported 2026-11-01 08:30, 20 days ago; valid until 2027-01-30 08:30"
    )


def test_reason_times_are_beijing_time_whatever_zone_the_facts_use() -> None:
    chest = result(dt.datetime(2026, 11, 1, 0, 30, tzinfo=dt.UTC))
    found = find("IMG-CT-CHEST", [chest], dt.datetime(2026, 11, 1, 3, 30, tzinfo=dt.UTC))
    assert found.reason.en == (
        "胸部CT平扫 (CT chest without contrast) from 重庆市第一人民医院, "
        "reported 2026-11-01 08:30, 3 hours ago; valid until 2027-01-30 08:30"
    )


def test_saving_uses_the_askers_price_when_it_has_one() -> None:
    chest = result(shanghai(2026, 11, 1, 8, 30))
    received = shanghai(2026, 11, 2)
    own_price = {"IMG-CT-CHEST": 33050, "LAB-K": 900}  # fen
    assert find("IMG-CT-CHEST", [chest], received, price_list=own_price).saving_fen == 33050
    # Not on the asker's list: the catalog's reference price, 200 yuan.
    assert find("IMG-CT-CHEST", [chest], received, price_list={"LAB-K": 900}).saving_fen == 20000


def test_expired_example() -> None:
    chest = result(shanghai(2026, 1, 1, 8, 0))
    found = find("IMG-CT-CHEST", [chest], shanghai(2026, 6, 1, 8, 0))
    assert found.verdict is Verdict.EXPIRED
    assert found.result is chest
    assert found.expired_since == shanghai(2026, 4, 1, 8, 0)
    assert found.valid_until == shanghai(2026, 4, 1, 8, 0)
    assert found.age == dt.timedelta(days=151)
    assert found.saving_fen == 0
    assert found.reason.en == (
        "胸部CT平扫 (CT chest without contrast) from 重庆市第一人民医院, "
        "reported 2026-01-01 08:00, 151 days ago; expired 2026-04-01 08:00 (valid for 90 days)"
    )


def test_expired_since_is_the_latest_expiry() -> None:
    older = result(shanghai(2025, 1, 1, 8, 0), ref="R1")
    newer = result(shanghai(2025, 3, 1, 8, 0), ref="R2")
    found = find("IMG-CT-CHEST", [newer, older], shanghai(2026, 1, 1))
    assert found.verdict is Verdict.EXPIRED
    assert found.result is newer
    assert found.expired_since == shanghai(2025, 5, 30, 8, 0)


def test_no_result() -> None:
    found = find("IMG-CT-CHEST", [], shanghai(2026, 1, 1))
    assert found.verdict is Verdict.NO_RESULT
    assert (found.result, found.valid_until, found.age, found.expired_since) == (
        None,
        None,
        None,
        None,
    )
    assert found.saving_fen == 0
    assert found.reason.en == (
        "No result of 胸部CT平扫 (CT chest without contrast) on record for this patient"
    )


def test_a_result_of_another_item_is_no_result() -> None:
    head = result(shanghai(2026, 1, 1), item_code="IMG-CT-HEAD")
    assert find("IMG-CT-CHEST", [head], shanghai(2026, 1, 2)).verdict is Verdict.NO_RESULT


def test_preliminary_only_example() -> None:
    pending = result(shanghai(2026, 11, 20, 22, 0), status=ResultStatus.PRELIMINARY)
    found = find("IMG-CT-CHEST", [pending], shanghai(2026, 11, 21, 10, 0))
    assert found.verdict is Verdict.PRELIMINARY_ONLY
    assert found.result is pending
    assert found.valid_until is None
    assert found.age == dt.timedelta(hours=12)
    assert found.saving_fen == 0
    assert found.reason.en == (
        "胸部CT平扫 (CT chest without contrast) from 重庆市第一人民医院, "
        "reported 2026-11-20 22:00, 12 hours ago; no final report yet"
    )


@pytest.mark.parametrize("status", [ResultStatus.CANCELLED, ResultStatus.UNKNOWN])
def test_cancelled_and_unknown_never_count(status: ResultStatus) -> None:
    found = find(
        "IMG-CT-CHEST", [result(shanghai(2026, 1, 1), status=status)], shanghai(2026, 1, 2)
    )
    assert found.verdict is Verdict.NO_RESULT


def test_issuer_without_a_mark() -> None:
    chest = result(shanghai(2026, 11, 1, 8, 30))
    lab_only = (mark(category=ItemCategory.LAB),)
    found = find("IMG-CT-CHEST", [chest], shanghai(2026, 11, 21, 10, 0), qualifications=lab_only)
    assert found.verdict is Verdict.ISSUER_NOT_QUALIFIED
    assert found.result is chest
    assert found.valid_until == shanghai(2027, 1, 30, 8, 30)
    assert found.saving_fen == 0
    assert found.reason.en == (
        "胸部CT平扫 (CT chest without contrast) from 重庆市第一人民医院, "
        "reported 2026-11-01 08:30, 20 days ago; 重庆市第一人民医院 held no recognition "
        "qualification (HR) for 胸部CT平扫 at that time"
    )


def test_issuer_out_of_scope() -> None:
    chengdu = InstitutionFacts(
        "SC-0001", "四川大学华西医院", InstitutionLevel.TERTIARY, "成都市", "川渝"
    )
    chest = result(shanghai(2026, 11, 1, 8, 30), issuer=chengdu)
    city_mark = (mark(chengdu, item_code="IMG-CT-CHEST", scope=Scope.CITY),)
    found = find("IMG-CT-CHEST", [chest], shanghai(2026, 11, 21, 10, 0), qualifications=city_mark)
    assert found.verdict is Verdict.ISSUER_NOT_QUALIFIED
    assert found.reason.en == (
        "胸部CT平扫 (CT chest without contrast) from 四川大学华西医院, "
        "reported 2026-11-01 08:30, 20 days ago; its city recognition qualification does not "
        "cover 重庆医科大学附属第二医院"
    )


def test_issuer_below_the_askers_level() -> None:
    clinic = InstitutionFacts(
        "CQ-0100", "渝中区社区卫生服务中心", InstitutionLevel.PRIMARY, "重庆市", "川渝"
    )
    chest = result(shanghai(2026, 11, 1, 8, 30), issuer=clinic)
    marks = (mark(clinic),)
    received = shanghai(2026, 11, 21, 10, 0)
    found = find("IMG-CT-CHEST", [chest], received, qualifications=marks)
    assert found.verdict is Verdict.ISSUER_NOT_QUALIFIED
    assert found.reason.en == (
        "胸部CT平扫 (CT chest without contrast) from 渝中区社区卫生服务中心, "
        "reported 2026-11-01 08:30, 20 days ago; by the level rule (lower-accepts-higher) "
        "results of a primary institution are not recognized by 重庆医科大学附属第二医院 "
        "(tertiary)"
    )
    lenient = Policy(level_rules=dict.fromkeys(ItemCategory, LevelRule.HIGHER_ACCEPTS_LOWER))
    assert find(
        "IMG-CT-CHEST", [chest], received, qualifications=marks, policy=lenient
    ).verdict is (Verdict.RECOGNIZABLE)


def test_a_valid_result_without_mark_outranks_an_expired_qualified_one() -> None:
    stranger = InstitutionFacts(
        "CQ-0999", "某民营医院", InstitutionLevel.TERTIARY, "重庆市", "川渝"
    )
    fresh = result(shanghai(2026, 11, 1), ref="FRESH", issuer=stranger)
    old = result(shanghai(2025, 1, 1), ref="OLD")
    found = find("IMG-CT-CHEST", [old, fresh], shanghai(2026, 11, 2))
    assert found.verdict is Verdict.ISSUER_NOT_QUALIFIED
    assert found.result is fresh


def test_a_newer_preliminary_after_an_expired_final_is_the_line_named() -> None:
    old = result(shanghai(2025, 1, 1), ref="OLD")
    pending = result(shanghai(2026, 11, 1), ref="NEW", status=ResultStatus.PRELIMINARY)
    found = find("IMG-CT-CHEST", [pending, old], shanghai(2026, 11, 2))
    assert found.verdict is Verdict.PRELIMINARY_ONLY
    assert found.result is pending
    assert found.reason.en == (
        "胸部CT平扫 (CT chest without contrast) from 重庆市第一人民医院, reported 2026-11-01 "
        "00:00, 1 day ago; no final report yet; the last final result, reported 2025-01-01 "
        "00:00, expired 2025-04-01 00:00"
    )
    assert found.reason.zh == (
        "胸部CT平扫，重庆市第一人民医院，报告于2026-11-01 00:00（1天前）；尚无正式报告；"
        "上一次正式结果报告于2025-01-01 00:00，已于2025-04-01 00:00过期"
    )


def test_an_expired_final_outranks_an_older_preliminary() -> None:
    pending = result(shanghai(2025, 1, 1), ref="OLD", status=ResultStatus.PRELIMINARY)
    final = result(shanghai(2025, 2, 1), ref="NEW")
    found = find("IMG-CT-CHEST", [pending, final], shanghai(2026, 11, 2))
    assert found.verdict is Verdict.EXPIRED
    assert found.result is final


def test_the_newest_qualified_result_is_cited() -> None:
    stranger = InstitutionFacts(
        "CQ-0999", "某民营医院", InstitutionLevel.TERTIARY, "重庆市", "川渝"
    )
    qualified_old = result(shanghai(2026, 10, 1), ref="A")
    qualified_new = result(shanghai(2026, 10, 15), ref="B")
    unqualified_newest = result(shanghai(2026, 10, 20), ref="C", issuer=stranger)
    found = find(
        "IMG-CT-CHEST", [qualified_new, unqualified_newest, qualified_old], shanghai(2026, 11, 1)
    )
    assert found.verdict is Verdict.RECOGNIZABLE
    assert found.result is qualified_new


def test_same_report_time_prefers_the_higher_version() -> None:
    same_time = shanghai(2026, 10, 1)
    first = result(same_time, ref="A", version=1)
    second = result(same_time, ref="B", version=3)
    found = find("IMG-CT-CHEST", [second, first], shanghai(2026, 11, 1))
    assert found.result is second


def test_a_contrast_study_satisfies_the_plain_order() -> None:
    contrast = result(shanghai(2026, 11, 1, 8, 30), item_code="IMG-CT-CHEST-C")
    found = find("IMG-CT-CHEST", [contrast], shanghai(2026, 11, 21, 10, 0))
    assert found.verdict is Verdict.RECOGNIZABLE
    # The avoided item is the plain CT that was ordered.
    assert found.saving_fen == 20000  # 200 yuan
    assert found.reason.en == (
        "胸部CT增强 (CT chest with contrast), which covers 胸部CT平扫 from 重庆市第一人民医院, "
        "reported 2026-11-01 08:30, 20 days ago; valid until 2027-01-30 08:30"
    )
    plain = result(shanghai(2026, 11, 1, 8, 30), item_code="IMG-CT-CHEST")
    assert find("IMG-CT-CHEST-C", [plain], shanghai(2026, 11, 21)).verdict is Verdict.NO_RESULT


def test_a_mark_for_the_result_item_is_what_counts() -> None:
    contrast = result(shanghai(2026, 11, 1), item_code="IMG-CT-CHEST-C")
    plain_only = (mark(item_code="IMG-CT-CHEST"),)
    contrast_only = (mark(item_code="IMG-CT-CHEST-C"),)
    received = shanghai(2026, 11, 2)
    assert find("IMG-CT-CHEST", [contrast], received, qualifications=plain_only).verdict is (
        Verdict.ISSUER_NOT_QUALIFIED
    )
    assert find("IMG-CT-CHEST", [contrast], received, qualifications=contrast_only).verdict is (
        Verdict.RECOGNIZABLE
    )


def test_a_panel_result_counts_for_each_of_its_items() -> None:
    report = shanghai(2026, 11, 1)
    panel = [
        result(report, ref="LFT-1", item_code="LAB-ALT"),
        result(report, ref="LFT-1", item_code="LAB-AST"),
    ]
    received = shanghai(2026, 11, 2)
    assert find("LAB-ALT", panel, received).verdict is Verdict.RECOGNIZABLE
    assert find("LAB-AST", panel, received).verdict is Verdict.RECOGNIZABLE
    assert find("LAB-TBIL", panel, received).verdict is Verdict.NO_RESULT


def test_an_amendment_that_recodes_the_result_drops_the_old_item() -> None:
    first = result(shanghai(2026, 11, 1), item_code="IMG-CT-CHEST", version=1)
    recoded = result(
        shanghai(2026, 11, 2), item_code="IMG-CT-ABD", version=2, status=ResultStatus.AMENDED
    )
    assert find("IMG-CT-CHEST", [first, recoded], shanghai(2026, 11, 3)).verdict is (
        Verdict.NO_RESULT
    )


SMALL_CATALOG = load_catalog(
    "code,name_zh,name_en,category,loinc,modality,body_part,contrast,header_match,validity,"
    "price_cny,satisfies,source\n"
    "LAB-SHORT,短,Short,lab,,,,,,7d,10,,t\n"
    "LAB-LONG,长,Long,lab,,,,,,30d,20,LAB-SHORT,t\n"
    "LAB-FAST,快,Fast,lab,,,,,,3d,5,LAB-SLOW,t\n"
    "LAB-SLOW,慢,Slow,lab,,,,,,30d,20,,t\n"
    "LAB-HOURS,时,Hours,lab,,,,,,6h,5,,t\n",
    "t",
)


@pytest.mark.parametrize(
    ("ordered", "result_item", "days_old", "verdict"),
    [
        # The stricter of the two windows applies: 7 days, though the result item keeps 30.
        ("LAB-SHORT", "LAB-LONG", 6, Verdict.RECOGNIZABLE),
        ("LAB-SHORT", "LAB-LONG", 8, Verdict.EXPIRED),
        ("LAB-LONG", "LAB-LONG", 8, Verdict.RECOGNIZABLE),
        # ...and 3 days, though the ordered item keeps 30.
        ("LAB-SLOW", "LAB-FAST", 2, Verdict.RECOGNIZABLE),
        ("LAB-SLOW", "LAB-FAST", 4, Verdict.EXPIRED),
    ],
)
def test_the_shorter_window_applies(
    ordered: str, result_item: str, days_old: int, verdict: Verdict
) -> None:
    received = shanghai(2026, 11, 21, 10, 0)
    old = result(received - dt.timedelta(days=days_old), item_code=result_item)
    assert find(ordered, [old], received, catalog=SMALL_CATALOG).verdict is verdict


def test_windows_in_hours() -> None:
    report = shanghai(2026, 11, 21, 2, 0)
    sample = result(report, item_code="LAB-HOURS")
    on_time = find("LAB-HOURS", [sample], shanghai(2026, 11, 21, 8, 0), catalog=SMALL_CATALOG)
    assert on_time.verdict is Verdict.RECOGNIZABLE
    late = find("LAB-HOURS", [sample], shanghai(2026, 11, 21, 8, 0, 1), catalog=SMALL_CATALOG)
    assert late.verdict is Verdict.EXPIRED
    assert late.reason.en == (
        "时 (Hours) from 重庆市第一人民医院, reported 2026-11-21 02:00, 6 hours ago; "
        "expired 2026-11-21 08:00:00 (valid for 6 hours)"
    )


def test_a_window_ending_within_the_day_reads_to_the_second() -> None:
    received = shanghai(2026, 11, 21, 8, 0, 0)
    first = result(shanghai(2026, 11, 21, 2, 0, 0), ref="A", item_code="LAB-HOURS")
    second = result(shanghai(2026, 11, 21, 2, 0, 1), ref="B", item_code="LAB-HOURS")
    one = find("LAB-HOURS", [first], received, catalog=SMALL_CATALOG)
    other = find("LAB-HOURS", [second], received, catalog=SMALL_CATALOG)
    assert (one.verdict, other.verdict) == (Verdict.RECOGNIZABLE, Verdict.RECOGNIZABLE)
    assert one.reason.en.endswith("valid until 2026-11-21 08:00:00")
    assert other.reason.en.endswith("valid until 2026-11-21 08:00:01")
    assert other.reason.zh == (
        "时，重庆市第一人民医院，报告于2026-11-21 02:00（5小时前）；有效期至2026-11-21 08:00:01"
    )


def test_a_result_stamped_a_moment_after_the_check_has_no_negative_age() -> None:
    chest = result(shanghai(2026, 11, 1, 8, 30, 30))
    found = find("IMG-CT-CHEST", [chest], shanghai(2026, 11, 1, 8, 30))
    assert found.verdict is Verdict.RECOGNIZABLE
    assert found.age == dt.timedelta(0)
    assert found.reason.en == (
        "胸部CT平扫 (CT chest without contrast) from 重庆市第一人民医院, "
        "reported 2026-11-01 08:30, just now; valid until 2027-01-30 08:30"
    )
    assert found.reason.zh == (
        "胸部CT平扫，重庆市第一人民医院，报告于2026-11-01 08:30（刚刚）；有效期至2027-01-30 08:30"
    )


def test_codes_that_name_no_item() -> None:
    not_covered = unresolved_finding(resolve_ordered_code("718-7", CATALOG, {}), CATALOG)
    assert not_covered.verdict is Verdict.NOT_COVERED
    assert not_covered.reason.en == "718-7 is not a mutually recognized item (catalog 2026.2)"
    assert not_covered.saving_fen == 0
    unknown = unresolved_finding(resolve_ordered_code("XYZ", CATALOG, {}), CATALOG)
    assert unknown.verdict is Verdict.UNKNOWN_CODE
    assert unknown.reason.en == (
        "XYZ is not a known item code, LOINC code or local order code of this institution"
    )
    with pytest.raises(ValueError, match="resolved"):
        unresolved_finding(resolve_ordered_code("LAB-K", CATALOG, {}), CATALOG)


# --- properties ----------------------------------------------------------------------------


@given(
    code=st.sampled_from(sorted(WINDOWS)),
    report_time=report_times,
    zone=ZONES,
    fraction=st.integers(0, 999_999),
)
def test_the_window_ends_inclusively_to_the_second(
    code: str, report_time: dt.datetime, zone: dt.tzinfo, fraction: int
) -> None:
    last_second = (report_time.astimezone(dt.UTC) + WINDOWS[code]).astimezone(zone)
    sample = [result(report_time, item_code=code)]
    at_boundary = find(code, sample, last_second)
    assert at_boundary.verdict is Verdict.RECOGNIZABLE
    assert at_boundary.valid_until == last_second
    within_the_second = last_second + dt.timedelta(microseconds=fraction)
    assert find(code, sample, within_the_second).verdict is Verdict.RECOGNIZABLE
    too_late = find(code, sample, last_second + ONE_SECOND)
    assert too_late.verdict is Verdict.EXPIRED
    assert too_late.expired_since == last_second
    assert too_late.saving_fen == 0


@given(
    statuses=st.lists(st.sampled_from(list(ResultStatus)), min_size=1, max_size=6),
    first_version=st.integers(1, 50),
    order=st.randoms(use_true_random=False),
)
def test_only_the_latest_version_counts_whatever_the_input_order(
    statuses: list[ResultStatus], first_version: int, order: random.Random
) -> None:
    received = shanghai(2026, 11, 21)
    versions = [
        result(
            received - dt.timedelta(days=10) + dt.timedelta(hours=index),
            version=first_version + index,
            status=status,
        )
        for index, status in enumerate(statuses)
    ]
    shuffled = list(versions)
    order.shuffle(shuffled)
    found = find("IMG-CT-CHEST", shuffled, received)
    latest = statuses[-1]
    if latest in FINAL:
        assert found.verdict is Verdict.RECOGNIZABLE
        assert found.result is versions[-1]
    elif latest in PENDING:
        assert found.verdict is Verdict.PRELIMINARY_ONLY
        assert found.result is versions[-1]
    else:
        assert found.verdict is Verdict.NO_RESULT
        assert found.result is None


@given(
    earlier=st.lists(
        st.lists(st.sampled_from(list(ResultStatus)), max_size=4), min_size=1, max_size=4
    ),
    days_old=st.integers(0, 200),
)
def test_a_withdrawn_result_is_never_recognizable(
    earlier: list[list[ResultStatus]], days_old: int
) -> None:
    received = shanghai(2026, 11, 21)
    report = received - dt.timedelta(days=days_old)
    results: list[ResultFacts] = []
    for number, statuses in enumerate(earlier):
        ref = f"R{number}"
        results += [
            result(report, ref=ref, version=v + 1, status=s) for v, s in enumerate(statuses)
        ]
        results.append(
            result(report, ref=ref, version=len(statuses) + 1, status=ResultStatus.ENTERED_IN_ERROR)
        )
    assert find("IMG-CT-CHEST", results, received).verdict is Verdict.NO_RESULT


@given(
    starts_hours=st.integers(-100, 100),
    lasts_hours=st.none() | st.integers(0, 200),
    lasts_extra_seconds=st.sampled_from([-1, 0, 1]),
)
def test_the_mark_must_hold_at_the_report_time(
    starts_hours: int, lasts_hours: int | None, lasts_extra_seconds: int
) -> None:
    report = shanghai(2026, 11, 1, 8, 30)
    valid_from = report + dt.timedelta(hours=starts_hours)
    valid_until = None
    if lasts_hours is not None:
        valid_until = valid_from + dt.timedelta(hours=lasts_hours, seconds=lasts_extra_seconds)
        valid_until = max(valid_until, valid_from)
    marks = (mark(valid_from=valid_from, valid_until=valid_until),)
    held = valid_from <= report and (valid_until is None or report < valid_until)
    found = find("IMG-CT-CHEST", [result(report)], shanghai(2026, 11, 2), qualifications=marks)
    assert found.verdict is (Verdict.RECOGNIZABLE if held else Verdict.ISSUER_NOT_QUALIFIED)


def test_a_mark_ending_at_the_report_time_does_not_count() -> None:
    report = shanghai(2026, 11, 1, 8, 30)
    ends_then = (mark(valid_until=report),)
    starts_then = (mark(valid_from=report),)
    received = shanghai(2026, 11, 2)
    assert find("IMG-CT-CHEST", [result(report)], received, qualifications=ends_then).verdict is (
        Verdict.ISSUER_NOT_QUALIFIED
    )
    assert find("IMG-CT-CHEST", [result(report)], received, qualifications=starts_then).verdict is (
        Verdict.RECOGNIZABLE
    )


def test_another_institutions_mark_does_not_count() -> None:
    other = (mark(ASKER),)
    found = find(
        "IMG-CT-CHEST", [result(shanghai(2026, 11, 1))], shanghai(2026, 11, 2), qualifications=other
    )
    assert found.verdict is Verdict.ISSUER_NOT_QUALIFIED


LEVELS = list(InstitutionLevel)


@given(
    scope=st.sampled_from(list(Scope)),
    same_city=st.booleans(),
    same_region=st.booleans(),
    issuer_level=st.sampled_from(LEVELS),
    asker_level=st.sampled_from(LEVELS),
    rule=st.sampled_from(list(LevelRule)),
)
def test_scope_and_level(
    scope: Scope,
    same_city: bool,
    same_region: bool,
    issuer_level: InstitutionLevel,
    asker_level: InstitutionLevel,
    rule: LevelRule,
) -> None:
    issuer = InstitutionFacts("I", "出具医院", issuer_level, "重庆市", "川渝")
    asker = InstitutionFacts(
        "A",
        "申请医院",
        asker_level,
        "重庆市" if same_city else "成都市",
        "川渝" if same_region else "陕西",
    )
    covered = (
        scope is Scope.NATIONAL
        or (scope is Scope.REGION and same_region)
        or (scope is Scope.CITY and same_city)
    )
    rank = {
        InstitutionLevel.PRIMARY: 1,
        InstitutionLevel.SECONDARY: 2,
        InstitutionLevel.TERTIARY: 3,
    }
    level_ok = {
        LevelRule.SAME_LEVEL_ONLY: rank[issuer_level] == rank[asker_level],
        LevelRule.LOWER_ACCEPTS_HIGHER: rank[issuer_level] >= rank[asker_level],
        LevelRule.HIGHER_ACCEPTS_LOWER: True,
    }[rule]
    found = find(
        "IMG-CT-CHEST",
        [result(shanghai(2026, 11, 1), issuer=issuer)],
        shanghai(2026, 11, 2),
        asker=asker,
        qualifications=(mark(issuer, scope=scope),),
        policy=Policy(level_rules={ItemCategory.IMAGING: rule, ItemCategory.LAB: rule}),
    )
    expected = Verdict.RECOGNIZABLE if covered and level_ok else Verdict.ISSUER_NOT_QUALIFIED
    assert found.verdict is expected
    # A level rule's refusal says so, whatever the scope of the issuer's mark.
    assert ("by the level rule" in found.reason.en) is (not level_ok)


def test_institution_levels_are_ordered() -> None:
    assert InstitutionLevel.PRIMARY < InstitutionLevel.SECONDARY < InstitutionLevel.TERTIARY


ALL_CODES = [item.code for item in CATALOG.items]


@given(ordered=st.sampled_from(ALL_CODES), held=st.sampled_from(ALL_CODES))
def test_satisfies_relation(ordered: str, held: str) -> None:
    received = shanghai(2026, 11, 21, 10, 0)
    # One hour old: inside every window of the catalog (the shortest is 3 days).
    sample = [result(received - dt.timedelta(hours=1), item_code=held)]
    expected = ordered == held or (held, ordered) in ALSO_SATISFIES
    found = find(ordered, sample, received)
    assert found.verdict is (Verdict.RECOGNIZABLE if expected else Verdict.NO_RESULT)


@given(
    report_time=report_times,
    offset=st.timedeltas(min_value=dt.timedelta(days=-1), max_value=dt.timedelta(days=200)),
    status=st.sampled_from(list(ResultStatus)),
)
def test_the_same_instant_in_any_zone_gives_the_same_finding(
    report_time: dt.datetime, offset: dt.timedelta, status: ResultStatus
) -> None:
    received = report_time + offset

    def in_zone(zone: dt.tzinfo) -> Finding:
        sample = [result(report_time.astimezone(zone), status=status)]
        return find("IMG-CT-CHEST", sample, received.astimezone(zone))

    beijing, utc = in_zone(SHANGHAI), in_zone(dt.UTC)
    assert beijing.verdict is utc.verdict
    assert beijing.valid_until == utc.valid_until
    assert beijing.expired_since == utc.expired_since
    assert beijing.age == utc.age
    assert beijing.reason == utc.reason


def test_naive_datetimes_are_refused() -> None:
    naive = dt.datetime(2026, 11, 1, 8, 30)
    with pytest.raises(ValueError, match="timezone-aware"):
        find("IMG-CT-CHEST", [], naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        result(naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        mark(valid_from=naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        mark(valid_until=naive)


def test_a_mark_names_an_item_or_a_category() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        Qualification(
            "I", "IMG-CT-CHEST", ItemCategory.IMAGING, Scope.CITY, shanghai(2026, 1, 1), None
        )
    with pytest.raises(ValueError, match="exactly one"):
        Qualification("I", None, None, Scope.CITY, shanghai(2026, 1, 1), None)
    with pytest.raises(ValueError, match="before it starts"):
        mark(valid_from=shanghai(2026, 1, 2), valid_until=shanghai(2026, 1, 1))


@given(
    report_time=report_times,
    offset=st.timedeltas(min_value=dt.timedelta(minutes=-5), max_value=dt.timedelta(days=200)),
    status=st.sampled_from(list(ResultStatus)),
)
def test_an_age_is_never_negative(
    report_time: dt.datetime, offset: dt.timedelta, status: ResultStatus
) -> None:
    # A report stamped up to the clock skew after the check arrived reads as new, not as -N.
    found = find("IMG-CT-CHEST", [result(report_time, status=status)], report_time + offset)
    assert found.age is None or found.age >= dt.timedelta(0)
    assert found.age is None or found.age == max(offset, dt.timedelta(0))
