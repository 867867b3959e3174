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

    settings = load_settings(
        _env(tmp_path, PRODUCTION="true", PATIENT_KEY_SECRET=patient, TOKEN_SECRET=token)
    )

    assert settings.production
    assert settings.patient_key_secret == patient.encode()
    assert settings.token_secret == token.encode()
    assert not (tmp_path / "patient-key.secret").exists()


def test_the_clock_skew_is_a_minute_unless_set(tmp_path: Path) -> None:
    assert load_settings(_env(tmp_path)).clock_skew_seconds == 60
    assert load_settings(_env(tmp_path, CLOCK_SKEW_SECONDS="5")).clock_skew_seconds == 5
    with pytest.raises(ConfigError, match="MUTUALREC_CLOCK_SKEW_SECONDS must be at least 0"):
        load_settings(_env(tmp_path, CLOCK_SKEW_SECONDS="-1"))
