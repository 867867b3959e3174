"""Statistics in the index: the day's check lines, and their rollups once the day is closed.

A closed day is folded once into ``daily_rollup`` (one row per grouping and group) the first
time a report needs it, and only read afterwards: a closed period gives the same numbers every
time, and a report reads at most a few rows per day and group instead of every decision. The
open days are counted live from ``check_line`` and ``decision``.

A line belongs to the day its check was received; its decision counts on that same day. A
decision is accepted at most ``DECISION_WINDOW`` after its check (see
:mod:`mutualrec.recognition.checks`), so a day is closed, and folded, only once every decision
on its checks is in: from the day after tomorrow (Asia/Shanghai) on.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from mutualrec.statistics.counters import Counters, yuan
from mutualrec.statistics.periods import Period, day_bounds
from mutualrec.statistics.report import Directory, GroupBy, InstitutionInfo, LineFact, fold_day
from mutualrec.storage import catalog_store
from mutualrec.storage.models import (
    CheckLine,
    DailyRollup,
    Decision,
    Institution,
    RecognitionCheck,
    RollupDay,
)

DayFigures = dict[dt.date, dict[str, Counters]]

# Today and yesterday stay open: a check received just before midnight may be decided until
# the same time the next day.
OPEN_DAYS = 2


def directory(session: Session) -> Directory:
    """Institutions and catalog items as reports key and label them."""
    institutions = {
        row.id: InstitutionInfo(row.code, row.name, row.district)
        for row in session.scalars(select(Institution))
    }
    try:
        catalog = catalog_store.current_catalog(session)
    except catalog_store.NoCatalog:
        return Directory(institutions, {})
    return Directory(
        institutions,
        {item.code: item.category.value for item in catalog.items},
        {item.code: item.name_zh for item in catalog.items},
    )


def day_lines(session: Session, day: dt.date) -> list[LineFact]:
    """Every check line of the checks received on ``day``, with its decision if any."""
    start, end = day_bounds(day)
    rows = session.execute(
        select(
            CheckLine.check_id,
            RecognitionCheck.institution_id,
            CheckLine.issuer_institution_id,
            CheckLine.item_code,
            CheckLine.verdict,
            Decision.accepted,
            Decision.reason,
            Decision.booked_saving,
        )
        .join(RecognitionCheck, RecognitionCheck.id == CheckLine.check_id)
        .outerjoin(
            Decision, (Decision.check_id == CheckLine.check_id) & (Decision.line == CheckLine.line)
        )
        .where(RecognitionCheck.received_at >= start, RecognitionCheck.received_at < end)
    )
    return [
        LineFact(
            check_id=check_id,
            asker_id=asker_id,
            issuer_id=issuer_id,
            item_code=item_code,
            verdict=verdict,
            accepted=accepted,
            reason=reason or "",
            booked_saving=saving or "0",
        )
        for check_id, asker_id, issuer_id, item_code, verdict, accepted, reason, saving in rows
    ]


def materialize_day(sessions: sessionmaker[Session], day: dt.date, names: Directory) -> None:
    """Fold a closed day into ``daily_rollup``, once; a concurrent fold of the same day wins."""
    try:
        with sessions.begin() as session:
            session.add(RollupDay(day=day, materialized_at=dt.datetime.now(dt.UTC)))
            session.flush()
            folded = fold_day(day_lines(session, day), names, list(GroupBy))
            session.add_all(
                DailyRollup(
                    day=day,
                    group_by=group_by.value,
                    group_key=key,
                    checks=c.checks,
                    items_checked=c.items_checked,
                    items_recognizable=c.items_recognizable,
                    accepted=c.accepted,
                    declined=c.declined,
                    declined_by_reason=c.reasons_json(),
                    saving=yuan(c.saving),
                )
                for group_by, groups in folded.items()
                for key, c in groups.items()
            )
    except IntegrityError:
        # Another request folded the same day first: its rows are the same numbers.
        pass


def _materialized(session: Session, first: dt.date, last: dt.date) -> set[dt.date]:
    return set(
        session.scalars(select(RollupDay.day).where(RollupDay.day >= first, RollupDay.day <= last))
    )


def _reasons(text: str) -> dict[str, int]:
    return {str(reason): int(count) for reason, count in json.loads(text).items()}


def _rollups(session: Session, group_by: GroupBy, first: dt.date, last: dt.date) -> DayFigures:
    figures: DayFigures = {}
    for row in session.scalars(
        select(DailyRollup).where(
            DailyRollup.group_by == group_by.value,
            DailyRollup.day >= first,
            DailyRollup.day <= last,
        )
    ):
        figures.setdefault(row.day, {})[row.group_key] = Counters(
            checks=row.checks,
            items_checked=row.items_checked,
            items_recognizable=row.items_recognizable,
            accepted=row.accepted,
            declined=row.declined,
            declined_by_reason={
                str(k): int(v) for k, v in json.loads(row.declined_by_reason).items()
            },
            saving=Decimal(row.saving),
        )
    return figures


def report_days(
    sessions: sessionmaker[Session], group_by: GroupBy, period: Period, today: dt.date
) -> tuple[DayFigures, Directory]:
    """Figures per day and group over ``period``: rollups for closed days, live for today."""
    with sessions() as session:
        names = directory(session)
        last_closed = min(period.end, today - dt.timedelta(days=OPEN_DAYS))
        if period.start <= last_closed:
            done = _materialized(session, period.start, last_closed)
            missing = [d for d in Period(period.start, last_closed).days() if d not in done]
        else:
            missing = []
    for day in missing:
        materialize_day(sessions, day, names)
    with sessions() as session:
        figures: DayFigures = {}
        if period.start <= last_closed:
            figures = _rollups(session, group_by, period.start, last_closed)
        for open_day in Period(
            max(period.start, last_closed + dt.timedelta(days=1)), period.end
        ).days():
            if open_day > today:
                break
            live = fold_day(day_lines(session, open_day), names, [group_by])[group_by]
            if live:
                figures[open_day] = live
    return figures, names
