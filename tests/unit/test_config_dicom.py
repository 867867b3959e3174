"""The DICOM door's settings: off unless asked for, host:port and an AE title checked at start."""

from __future__ import annotations

from pathlib import Path

import pytest

from mutualrec.config import ConfigError, load_settings


def _env(tmp_path: Path, **values: str) -> dict[str, str]:
    return {"MUTUALREC_DATA_DIR": str(tmp_path), **{f"MUTUALREC_{k}": v for k, v in values.items()}}


def test_no_listener_by_default(tmp_path: Path) -> None:
    settings = load_settings(_env(tmp_path))
    assert settings.dicom_listen is None
    assert settings.dicom_ae_title == "MUTUALREC"


def test_listen_address_and_title(tmp_path: Path) -> None:
    settings = load_settings(
        _env(tmp_path, DICOM_LISTEN="0.0.0.0:11112", DICOM_AE_TITLE=" CQ_ARCHIVE ")
    )
    assert settings.dicom_listen == ("0.0.0.0", 11112)
    assert settings.dicom_ae_title == "CQ_ARCHIVE"
    assert load_settings(_env(tmp_path, DICOM_LISTEN="[::1]:104")).dicom_listen == ("::1", 104)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DICOM_LISTEN", "11112"),
        ("DICOM_LISTEN", "localhost:port"),
        ("DICOM_LISTEN", "localhost:70000"),
        ("DICOM_AE_TITLE", "A_TITLE_OF_SEVENTEEN"),
        ("DICOM_AE_TITLE", "BACK\\SLASH"),
        ("DICOM_AE_TITLE", "档案"),
    ],
)
def test_unusable_values_stop_the_start(tmp_path: Path, name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"MUTUALREC_{name}"):
        load_settings(_env(tmp_path, **{name: value}))
