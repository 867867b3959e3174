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
