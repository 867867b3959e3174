"""Every reason text a doctor reads, in one place, so wording stays consistent and reviewable.

One line each, in English and in Chinese, times in Asia/Shanghai: the region's clinical clock,
whatever zone the facts arrived in.
"""

from __future__ import annotations

import datetime as dt

from mutualrec.localtime import LOCAL_ZONE
from mutualrec.matching.catalog import CatalogItem
from mutualrec.matching.facts import InstitutionFacts, InstitutionLevel, ResultFacts, Scope
from mutualrec.matching.language import Reason

_LEVEL_NAMES = {
    InstitutionLevel.PRIMARY: ("primary", "一级"),
    InstitutionLevel.SECONDARY: ("secondary", "二级"),
    InstitutionLevel.TERTIARY: ("tertiary", "三级"),
}
_SCOPE_NAMES_ZH = {Scope.CITY: "市级", Scope.REGION: "区域", Scope.NATIONAL: "全国"}


def local_time(value: dt.datetime, *, seconds: bool = False) -> str:
    """``value`` as a doctor in the region reads it: ``2026-11-01 08:30`` (``:05`` added with
    ``seconds``)."""
    shape = "%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M"
    return value.astimezone(LOCAL_ZONE).strftime(shape)


def _boundary(moment: dt.datetime, received_at: dt.datetime) -> str:
    """A window's end: to the second when it is within a day of the check, so two results a
    second apart, one valid and one not, do not read the same."""
    return local_time(moment, seconds=abs(moment - received_at) < dt.timedelta(days=1))


def _item(item: CatalogItem) -> Reason:
    return Reason(f"{item.name_zh} ({item.name_en})", item.name_zh)


def _count(amount: int, unit: str) -> str:
    return f"{amount} {unit}" if amount == 1 else f"{amount} {unit}s"


def _ago(age: dt.timedelta) -> Reason:
    if age >= dt.timedelta(days=1):
        return Reason(_count(age.days, "day") + " ago", f"{age.days}天前")
    if age >= dt.timedelta(hours=1):
        hours = age // dt.timedelta(hours=1)
        return Reason(_count(hours, "hour") + " ago", f"{hours}小时前")
    if age >= dt.timedelta(minutes=1):
        minutes = age // dt.timedelta(minutes=1)
        return Reason(_count(minutes, "minute") + " ago", f"{minutes}分钟前")
    # Also a report stamped within the clock skew after the check arrived: never a negative age.
    return Reason("just now", "刚刚")


def _window(window: dt.timedelta) -> Reason:
    if window % dt.timedelta(days=1):
        hours = window // dt.timedelta(hours=1)
        return Reason(_count(hours, "hour"), f"{hours}小时")
    return Reason(_count(window.days, "day"), f"{window.days}天")


def _covers(result_item: CatalogItem, ordered: CatalogItem) -> Reason:
    if result_item.code == ordered.code:
        return Reason("", "")
    return Reason(f", which covers {ordered.name_zh}", f"（可替代{ordered.name_zh}）")


def _reported(
    result_item: CatalogItem,
    ordered: CatalogItem,
    result: ResultFacts,
    age: dt.timedelta,
) -> Reason:
    item, covers, ago = _item(result_item), _covers(result_item, ordered), _ago(age)
    reported = local_time(result.report_time)
    return Reason(
        f"{item.en}{covers.en} from {result.issuer.name}, reported {reported}, {ago.en}",
        f"{item.zh}{covers.zh}，{result.issuer.name}，报告于{reported}（{ago.zh}）",
    )


def _from_collection(collected_at: dt.datetime | None) -> Reason:
    """Where the window starts, when not at the report: the specimen's collection."""
    if collected_at is None:
        return Reason("", "")
    moment = local_time(collected_at)
    return Reason(f" from specimen collection {moment}", f"，自{moment}采样起算")


def _then(first: Reason, en: str, zh: str) -> Reason:
    return Reason(f"{first.en}; {en}", f"{first.zh}；{zh}")


def recognizable(
    result_item: CatalogItem,
    ordered: CatalogItem,
    result: ResultFacts,
    age: dt.timedelta,
    valid_until: dt.datetime,
    received_at: dt.datetime,
    collected_at: dt.datetime | None = None,
) -> Reason:
    """A result the doctor may adopt instead of ordering again."""
    until = _boundary(valid_until, received_at)
    return _then(
        _reported(result_item, ordered, result, age),
        f"valid until {until}{_from_collection(collected_at).en}",
        f"有效期至{until}{_from_collection(collected_at).zh}",
    )


def expired(
    result_item: CatalogItem,
    ordered: CatalogItem,
    result: ResultFacts,
    age: dt.timedelta,
    valid_until: dt.datetime,
    window: dt.timedelta,
    received_at: dt.datetime,
    collected_at: dt.datetime | None = None,
) -> Reason:
    """The newest final result is older than the item's validity window."""
    until, valid_for = _boundary(valid_until, received_at), _window(window)
    collection = _from_collection(collected_at)
    return _then(
        _reported(result_item, ordered, result, age),
        f"expired {until} (valid for {valid_for.en}{collection.en})",
        f"已于{until}过期（有效期{valid_for.zh}{collection.zh}）",
    )


def issuer_without_mark(
    result_item: CatalogItem, ordered: CatalogItem, result: ResultFacts, age: dt.timedelta
) -> Reason:
    """The issuer held no recognition qualification for the item when it reported."""
    name = result.issuer.name
    return _then(
        _reported(result_item, ordered, result, age),
        f"{name} held no recognition qualification (HR) for {result_item.name_zh} at that time",
        f"{name}当时未取得{result_item.name_zh}的互认资质（HR）",
    )


def issuer_out_of_scope(
    result_item: CatalogItem,
    ordered: CatalogItem,
    result: ResultFacts,
    age: dt.timedelta,
    asker: InstitutionFacts,
    scopes: frozenset[Scope],
) -> Reason:
    """The issuer's qualification does not reach the asking institution."""
    held = "/".join(sorted(scope.value for scope in scopes))
    held_zh = "/".join(_SCOPE_NAMES_ZH[scope] for scope in sorted(scopes, key=lambda s: s.value))
    return _then(
        _reported(result_item, ordered, result, age),
        f"its {held} recognition qualification does not cover {asker.name}",
        f"其{held_zh}互认资质不覆盖{asker.name}",
    )


def level_rule(
    result_item: CatalogItem,
    ordered: CatalogItem,
    result: ResultFacts,
    age: dt.timedelta,
    asker: InstitutionFacts,
    rule: str,
) -> Reason:
    """The region's level rule does not let the asker recognize the issuer's level."""
    issuer_en, issuer_zh = _LEVEL_NAMES[result.issuer.level]
    asker_en, asker_zh = _LEVEL_NAMES[asker.level]
    return _then(
        _reported(result_item, ordered, result, age),
        f"by the level rule ({rule}) results of a {issuer_en} institution are not recognized "
        f"by {asker.name} ({asker_en})",
        f"按等级规则（{rule}），{asker.name}（{asker_zh}）不互认{issuer_zh}机构的结果",
    )


def qualification_suspended(
    result_item: CatalogItem,
    ordered: CatalogItem,
    result: ResultFacts,
    age: dt.timedelta,
    since: dt.datetime,
    why: str,
) -> Reason:
    """The issuer's qualification was suspended when it reported."""
    name, start = result.issuer.name, local_time(since)
    return _then(
        _reported(result_item, ordered, result, age),
        f"{name}'s recognition qualification for {result_item.name_zh} is suspended from "
        f"{start} ({why})",
        f"{name}的{result_item.name_zh}互认资质自{start}起暂停（{why}）",
    )


def preliminary_only(
    result_item: CatalogItem, ordered: CatalogItem, result: ResultFacts, age: dt.timedelta
) -> Reason:
    """Only a result without its final report exists."""
    return _then(
        _reported(result_item, ordered, result, age), "no final report yet", "尚无正式报告"
    )


def pending_after_expired(
    result_item: CatalogItem,
    ordered: CatalogItem,
    result: ResultFacts,
    age: dt.timedelta,
    expired_result: ResultFacts,
    valid_until: dt.datetime,
    received_at: dt.datetime,
) -> Reason:
    """The newest result awaits its final report; the last final one has expired."""
    reported = local_time(expired_result.report_time)
    until = _boundary(valid_until, received_at)
    return _then(
        _reported(result_item, ordered, result, age),
        f"no final report yet; the last final result, reported {reported}, expired {until}",
        f"尚无正式报告；上一次正式结果报告于{reported}，已于{until}过期",
    )


def held_for_review(
    result_item: CatalogItem, ordered: CatalogItem, result: ResultFacts, age: dt.timedelta
) -> Reason:
    """The only result is a study whose declared item contradicts its images."""
    return _then(
        _reported(result_item, ordered, result, age),
        "the item declared for this study contradicts its images, so it is not recognized "
        "until an administrator resolves it",
        "该检查申报的项目与影像不符，管理员处理前不予互认",
    )


def no_result(ordered: CatalogItem) -> Reason:
    """Nothing on record that could stand for the ordered item."""
    item = _item(ordered)
    return Reason(
        f"No result of {item.en} on record for this patient", f"该患者无{item.zh}的结果记录"
    )


def not_covered(code: str, catalog_version: str) -> Reason:
    """A code that names something real, but not a recognized item."""
    return Reason(
        f"{code} is not a mutually recognized item (catalog {catalog_version})",
        f"{code}不是互认项目（目录{catalog_version}）",
    )


def unknown_code(code: str) -> Reason:
    """A code that neither the catalog, LOINC nor the institution's code table knows."""
    return Reason(
        f"{code} is not a known item code, LOINC code or local order code of this institution",
        f"{code}不是已知的项目代码、LOINC代码或本机构的本地医嘱代码",
    )


def card_summary(item: CatalogItem, issuer_name: str, age: dt.timedelta) -> Reason:
    """A recognizable result in the fewest words a doctor reads at a glance (CDS Hooks cards
    keep their summary under 140 characters)."""
    ago = _ago(age)
    return Reason(
        f"{item.name_en}: recognizable result from {issuer_name} ({ago.en}); no need to repeat",
        f"{item.name_zh}：{issuer_name}{ago.zh}的结果可互认，无需重复检查",
    )


def valid_until_text(moment: dt.datetime) -> Reason:
    """Until when a recognizable result stays recognizable."""
    when = local_time(moment)
    return Reason(f"valid until {when}", f"有效期至{when}")


def remove_duplicate_order(item: CatalogItem) -> Reason:
    """The suggestion to drop an order a held result makes needless."""
    return Reason(
        f"Remove the {item.name_en} order: recognize the held result",
        f"撤销{item.name_zh}医嘱，互认已有结果",
    )


DECLINE_REASON_NAMES: dict[str, Reason] = {
    "CONDITION_CHANGED": Reason("The patient's condition has changed", "病情变化"),
    "FAST_CHANGING_VALUE": Reason("A fast-changing value must be measured now", "指标变化快"),
    "BEFORE_SURGERY_OR_TRANSFUSION": Reason(
        "Needed before surgery or transfusion", "手术或输血前检查"
    ),
    "EMERGENCY": Reason("Emergency", "急诊急救"),
    "FORENSIC_ASSESSMENT": Reason("Forensic assessment", "司法鉴定"),
    "PATIENT_REQUEST": Reason("At the patient's request", "患者要求"),
    "ISSUER_FAILED_QUALITY_ASSESSMENT": Reason(
        "The issuer failed its quality assessment", "出具机构质控不合格"
    ),
    "IMAGE_QUALITY": Reason("Image quality is not sufficient", "影像质量不满足诊断"),
    "BODY_PART_MISMATCH": Reason("The body part does not match", "检查部位不符"),
    "OTHER": Reason("Other (say why)", "其他（请注明）"),
}
"""Every decline reason as a doctor reads it, by :class:`~mutualrec.matching.decisions.
DeclineReason` value."""
