"""Every word of the regulators' dashboard, in Chinese first and English second, and the
choice of one: the ``lang`` parameter, else the browser's Accept-Language, else Chinese."""

from __future__ import annotations

from collections.abc import Mapping

from mutualrec.matching.language import Language, preferred_language

# key -> (Chinese, English)
STRINGS: Mapping[str, tuple[str, str]] = {
    "title": ("互认节省统计", "Recognition savings"),
    "subtitle": (
        "检查检验结果互认：节省费用与互认率（按亚洲/上海日历日统计）",
        "Mutual recognition of results: savings and recognition rate (Asia/Shanghai days)",
    ),
    "other_language": ("English", "中文"),
    "form": ("查询条件", "Report"),
    "from_date": ("开始日期", "From"),
    "to_date": ("结束日期", "To"),
    "group_by": ("分组", "Group by"),
    "granularity": ("时间粒度", "Periods"),
    "show": ("查询", "Show"),
    "quick_picks": ("快捷选择", "Quick picks"),
    "range.last-7-days": ("最近 7 天", "Last 7 days"),
    "range.last-30-days": ("最近 30 天", "Last 30 days"),
    "range.this-month": ("本月", "This month"),
    "range.last-month": ("上月", "Last month"),
    "range.this-year": ("今年", "This year"),
    "range.last-year": ("去年", "Last year"),
    "group.district": ("区县", "District"),
    "group.asking-institution": ("申请机构（调阅方）", "Asking institution"),
    "group.issuing-institution": ("出具机构（结果方）", "Issuing institution"),
    "group.pair": ("出具机构 → 申请机构", "Issuer → asker"),
    "group.item": ("互认项目", "Item"),
    "group.category": ("类别（检验/检查）", "Category (lab/imaging)"),
    "granularity.day": ("按日", "Days"),
    "granularity.week": ("按周", "Weeks"),
    "granularity.month": ("按月", "Months"),
    "totals": ("合计", "Totals"),
    "period": ("期间", "Period"),
    "group": ("分组", "Group"),
    "checks": ("查询次数", "Checks"),
    "items_checked": ("查询项目数", "Items checked"),
    "items_recognizable": ("可互认项目数", "Recognizable lines"),
    "accepted": ("采纳", "Accepted"),
    "declined": ("未采纳", "Declined"),
    "recognition_rate": ("互认率", "Recognition rate"),
    "saving": ("节省（元）", "Savings (yuan)"),
    "chart": ("各组节省与互认率", "Savings and recognition rate by group"),
    "chart_others": ("其余 {count} 组", "{count} other groups"),
    "chart_empty": ("本期间无查询", "No checks in this period"),
    "table": ("明细", "Rows"),
    "no_rows": ("本期间无查询记录。", "No checks in this period."),
    "download_csv": ("下载 CSV", "Download CSV"),
    "suppressed": (
        "查询次数少于 {min} 的 {count} 行未显示（最小分组规模）。",
        "{count} rows of groups under {min} checks are left out (minimum group size).",
    ),
    "own_not_counted": (
        "按本地区政策，机构调阅本机构结果不计入可互认、采纳与节省。",
        "By the region's policy, an institution's reuse of its own results is not counted"
        " in recognizable lines, acceptances or savings.",
    ),
    "rate_note": (
        "互认率 = 采纳 ÷ 可互认项目数。",
        "Recognition rate = accepted ÷ recognizable lines.",
    ),
    "errors": ("请修改以下查询条件：", "Please correct the report:"),
    "field.from_date": ("开始日期", "From"),
    "field.to_date": ("结束日期", "To"),
    "field.group_by": ("分组", "Group by"),
    "field.granularity": ("时间粒度", "Periods"),
    "field.range": ("快捷选择", "Quick pick"),
    "reason.BAD_DATE": ("应为日期 YYYY-MM-DD。", "must be a date, YYYY-MM-DD."),
    "reason.END_BEFORE_START": ("结束日期早于开始日期。", "is before the first day."),
    "reason.TOO_LONG": ("期间最长 366 天。", "spans more than 366 days."),
    "reason.GRANULARITY_TOO_FINE": (
        "按日统计的期间最长 92 天，请按周或按月。",
        "days cover at most 92 days: choose weeks or months.",
    ),
    "reason.UNKNOWN_GROUP_BY": ("不是可选的分组。", "is not a grouping offered."),
    "reason.UNKNOWN_GRANULARITY": ("不是可选的时间粒度。", "is not a period offered."),
    "reason.UNKNOWN_RANGE": ("不是可选的快捷期间。", "is not a quick pick offered."),
    "label.(no district)": ("（无区县）", "(no district)"),
    "label.(no result cited)": ("（未引用结果）", "(no result cited)"),
    "label.(not a recognized item)": ("（非互认项目）", "(not a recognized item)"),
    "label.lab": ("检验", "lab"),
    "label.imaging": ("检查", "imaging"),
}


def choose_language(lang: str, accept_language: str) -> Language:
    """The ``lang`` parameter when it names a language the page is written in; else the
    browser's Accept-Language preference; Chinese by default."""
    chosen = lang.strip().lower()
    for language in Language:
        if chosen == language.value:
            return language
    return preferred_language(accept_language[:200])


def words(language: Language) -> dict[str, str]:
    """Every string in ``language``."""
    index = 0 if language is Language.ZH else 1
    return {key: pair[index] for key, pair in STRINGS.items()}
