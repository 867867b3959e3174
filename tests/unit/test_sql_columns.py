"""storage.sql's column lists: what the raw statements are built from, read off the models."""

from __future__ import annotations

import pytest

from mutualrec.storage.models import CheckLine, Decision, LabResultVersion, Study
from mutualrec.storage.sql import column_names, key_names, postgres_types


def test_columns_come_in_the_tables_order_less_those_omitted() -> None:
    names = column_names(Decision, omit=("check_id",))
    assert names == ("line", "accepted", "reason", "reason_text", "booked_saving", "decided_at")


def test_omitting_a_column_the_table_lacks_is_refused() -> None:
    with pytest.raises(ValueError, match="no column identity"):
        column_names(LabResultVersion, omit=("identity",))


def test_key_names_are_the_primary_key_in_order() -> None:
    assert key_names(CheckLine) == ("check_id", "line")


def test_postgres_type_names_follow_the_column_types() -> None:
    names = ("id", "study_date", "started_at", "created_at", "series_count", "description")
    assert postgres_types(Study, names) == (
        "int8",
        "date",
        "timestamp",
        "timestamptz",
        "int4",
        "text",
    )
    assert postgres_types(Decision, ("accepted",)) == ("bool",)
