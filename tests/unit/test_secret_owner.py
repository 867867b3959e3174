"""A generated patient-key secret shared by two deployments is noticed at start."""

from __future__ import annotations

from pathlib import Path

from mutualrec.config import load_settings
from mutualrec.secret_owner import shared_secret_warning


def test_a_second_index_on_the_same_secret_file_is_warned_about(tmp_path: Path) -> None:
    data = str(tmp_path / "var")
    embedded = load_settings({"MUTUALREC_DATA_DIR": data})
    postgres = load_settings(
        {
            "MUTUALREC_DATA_DIR": data,
            "MUTUALREC_DATABASE_URL": "postgresql://postgres:hunter2@db.internal/mutualrec",
        }
    )

    assert shared_secret_warning(embedded) is None  # the first start records its index
    assert shared_secret_warning(embedded) is None  # and the same index again is fine
    warning = shared_secret_warning(postgres)

    assert warning is not None
    assert f"{tmp_path}/var/patient-key.secret was first used with the index sqlite:///" in warning
    assert "this server uses postgresql://postgres:***@db.internal/mutualrec" in warning
    assert "hunter2" not in warning
    assert "MUTUALREC_DATA_DIR" in warning
    # The first deployment is still the owner, and a changed password is the same index.
    assert shared_secret_warning(embedded) is None


def test_a_configured_secret_has_no_file_to_share(tmp_path: Path) -> None:
    settings = load_settings(
        {
            "MUTUALREC_DATA_DIR": str(tmp_path / "var"),
            "MUTUALREC_PATIENT_KEY_SECRET": "s" * 16 + "0123456789abcdef",
        }
    )

    assert shared_secret_warning(settings) is None
    # Neither a patient-key secret file nor its deployment marker (the document key is another
    # secret, generated apart).
    assert list((tmp_path / "var").glob("patient-key*")) == []
