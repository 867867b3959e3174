"""The region's policy file loaded with the admin command and applied by CheckOrder, over real
gRPC on SQLite and PostgreSQL. Expected verdicts and reasons written by hand.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pytest

from mutualrec.cli import main
from mutualrec.client.upload import auth_metadata
from mutualrec.v1 import common_pb2, recognition_pb2, recognition_pb2_grpc
from tests.conftest import RunningServer
from tests.fhir_docs import PATIENT_ID, bundle, observation, submit
from tests.helpers import lab_issuer_and_asker

ISSUER = "H500103001"  # tertiary, holds the city-wide lab mark
ASKER = "H500106002"  # secondary, asks
SHANGHAI = dt.timezone(dt.timedelta(hours=8))

Admin = Callable[..., tuple[int, str, str]]


@pytest.fixture
def admin(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Admin:
    """Runs ``mutualrec admin ...`` in this process against the test server's database."""
    settings = server.runtime.settings
    monkeypatch.setenv("MUTUALREC_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("MUTUALREC_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("MUTUALREC_PATIENT_KEY_SECRET", settings.patient_key_secret.decode())

    def run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(["admin", *argv])
        out, err = capsys.readouterr()
        # The server sees the new policy at its next reference refresh; tests do not wait.
        server.runtime.reference.invalidate()
        return code, out, err

    return run


def _fhir_time(moment: dt.datetime) -> str:
    return moment.astimezone(SHANGHAI).replace(microsecond=0).isoformat()


def _setup(server: RunningServer) -> tuple[dict[str, str], dt.datetime, dt.datetime]:
    """A potassium result reported a day ago from a specimen collected eight days ago."""
    keys = lab_issuer_and_asker(server, ISSUER, ASKER)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    issued, collected = now - dt.timedelta(days=1), now - dt.timedelta(days=8)
    potassium = observation("K-1", issued=_fhir_time(issued))
    potassium["effectiveDateTime"] = _fhir_time(collected)
    submit(server.channel, keys[ISSUER], bundle([potassium]))
    return keys, issued, collected


def _check(server: RunningServer, key: str) -> tuple[str, str]:
    stub = recognition_pb2_grpc.RecognitionServiceStub(server.channel)
    response = stub.CheckOrder(
        recognition_pb2.CheckOrderRequest(
            patient=common_pb2.PatientIdentity(
                document_type=common_pb2.RESIDENT_ID_CARD, document_number=PATIENT_ID
            ),
            ordered_codes=["LAB-K"],
            accept_language="en",
        ),
        metadata=auth_metadata(key),
        timeout=30,
    )
    [line] = response.lines
    return recognition_pb2.Verdict.Name(line.verdict), line.reason


def _policy_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "policy.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def _local(moment: dt.datetime) -> str:
    return moment.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")


def test_without_a_loaded_policy_windows_run_from_the_report(server: RunningServer) -> None:
    keys, issued, _ = _setup(server)

    verdict, reason = _check(server, keys[ASKER])

    assert verdict == "RECOGNIZABLE"
    assert reason.endswith(f"valid until {_local(issued + dt.timedelta(days=7))}")


def test_a_collection_anchored_policy_expires_the_result(
    server: RunningServer, admin: Admin, tmp_path: Path
) -> None:
    keys, issued, collected = _setup(server)
    text = '\nversion = "2027.1"\n[categories.lab]\nwindow_anchor = "collection"\n'

    code, out, err = admin("load-policy", _policy_file(tmp_path, text))

    assert (code, err) == (0, "")
    assert out.startswith("policy 2027.1 loaded, in force")
    assert _check(server, keys[ASKER]) == (
        "EXPIRED",
        f"钾 (Potassium) from Hospital {ISSUER}, reported {_local(issued)}, 1 day ago; "
        f"expired {_local(collected + dt.timedelta(days=7))} (valid for 7 days from specimen "
        f"collection {_local(collected)})",
    )


def test_a_same_level_only_policy_is_the_reason_given(
    server: RunningServer, admin: Admin, tmp_path: Path
) -> None:
    keys, issued, _ = _setup(server)
    text = 'version = "2027.2"\n[categories.lab]\nlevel_rule = "same-level-only"\n'

    assert admin("load-policy", _policy_file(tmp_path, text))[0] == 0

    assert _check(server, keys[ASKER]) == (
        "ISSUER_NOT_QUALIFIED",
        f"钾 (Potassium) from Hospital {ISSUER}, reported {_local(issued)}, 1 day ago; by the "
        f"level rule (same-level-only) results of a tertiary institution are not recognized by "
        f"Hospital {ASKER} (secondary)",
    )


def test_a_suspended_qualification_is_not_recognized(
    server: RunningServer, admin: Admin, tmp_path: Path
) -> None:
    keys, issued, _ = _setup(server)
    start = (dt.datetime.now(SHANGHAI) - dt.timedelta(days=2)).date()
    text = (
        'version = "2027.3"\n[[suspensions]]\n'
        f'institution = "{ISSUER}"\ncategory = "lab"\nfrom = {start.isoformat()}\n'
        'reason = "failed external quality assessment"\n'
    )

    assert admin("load-policy", _policy_file(tmp_path, text))[0] == 0

    assert _check(server, keys[ASKER]) == (
        "ISSUER_NOT_QUALIFIED",
        f"钾 (Potassium) from Hospital {ISSUER}, reported {_local(issued)}, 1 day ago; "
        f"Hospital {ISSUER}'s recognition qualification for 钾 is suspended from "
        f"{start.isoformat()} 00:00 (failed external quality assessment)",
    )


def test_policy_files_the_region_cannot_apply_are_refused(
    server: RunningServer, admin: Admin, tmp_path: Path
) -> None:
    keys, _, _ = _setup(server)
    first = 'version = "2027.4"\n[categories.lab]\nlevel_rule = "same-level-only"\n'
    assert admin("load-policy", _policy_file(tmp_path, first))[0] == 0
    assert admin("load-policy", _policy_file(tmp_path, first))[1].startswith(
        "policy 2027.4 was already loaded with this content"
    )

    changed = admin(
        "load-policy",
        _policy_file(tmp_path, first.replace("same-level-only", "higher-accepts-lower")),
    )
    unknown = admin(
        "load-policy",
        _policy_file(
            tmp_path,
            'version = "2027.5"\n[[suspensions]]\ninstitution = "H999"\nitem = "LAB-NOPE"\n'
            'from = 2026-01-01\nreason = "EQA"\n',
        ),
    )

    assert changed[0] == 2
    assert "policy 2027.4 is already recorded with other content" in changed[2]
    assert unknown[0] == 2
    assert "suspensions[0].institution: no institution H999 is registered" in unknown[2]
    assert "suspensions[0].item: catalog 2026.2 has no item LAB-NOPE" in unknown[2]
    # The policy in force is still the first one.
    assert _check(server, keys[ASKER])[0] == "ISSUER_NOT_QUALIFIED"
