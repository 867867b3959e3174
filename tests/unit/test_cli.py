"""The `mutualrec` command line as a new user meets it: help, arguments, the forms it prints."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mutualrec.cli import build_parser, main
from mutualrec.client.dates import region_today, report_date
from mutualrec.client.links import credential, study_uid
from mutualrec.client.table import RIGHT, display_width, render

MUTUALREC = str(Path(sys.executable).parent / "mutualrec")
CONFIG = Path(__file__).resolve().parents[2] / "mutualrec" / "config.py"


def _commands(
    parser: argparse.ArgumentParser, path: str = ""
) -> list[tuple[str, argparse.ArgumentParser]]:
    """Every (sub)command under ``parser``, as ("admin issue-key", its parser)."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                full = f"{path} {name}".strip()
                found.append((full, sub))
                found.extend(_commands(sub, full))
    return found


def test_every_command_has_a_description_and_an_example() -> None:
    commands = _commands(build_parser())

    assert len(commands) > 30
    for name, parser in commands:
        assert parser.description, name
        assert "\n" not in parser.description, name
        assert parser.epilog, name
        assert parser.epilog.startswith("example:\n  "), name
        assert "mutualrec " in parser.epilog, name
        assert "example:" in parser.format_help(), name


def test_serve_help_lists_every_setting_the_server_reads(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The names config.py reads, found in its source: a new setting must reach --help.
    source = CONFIG.read_text()
    names = set(re.findall(r'PREFIX \+ "([A-Z0-9_]+)"', source))
    names |= set(re.findall(r'_(?:bool|number)\(env, "([A-Z0-9_]+)"', source))
    names |= {"TLS_CERT", "TLS_KEY", "TLS_CLIENT_CA"}
    assert {"LISTEN", "DATA_DIR", "RATE_LIMIT"} <= names

    with pytest.raises(SystemExit):
        main(["serve", "--help"])

    shown = capsys.readouterr().out
    for name in names:
        assert f"MUTUALREC_{name} " in shown, name


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])

    assert exited.value.code == 0
    assert capsys.readouterr().out == "mutualrec 0.1.0\n"


def test_check_lists_its_identity_document_types(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["check", "--help"])

    assert "{RESIDENT_ID_CARD,PASSPORT,E_HEALTH_CARD," in capsys.readouterr().out
    with pytest.raises(SystemExit) as exited:
        main(["check", "--patient-id", "1", "--id-type", "DRIVING_LICENCE", "LAB-K"])
    assert exited.value.code == 2


def test_decide_reasons_have_no_empty_choice(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["decide", "--help"])

    shown = capsys.readouterr().out
    assert "{condition-changed,fast-changing-value," in shown
    assert "{," not in shown
    assert ",}" not in shown


@pytest.mark.parametrize("server", ["127.0.0.1", "localhost:", ":50051", "host:http", "h:70000"])
def test_a_server_without_a_port_is_an_error(
    server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["check", "--server", server, "--patient-id", "1", "LAB-K"])

    assert exited.value.code == 2
    assert "--server" in capsys.readouterr().err


@pytest.mark.parametrize("server", ["127.0.0.1:50051", "[::1]:50051", "mutualrec.internal:443"])
def test_host_and_port_are_accepted(server: str) -> None:
    args = build_parser().parse_args(["check", "--server", server, "--patient-id", "1", "X"])

    assert args.server == server


def test_the_printed_forms_are_read_back() -> None:
    assert credential("mutualrec://share/mrs_abc-DEF_1") == "mrs_abc-DEF_1"
    assert credential("  mrs_abc\n") == "mrs_abc"
    assert credential("eyJhbGciOi.x.y") == "eyJhbGciOi.x.y"
    assert study_uid("mutualrec://study/1.2.826.0.1") == "1.2.826.0.1"
    assert study_uid("1.2.826.0.1") == "1.2.826.0.1"


def test_display_width_counts_wide_characters_twice() -> None:
    assert display_width("LAB-K") == 5
    assert display_width("重庆市渝中区示例人民医院") == 24
    assert display_width("渝中 → Jiangbei") == 15
    assert display_width("e\u0301") == 1  # e and a combining acute accent


def test_tables_align_with_chinese_names_and_long_codes() -> None:
    lines = render(
        ("group", "saving"),
        [("重庆市渝中区示例人民医院 → 沙坪坝区示例综合医院", "204.00"), ("H500112003", "0.00")],
        ("<", RIGHT),
    )

    # The name is 47 columns wide: 22 wide characters and " → ".
    assert lines == [
        "group" + " " * 44 + "saving",
        "重庆市渝中区示例人民医院 → 沙坪坝区示例综合医院  204.00",
        "H500112003" + " " * 41 + "0.00",
    ]
    assert len({display_width(line) for line in lines}) == 1


def test_report_dates_count_back_from_today() -> None:
    today = dt.date(2026, 3, 1)

    assert report_date("today", today) == "2026-03-01"
    assert report_date("today-30", today) == "2026-01-30"
    assert report_date("TODAY - 1", today) == "2026-02-28"
    assert report_date("2025-12-31", today) == "2025-12-31"
    assert report_date("yesterday", today) == "yesterday"  # the server's field violation says why


def test_today_is_the_regions_day() -> None:
    # 17:30 UTC is already the next day in Asia/Shanghai (UTC+8).
    assert region_today(dt.datetime(2026, 3, 1, 17, 30, tzinfo=dt.UTC)) == dt.date(2026, 3, 2)


def test_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    # `mutualrec audit ... | head`: the reader is gone before the command writes.
    read_end, write_end = os.pipe()
    os.close(read_end)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MUTUALREC_")}
    env["MUTUALREC_DATA_DIR"] = str(tmp_path / "var")
    try:
        ran = subprocess.run(
            [MUTUALREC, "audit", "--verify"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write_end)

    assert "Traceback" not in ran.stderr
    assert "BrokenPipeError" not in ran.stderr
    assert ran.returncode == 141
