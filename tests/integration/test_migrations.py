"""The migrations build exactly the schema the models describe, and carry old data forward."""

from __future__ import annotations

import datetime as dt

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Date, DateTime, Time, bindparam, text

from mutualrec.storage.db import make_engine, upgrade
from mutualrec.storage.models import Base


def test_the_migrated_schema_matches_the_models(database_url: str) -> None:
    engine = make_engine(database_url)
    upgrade(engine)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert differences == []


def test_0006_fills_the_sort_key_and_counts_of_studies_already_held(database_url: str) -> None:
    engine = make_engine(database_url)
    upgrade(engine, "0005")
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO institution (id, code, name, district, level, created_at) "
                "VALUES (1, 'H1', 'Hospital', 'Yuzhong', 'tertiary', :now)"
            ),
            {"now": now},
        )
        connection.execute(
            text("INSERT INTO patient (patient_key, created_at) VALUES ('p', :now)"),
            {"now": now},
        )
        for study_id, time in ((1, dt.time(21, 37, 44, 123000)), (2, None)):
            connection.execute(
                text(
                    "INSERT INTO study (id, study_instance_uid, patient_key, institution_id, "
                    "accession_number, study_date, study_time, description, "
                    "performed_item_code, created_at) VALUES (:id, :uid, 'p', 1, 'A', "
                    ":date, :time, '', '', :now)"
                ).bindparams(
                    # As the models store them on each database (ISO text on SQLite).
                    bindparam("date", type_=Date),
                    bindparam("time", type_=Time),
                    bindparam("now", type_=DateTime(timezone=True)),
                ),
                {
                    "id": study_id,
                    "uid": f"1.2.{study_id}",
                    "date": dt.date(2024, 5, 6),
                    "time": time,
                    "now": now,
                },
            )
        for series_id in (1, 2):
            connection.execute(
                text(
                    "INSERT INTO series (id, study_id, series_instance_uid, modality, "
                    "body_part_examined, body_part, contrast_agent, contrast, series_number, "
                    "description, created_at) VALUES (:id, 1, :uid, 'CT', '', '', '', false, "
                    "NULL, '', :now)"
                ),
                {"id": series_id, "uid": f"1.3.{series_id}", "now": now},
            )
        # Two instances in series 1, the second held in two versions (10 then 30 bytes), and
        # one in series 2: three current instances of 5 + 30 + 7 bytes.
        for row_id, series_id, sop, version, size in (
            (1, 1, "1.4.1", 1, 5),
            (2, 1, "1.4.2", 1, 10),
            (3, 1, "1.4.2", 2, 30),
            (4, 2, "1.4.3", 1, 7),
        ):
            connection.execute(
                text(
                    "INSERT INTO instance (id, series_id, sop_instance_uid, version, "
                    "sop_class_uid, instance_number, transfer_syntax_uid, size_bytes, sha256, "
                    "object_key, institution_id, received_at) VALUES (:id, :series, :sop, "
                    ":version, '1.2', NULL, '1.2.840.10008.1.2.1', :size, :sha, :key, 1, :now)"
                ),
                {
                    "id": row_id,
                    "series": series_id,
                    "sop": sop,
                    "version": version,
                    "size": size,
                    "sha": f"{row_id:064d}",
                    "key": f"k/{row_id}",
                    "now": now,
                },
            )
    upgrade(engine)
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT id, started_at, series_count, instance_count, size_bytes FROM study "
                "ORDER BY id"
            )
        ).all()
    engine.dispose()
    started = [
        value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(value)
        for value in (rows[0][1], rows[1][1])
    ]
    assert started == [dt.datetime(2024, 5, 6, 21, 37, 44, 123000), dt.datetime(2024, 5, 6)]
    assert [tuple(row[2:]) for row in rows] == [(2, 3, 42), (0, 0, 0)]


def test_0008_tallies_the_checks_and_decisions_already_recorded(database_url: str) -> None:
    engine = make_engine(database_url)
    upgrade(engine, "0007")
    stamp = bindparam("at", type_=DateTime(timezone=True))
    # 2026-03-01 23:30 in Shanghai is still 15:30 UTC of that day; 2026-03-02 00:30 Shanghai is
    # 16:30 UTC of March 1st, yet a check of March 2nd.
    late_evening = dt.datetime(2026, 3, 1, 15, 30, tzinfo=dt.UTC)
    past_midnight = dt.datetime(2026, 3, 1, 16, 30, tzinfo=dt.UTC)
    with engine.begin() as connection:
        for row_id, code, district in ((1, "H1", "Yuzhong"), (2, "H2", "Jiangbei")):
            connection.execute(
                text(
                    "INSERT INTO institution (id, code, name, district, level, created_at) "
                    "VALUES (:id, :code, :code, :district, 'tertiary', :at)"
                ).bindparams(stamp),
                {"id": row_id, "code": code, "district": district, "at": late_evening},
            )
        for check_id, asker, at in (("c1", 1, late_evening), ("c2", 1, past_midnight)):
            connection.execute(
                text(
                    "INSERT INTO recognition_check (id, institution_id, patient_key, received_at, "
                    "catalog_version, order_id, department, emergency) "
                    "VALUES (:id, :asker, 'p', :at, '2026.1', '', '', false)"
                ).bindparams(stamp),
                {"id": check_id, "asker": asker, "at": at},
            )
        # c1: LAB-K recognizable (issued by H2) and IMG-CT-CHEST with no result; c2: LAB-K.
        for check_id, line, item, verdict, issuer in (
            ("c1", 0, "LAB-K", "RECOGNIZABLE", 2),
            ("c1", 1, "IMG-CT-CHEST", "NO_RESULT", None),
            ("c2", 0, "LAB-K", "RECOGNIZABLE", 2),
        ):
            connection.execute(
                text(
                    "INSERT INTO check_line (check_id, line, ordered_code, item_code, verdict, "
                    "reason, result_ref, result_version, issuer_institution_id, "
                    "estimated_saving) VALUES (:check, :line, :item, :item, :verdict, '', '', "
                    "0, :issuer, '4.00')"
                ),
                {
                    "check": check_id,
                    "line": line,
                    "item": item,
                    "verdict": verdict,
                    "issuer": issuer,
                },
            )
        for check_id, accepted, reason, saving in (
            ("c1", True, "", "4.00"),
            ("c2", False, "EMERGENCY", "0.00"),
        ):
            connection.execute(
                text(
                    "INSERT INTO decision (check_id, line, accepted, reason, reason_text, "
                    "booked_saving, decided_at) VALUES (:check, 0, :accepted, :reason, '', "
                    ":saving, :at)"
                ).bindparams(stamp),
                {
                    "check": check_id,
                    "accepted": accepted,
                    "reason": reason,
                    "saving": saving,
                    "at": past_midnight,
                },
            )
    upgrade(engine)
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT group_by, day, group_key, checks, items_checked, items_recognizable, "
                "accepted, saving_fen, declined, declined_emergency FROM stat_tally "
                "WHERE group_by IN ('district', 'category', 'issuer_asker_pair') "
                "ORDER BY group_by, day, group_key"
            )
        ).all()
    engine.dispose()
    # 0008 tallies the record (a row per decline reason), 0009 pivots the reasons into columns.
    got = [(row[0], str(row[1]), *row[2:]) for row in rows]
    assert got == [
        ("category", "2026-03-01", "imaging", 1, 1, 0, 0, 0, 0, 0),
        ("category", "2026-03-01", "lab", 1, 1, 1, 1, 400, 0, 0),
        ("category", "2026-03-02", "lab", 1, 1, 1, 0, 0, 1, 1),
        ("district", "2026-03-01", "Yuzhong", 1, 2, 1, 1, 400, 0, 0),
        ("district", "2026-03-02", "Yuzhong", 1, 1, 1, 0, 0, 1, 1),
        ("issuer_asker_pair", "2026-03-01", ">H1", 1, 1, 0, 0, 0, 0, 0),
        ("issuer_asker_pair", "2026-03-01", "H2>H1", 1, 1, 1, 1, 400, 0, 0),
        ("issuer_asker_pair", "2026-03-02", "H2>H1", 1, 1, 1, 0, 0, 1, 1),
    ]
