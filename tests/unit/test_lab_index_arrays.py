"""lab_index.text_array: the array literals bound in place of Python lists on PostgreSQL."""

from __future__ import annotations

from sqlalchemy import create_engine, text

from mutualrec.storage.lab_index import text_array

AWKWARD = [
    "identifier|urn:mutualrec:lis:H500103001|R1-1",
    'R"1',
    "back\\slash",
    '\\"',
    "a,b",
    "{braces}",
    "NULL",
    "null",
    "",
    " leading and trailing ",
    "tab\there",
    "line\nbreak",
    "钾 mmol/L",
    "'single'",
    "\\",
    '"',
]


def test_literal_shape() -> None:
    assert text_array([]) == "{}"
    assert text_array(["a", 'b"c', "d\\e"]) == '{"a","b\\"c","d\\\\e"}'


def test_postgresql_reads_back_every_value(postgres_admin_url: str) -> None:
    engine = create_engine(postgres_admin_url)
    try:
        with engine.connect() as connection:
            back = connection.execute(
                text("SELECT CAST(:values AS text[])"), {"values": text_array(AWKWARD)}
            ).scalar_one()
            empty = connection.execute(
                text("SELECT cardinality(CAST(:values AS text[]))"), {"values": text_array([])}
            ).scalar_one()
    finally:
        engine.dispose()
    assert back == AWKWARD
    assert empty == 0
