"""The regulators' dashboard as HTML: a report (or the errors of its form) laid out for the
template, rendered with Jinja2 (autoescaped: institution names and echoed values stay text)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from mutualrec.http.regulator_form import (
    GRANULARITIES,
    GROUPINGS,
    QUICK_PICKS,
    DashboardForm,
)
from mutualrec.http.regulator_strings import words
from mutualrec.matching.language import Language
from mutualrec.statistics.counters import Counters, recognition_rate
from mutualrec.statistics.report import GroupBy, SavingsReport, group_sums
from mutualrec.statistics.svg_chart import ChartText, GroupBar, grouped_yuan, savings_chart
from mutualrec.violations import Violation

PAGE_TEMPLATE = "regulator/dashboard.html"
STYLESHEET = "/static/regulator/dashboard.css"
ICON = "/static/regulator/icon.svg"

_TEMPLATES = Environment(
    loader=PackageLoader("mutualrec.http", "templates"),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
# Placeholder labels the statistics write in English, as a reader of the page's language reads
# them (inside a pair's label too).
_PLACEHOLDERS = ("(no district)", "(no result cited)", "(not a recognized item)")


@dataclass(frozen=True, slots=True)
class Figures:
    """One row's (or the totals') figures as the page prints them."""

    checks: int
    items_checked: int
    items_recognizable: int
    accepted: int
    declined: int
    # "75.00%", or "–" when nothing was recognizable.
    rate: str
    saving: str


@dataclass(frozen=True, slots=True)
class TableRow:
    """One row of the report's table."""

    period: str
    key: str
    label: str
    figures: Figures


@dataclass(frozen=True, slots=True)
class FieldError:
    """A form field to correct, and why, in the page's language."""

    field: str
    name: str
    message: str


@dataclass(slots=True)
class PageView:
    """What the template shows; ``totals`` None when the form has errors."""

    form: DashboardForm
    language: Language
    errors: list[FieldError] = field(default_factory=list)
    totals: Figures | None = None
    rows: list[TableRow] = field(default_factory=list)
    chart: Markup = field(default_factory=Markup)
    notes: list[str] = field(default_factory=list)


def rate_percent(rate: str) -> str:
    """A report's recognition rate ("0.7500") as a percentage ("75.00%"); "–" for none."""
    if not rate:
        return "–"
    return f"{(Decimal(rate) * 100).quantize(Decimal('0.01'))}%"


def figures(counters: Counters) -> Figures:
    """``counters`` as the page prints them (the rate and saving as the gRPC report gives
    them, written as a percentage and with thousands separators)."""
    return Figures(
        counters.checks,
        counters.items_checked,
        counters.items_recognizable,
        counters.accepted,
        counters.declined,
        rate_percent(recognition_rate(counters.accepted, counters.items_recognizable)),
        grouped_yuan(counters.saving_fen),
    )


def local_label(label: str, group_by: GroupBy, w: dict[str, str]) -> str:
    """A group's label with the statistics' English placeholders in the page's language."""
    if group_by is GroupBy.CATEGORY and f"label.{label}" in w:
        return w[f"label.{label}"]
    for placeholder in _PLACEHOLDERS:
        label = label.replace(placeholder, w[f"label.{placeholder}"])
    return label


def report_view(report: SavingsReport, form: DashboardForm, language: Language) -> PageView:
    """The page of a computed report."""
    w = words(language)
    group_by = report.group_by

    def label(key: str) -> str:
        return local_label(report.names.label(group_by, key), group_by, w)

    rows = [
        TableRow(
            _period(row.period_start, row.period_end),
            row.group_key,
            label(row.group_key),
            figures(row.counters),
        )
        for row in report.rows
    ]
    bars = [
        GroupBar(label(key), c.saving_fen, c.accepted, c.items_recognizable)
        for key, c in group_sums(report.rows).items()
    ]
    chart = savings_chart(
        bars,
        ChartText(
            title=w["chart"],
            saving=w["saving"],
            rate=w["recognition_rate"],
            others=w["chart_others"],
            empty=w["chart_empty"],
            no_rate="–",
        ),
    )
    notes = [w["rate_note"]]
    if report.suppressed:
        notes.append(
            w["suppressed"]
            .replace("{count}", str(report.suppressed))
            .replace("{min}", str(report.min_group_size))
        )
    if not report.own_institution_counted:
        notes.append(w["own_not_counted"])
    return PageView(
        form,
        language,
        totals=figures(report.totals),
        rows=rows,
        # The chart module escapes every text it draws.
        chart=Markup(chart),
        notes=notes,
    )


def error_view(
    form: DashboardForm, language: Language, violations: Sequence[Violation]
) -> PageView:
    """The form again, each unusable field named with what is wrong."""
    w = words(language)
    errors = [
        FieldError(
            v.field,
            w.get(f"field.{v.field}", v.field),
            w.get(f"reason.{v.reason}", v.description),
        )
        for v in violations
    ]
    return PageView(form, language, errors=errors)


def render_page(view: PageView) -> str:
    """The dashboard's HTML."""
    w = words(view.language)
    other = Language.EN if view.language is Language.ZH else Language.ZH
    form = view.form
    return _TEMPLATES.get_template(PAGE_TEMPLATE).render(
        w=w,
        view=view,
        lang=view.language.value,
        stylesheet=STYLESHEET,
        icon=ICON,
        groupings=[(value, w[f"group.{value}"]) for value in GROUPINGS],
        granularities=[(value, w[f"granularity.{value}"]) for value in GRANULARITIES],
        quick_picks=[(w[f"range.{name}"], form.query(pick=name)) for name in QUICK_PICKS],
        other_language=(w["other_language"], form.query(lang=other.value)),
        csv_query=form.query(lang=""),
        error_fields={error.field for error in view.errors},
    )


def _period(first: dt.date, last: dt.date) -> str:
    return first.isoformat() if first == last else f"{first.isoformat()} – {last.isoformat()}"
