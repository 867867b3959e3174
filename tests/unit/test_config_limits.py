"""The availability limits' settings: defaults that follow the settings they derive from."""

from __future__ import annotations

from pathlib import Path

from mutualrec.config import MIB, load_settings


def _env(tmp_path: Path, **values: str) -> dict[str, str]:
    return {"MUTUALREC_DATA_DIR": str(tmp_path), **{f"MUTUALREC_{k}": v for k, v in values.items()}}


def test_the_defaults(tmp_path: Path) -> None:
    settings = load_settings(_env(tmp_path))

    assert settings.max_calls_per_peer == 250
    assert settings.request_timeout_seconds == 10
    assert (settings.auth_failure_rate, settings.auth_failure_burst) == (20, 40)
    assert settings.max_streams_per_connection == 100
    assert settings.max_inflated_bytes == 1024 * MIB
    assert settings.max_inflate_ratio == 200
    assert settings.max_dicom_elements == 250_000
    assert settings.header_workers == 2


def test_per_address_limits_follow_the_server_and_credential_limits(tmp_path: Path) -> None:
    settings = load_settings(_env(tmp_path, MAX_CONCURRENT_CALLS="100", RATE_LIMIT="0"))

    assert settings.max_calls_per_peer == 25
    # No call rate, no failed-authentication rate either.
    assert settings.auth_failure_rate == 0


def test_each_limit_can_be_set(tmp_path: Path) -> None:
    settings = load_settings(
        _env(
            tmp_path,
            MAX_CALLS_PER_PEER="7",
            AUTH_FAILURE_RATE="3",
            MAX_INFLATED_MIB="64",
            MAX_INFLATE_RATIO="50",
            MAX_DICOM_ELEMENTS="1000",
            HEADER_WORKERS="4",
        )
    )

    assert settings.max_calls_per_peer == 7
    assert (settings.auth_failure_rate, settings.auth_failure_burst) == (3, 6)
    assert settings.max_inflated_bytes == 64 * MIB
    assert settings.max_inflate_ratio == 50
    assert settings.max_dicom_elements == 1000
    assert settings.header_workers == 4
