"""Statistics in the index: tallies appended by checks and decisions, compacted, summed by reports.

Every check and every decision appends its :class:`~mutualrec.statistics.tally.TallyRow` s to
``stat_delta`` in its own transaction (appends never wait on each other). The compactor folds
deltas into ``stat_tally`` (one row per grouping, day and group) and ``stat_tally_month`` (the
same per calendar month) every few seconds. A
report is one SQL statement summing the tallies and the deltas not yet folded over its period,
bucketed into its rows: it reads a few rows per day and group whatever the number of decisions,
and, being one statement, it sees one snapshot even while the compactor runs.

A line belongs to the day its check was received; its decision counts on that same day. A
decision is accepted at most ``DECISION_WINDOW`` after its check (see
:mod:`mutualrec.services.recognition`), so from the day after tomorrow (Asia/Shanghai) on a day's
tallies no longer change: a closed period gives the same numbers every time.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from typing import cast as type_cast

from sqlalchemy import (
    BigInteger,
    Connection,
    Date,
    Engine,
    Table,
    case,
    cast,
    delete,
    func,
    inspect,
    literal,
    literal_column,
    select,
    text,
    union_all,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement, Select

from mutualrec.statistics.periods import Granularity, Period, day_bounds, full_months, today
from mutualrec.statistics.report import Directory, GroupBy, InstitutionInfo, LineFact, Row
from mutualrec.statistics.tally import (
    REASON_COLUMNS,
    DayDeltas,
    TallySum,
    buckets,
    lines_rows,
    reason_column,
    report_rows,
)
from mutualrec.storage import catalog_store
from mutualrec.storage.models import (
    CheckLine,
    Decision,
    Institution,
    RecognitionCheck,
    StatDelta,
    StatTally,
    StatTallyMonth,
)

_COUNTERS = (
    "checks",
    "items_checked",
    "items_recognizable",
    "accepted",
    "saving_fen",
    "declined",
    *REASON_COLUMNS,
    "items_recognizable_own",
    "accepted_own",
    "saving_fen_own",
)
_KEY = ("group_by", "day", "group_key")
# The key's three columns (text, date, text), then BIGINT counters only: the check's statement
# on PostgreSQL casts its arrays accordingly.
DELTA_COLUMNS = (*_KEY, *_COUNTERS)

_MONTH_KEY = ("group_by", "month", "group_key")
# The first day of a day's calendar month, in each database's SQL.
_MONTH_PG = "date_trunc('month', day::timestamp)::date"
_MONTH_SQLITE = "date(day, 'start of month')"

# How many deltas one compaction folds at most: a bounded transaction, repeated until done.
COMPACT_BATCH = 50_000

# On PostgreSQL, one statement takes a batch of deltas out and adds it into the tallies: atomic
# without a transaction of ours, and rows another compactor holds are skipped, not waited for.
# ORDER BY makes every compactor lock tally rows in the same order (no deadlock between two).
_COMPACT_PG = text(
    f"""
    WITH moved AS (
        DELETE FROM stat_delta WHERE id IN (
            SELECT id FROM stat_delta ORDER BY id LIMIT :batch FOR UPDATE SKIP LOCKED
        )
        RETURNING {", ".join(DELTA_COLUMNS)}
    ), folded AS (
        INSERT INTO stat_tally ({", ".join(DELTA_COLUMNS)})
        SELECT {", ".join(_KEY)}, {", ".join(f"sum({c})::bigint" for c in _COUNTERS)}
        FROM moved GROUP BY {", ".join(_KEY)} ORDER BY {", ".join(_KEY)}
        ON CONFLICT ({", ".join(_KEY)}) DO UPDATE SET
        {", ".join(f"{c} = stat_tally.{c} + excluded.{c}" for c in _COUNTERS)}
    ), folded_by_month AS (
        INSERT INTO stat_tally_month ({", ".join(_MONTH_KEY)}, {", ".join(_COUNTERS)})
        SELECT group_by, {_MONTH_PG}, group_key,
               {", ".join(f"sum({c})::bigint" for c in _COUNTERS)}
        FROM moved GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT ({", ".join(_MONTH_KEY)}) DO UPDATE SET
        {", ".join(f"{c} = stat_tally_month.{c} + excluded.{c}" for c in _COUNTERS)}
    )
    SELECT count(*) FROM moved
    """
)


def delta_params(deltas: DayDeltas) -> list[dict[str, Any]]:
    """``deltas`` as ``stat_delta`` rows."""
    day = deltas.day
    return [
        {
            "group_by": r.group_by.value,
            "day": day,
            "group_key": r.group_key[:80],
            "checks": r.checks,
            "items_checked": r.items_checked,
            "items_recognizable": r.items_recognizable,
            "accepted": r.accepted,
            "saving_fen": r.saving_fen,
            "declined": r.declined,
            **dict.fromkeys(REASON_COLUMNS, 0),
            **{reason_column(reason): count for reason, count in r.declined_by_reason},
            "items_recognizable_own": r.items_recognizable_own,
            "accepted_own": r.accepted_own,
            "saving_fen_own": r.saving_fen_own,
        }
        for r in deltas.rows
    ]


def compact(engine: Engine, batch: int = COMPACT_BATCH) -> int:
    """Fold deltas into the tallies, ``batch`` at a time until none is left; how many were."""
    folded = 0
    while True:
        with engine.begin() as connection:
            moved = _compact_once(connection, batch)
        folded += moved
        if moved < batch:
            return folded


def vacuum_deltas(engine: Engine) -> None:
    """Reclaim the space of the deltas compaction removed (PostgreSQL).

    ``stat_delta`` is a queue: every row is deleted seconds after it was appended. Autovacuum's
    default thresholds, or autovacuum turned off, let dead rows pile up by the hundred thousand
    within minutes, and every compaction's index scan and every report's scan of the deltas
    then walks over them. Vacuuming the few live pages after each fold costs milliseconds.
    """
    if engine.dialect.name != "postgresql":
        return
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM (SKIP_LOCKED) stat_delta"))


def _plan_compaction(connection: Connection) -> None:
    """Keep this transaction's compaction off nested loops (PostgreSQL).

    The deltas are vacuumed after every fold. Vacuumed while a delta or two remain in the last
    of many pages, the table is recorded as a row or two in those pages, and as new deltas
    fill them again the planner still expects a row or two: it joins the batch to the deltas
    by a nested loop that reruns the batch's subquery once per delta, quadratic in a backlog
    (seen on a bench database: 124,000 deltas, one compaction still running after 20 minutes,
    the backlog growing). A hash join is linear whatever the statistics say.
    """
    connection.execute(text("SET LOCAL enable_nestloop = off"))


def _compact_once(connection: Connection, batch: int) -> int:
    if connection.dialect.name == "postgresql":
        _plan_compaction(connection)
        return int(connection.execute(_COMPACT_PG, {"batch": batch}).scalar_one())
    # SQLite writes one transaction at a time (BEGIN IMMEDIATE): nothing moves meanwhile.
    last = connection.execute(
        select(StatDelta.id).order_by(StatDelta.id).offset(batch - 1).limit(1)
    ).scalar()
    if last is None:
        last = connection.execute(select(func.max(StatDelta.id))).scalar()
        if last is None:
            return 0
    month: ColumnElement[str] = literal_column(_MONTH_SQLITE)
    for model, key, dated in (
        (StatTally, _KEY, StatDelta.day),
        (StatTallyMonth, _MONTH_KEY, month),
    ):
        grouping = (StatDelta.group_by, dated, StatDelta.group_key)
        sums = select(*grouping, *(func.sum(getattr(StatDelta, c)) for c in _COUNTERS))
        table = type_cast(Table, model.__table__)
        insert = sqlite.insert(table).from_select(
            [*key, *_COUNTERS], sums.where(StatDelta.id <= last).group_by(*grouping)
        )
        connection.execute(
            insert.on_conflict_do_update(
                index_elements=list(key),
                set_={c: getattr(table.c, c) + getattr(insert.excluded, c) for c in _COUNTERS},
            )
        )
    return int(connection.execute(delete(StatDelta).where(StatDelta.id <= last)).rowcount)


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


def report(
    session: Session, group_by: GroupBy, granularity: Granularity, period: Period
) -> list[Row]:
    """The report's rows: tallies and unfolded deltas of ``period``, summed per row and group.

    One statement, so one snapshot: a compaction committing meanwhile moves counters from the
    deltas to the tallies without the report counting them twice or not at all.
    """
    spans = buckets(period, granularity)
    parts = [_tally_rows(StatDelta, group_by, period.start, period.end)]
    months = full_months(period) if granularity is Granularity.MONTH else None
    if months is None:
        parts.append(_tally_rows(StatTally, group_by, period.start, period.end))
    else:
        # Whole months from the month tallies (dated their first day, which is their row's
        # first day too), the partial months at either end from the day tallies.
        parts.append(_tally_rows(StatTallyMonth, group_by, months.start, months.end))
        if period.start < months.start:
            before = months.start - dt.timedelta(days=1)
            parts.append(_tally_rows(StatTally, group_by, period.start, before))
        if months.end < period.end:
            after = months.end + dt.timedelta(days=1)
            parts.append(_tally_rows(StatTally, group_by, after, period.end))
    both = union_all(*parts).subquery()
    first: Any = both.c.day
    if granularity is not Granularity.DAY:
        # Latest bucket first: a day falls in the first bucket that starts on or before it.
        first = literal(spans[0][0], Date)
        if len(spans) > 1:
            first = case(
                *(
                    (both.c.day >= literal(start, Date), literal(start, Date))
                    for start, _ in spans[:0:-1]
                ),
                else_=first,
            )
    bucket = first.label("first")
    statement = select(
        bucket,
        both.c.group_key,
        # Sums of BIGINT are NUMERIC on PostgreSQL: back to BIGINT, so rows arrive as ints.
        *(cast(func.sum(getattr(both.c, c)), BigInteger) for c in _COUNTERS),
    ).group_by(bucket, both.c.group_key)
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        # A year of day tallies is 10^4 to 10^5 rows to group: in memory, not sorted on disk.
        connection.execute(text("SET LOCAL work_mem = '64MB'"))
    # Core rows straight from the connection: the ORM's row handling cost more than the query.
    found = connection.execute(statement)
    return report_rows(
        (
            TallySum(
                first=_date(row[0]),
                group_key=row[1],
                checks=row[2],
                items_checked=row[3],
                items_recognizable=row[4],
                accepted=row[5],
                saving_fen=row[6],
                declines=tuple(row[8 : 8 + len(REASON_COLUMNS)]),
                items_recognizable_own=row[8 + len(REASON_COLUMNS)],
                accepted_own=row[9 + len(REASON_COLUMNS)],
                saving_fen_own=row[10 + len(REASON_COLUMNS)],
            )
            for row in found
        ),
        spans,
    )


def _tally_rows(
    model: type[StatTally] | type[StatDelta] | type[StatTallyMonth],
    group_by: GroupBy,
    first: dt.date,
    last: dt.date,
) -> Select[Any]:
    """The rows of ``model`` of one grouping dated from ``first`` to ``last``, as (day, key,
    counters...)."""
    day = model.month if model is StatTallyMonth else model.day  # type: ignore[union-attr]
    return select(
        day.label("day"),
        model.group_key,
        *(getattr(model, c).label(c) for c in _COUNTERS),
    ).where(model.group_by == group_by.value, day >= first, day <= last)


def _date(value: dt.date | str) -> dt.date:
    # SQLite hands a CASE of dates back as text.
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(value)


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


def rebuild(session: Session, *, months: bool = True) -> int:
    """Tally again, from the record of checks and decisions, every day it holds; how many days.

    For an index whose tallies are missing (made before tallies existed) or in doubt. The
    service must not take checks meanwhile: what they append would be wiped with the rest.
    ``months=False`` leaves the month tallies alone, for migration 0009, which runs before
    they exist.
    """
    session.execute(delete(StatDelta))
    session.execute(delete(StatTally))
    if months:
        session.execute(delete(StatTallyMonth))
    first, last = session.execute(
        select(func.min(RecognitionCheck.received_at), func.max(RecognitionCheck.received_at))
    ).one()
    if first is None:
        return 0
    names = directory(session)
    # Migration 0009 runs this at a revision whose tallies lack later counters (0013's
    # own-institution columns): only the columns the table has are written.
    present = {column["name"] for column in inspect(session.connection()).get_columns("stat_tally")}
    days = Period(_day_of(first), _day_of(last)).days()
    for day in days:
        rows = lines_rows(day_lines(session, day), names)
        if rows:
            params = [
                {k: v for k, v in row.items() if k in present}
                for row in delta_params(DayDeltas(day, tuple(rows)))
            ]
            session.execute(StatTally.__table__.insert(), params)  # type: ignore[attr-defined]
    if months:
        fold_months(session)
    return len(days)


def fold_months(session: Session) -> None:
    """Fill the (empty) month tallies from the day tallies."""
    session.execute(text(month_fold_sql(session.get_bind().dialect.name)))


def month_fold_sql(dialect: str) -> str:
    """The statement that fills the month tallies from the day tallies, in ``dialect``'s SQL."""
    month = _MONTH_PG if dialect == "postgresql" else _MONTH_SQLITE
    return (
        f"INSERT INTO stat_tally_month ({', '.join(_MONTH_KEY)}, {', '.join(_COUNTERS)}) "
        f"SELECT group_by, {month}, group_key, "
        f"{', '.join(f'sum({c})' for c in _COUNTERS)} FROM stat_tally "
        f"GROUP BY group_by, {month}, group_key"
    )


def _day_of(instant: dt.datetime) -> dt.date:
    aware = instant if instant.tzinfo else instant.replace(tzinfo=dt.UTC)
    return today(aware)
