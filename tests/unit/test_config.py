"""Settings from the environment: production mode refuses the secrets that suit a laptop only."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from mutualrec.config import ConfigError, load_settings

SHARED = secrets.token_hex(24)


def _env(tmp_path: Path, **values: str) -> dict[str, str]:
    return {"MUTUALREC_DATA_DIR": str(tmp_path), **{f"MUTUALREC_{k}": v for k, v in values.items()}}


def test_without_production_mode_a_secret_is_generated_into_the_data_directory(
    tmp_path: Path,
) -> None:
    settings = load_settings(_env(tmp_path))

    assert not settings.production
    assert settings.patient_key_secret_source == str(tmp_path / "patient-key.secret")
    assert load_settings(_env(tmp_path)).patient_key_secret == settings.patient_key_secret


@pytest.mark.parametrize(
    ("values", "refusal"),
    [
        ({}, "MUTUALREC_PATIENT_KEY_SECRET must be set"),
        (
            {"PATIENT_KEY_SECRET": "p" * 8 + secrets.token_hex(16)},
            "MUTUALREC_TOKEN_SECRET must be set",
        ),
        (
            {"PATIENT_KEY_SECRET": "x" * 40, "TOKEN_SECRET": secrets.token_hex(32)},
            "MUTUALREC_PATIENT_KEY_SECRET looks like a placeholder",
        ),
        (
            {"PATIENT_KEY_SECRET": "changeme" * 5, "TOKEN_SECRET": secrets.token_hex(32)},
            "MUTUALREC_PATIENT_KEY_SECRET looks like a placeholder",
        ),
        ({"PATIENT_KEY_SECRET": SHARED, "TOKEN_SECRET": SHARED}, "must differ"),
    ],
)
def test_production_mode_refuses_missing_placeholder_or_shared_secrets(
    tmp_path: Path, values: dict[str, str], refusal: str
) -> None:
    with pytest.raises(ConfigError, match=refusal):
        load_settings(_env(tmp_path, PRODUCTION="1", **values))

    assert not (tmp_path / "patient-key.secret").exists()


def test_production_mode_starts_with_two_distinct_random_secrets(tmp_path: Path) -> None:
    patient, token = secrets.token_hex(32), secrets.token_urlsafe(32)

    document = secrets.token_hex(32)
    settings = load_settings(
        _env(
            tmp_path,
            PRODUCTION="true",
            PATIENT_KEY_SECRET=patient,
            TOKEN_SECRET=token,
            DOCUMENT_KEY=document,
        )
    )

    assert settings.production
    assert settings.patient_key_secret == patient.encode()
    assert settings.token_secret == token.encode()
    assert not (tmp_path / "patient-key.secret").exists()
    assert settings.document_keys == (bytes.fromhex(document),)
    assert not (tmp_path / "document-key.secret").exists()


def test_production_mode_refuses_to_start_without_a_document_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="MUTUALREC_DOCUMENT_KEY must be set"):
        load_settings(
            _env(
                tmp_path,
                PRODUCTION="true",
                PATIENT_KEY_SECRET=secrets.token_hex(32),
                TOKEN_SECRET=secrets.token_hex(32),
            )
        )


def test_without_a_setting_a_document_key_is_generated_once_into_the_data_directory(
    tmp_path: Path,
) -> None:
    first = load_settings(_env(tmp_path))
    key_file = tmp_path / "document-key.secret"

    assert first.document_key_source == str(key_file)
    assert len(first.document_keys) == 1
    assert len(first.document_keys[0]) == 32
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert load_settings(_env(tmp_path)).document_keys == first.document_keys


def test_a_rolled_document_key_keeps_the_retired_ones_for_reading(tmp_path: Path) -> None:
    new, old = "ab" * 32, "cd" * 32
    settings = load_settings(_env(tmp_path, DOCUMENT_KEY=new, DOCUMENT_KEYS_RETIRED=old))

    assert settings.document_keys == (bytes.fromhex(new), bytes.fromhex(old))
    with pytest.raises(ConfigError, match="64 hexadecimal digits"):
        load_settings(_env(tmp_path, DOCUMENT_KEY="too-short"))


def test_the_clock_skew_is_a_minute_unless_set(tmp_path: Path) -> None:
    assert load_settings(_env(tmp_path)).clock_skew_seconds == 60
    assert load_settings(_env(tmp_path, CLOCK_SKEW_SECONDS="5")).clock_skew_seconds == 5
    with pytest.raises(ConfigError, match="MUTUALREC_CLOCK_SKEW_SECONDS must be at least 0"):
        load_settings(_env(tmp_path, CLOCK_SKEW_SECONDS="-1"))
