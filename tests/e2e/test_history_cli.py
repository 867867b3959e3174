"""End to end: a patient's history, thumbnails, download and share links through the CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.conftest import SAMPLES
from tests.e2e.test_serve import ServeProcess, _register, _spawn

pytestmark = pytest.mark.e2e


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[ServeProcess]:
    """The service on its embedded defaults, in an empty folder."""
    yield from _spawn(tmp_path, {})


def test_history_thumbnails_download_and_share_through_the_cli(
    embedded: ServeProcess, tmp_path: Path, manifest: dict[str, Any]
) -> None:
    for name in ("ct_chest_contrast_hosp_a", "dx_chest_2v_hosp_c"):
        study = manifest[name]
        key = _register(embedded, study["institution_code"])
        uploaded = embedded.cli(
            "upload",
            "--key",
            key,
            "--patient-id",
            study["patient"]["document_number"],
            str(SAMPLES / name),
        )
        assert uploaded.returncode == 0, uploaded.stderr
    patient = manifest["ct_chest_contrast_hosp_a"]["patient"]["document_number"]
    minted = embedded.cli("admin", "patient-token", "--patient-id", patient, "--ttl", "600")
    assert minted.returncode == 0, minted.stderr
    token = minted.stdout.strip()

    listed = embedded.cli(
        "history", "--token", token, "--json", "--thumbnails", str(tmp_path / "thumbs")
    )
    assert listed.returncode == 0, listed.stderr
    studies = json.loads(listed.stdout)
    chest = manifest["ct_chest_contrast_hosp_a"]["study_instance_uid"]
    films = manifest["dx_chest_2v_hosp_c"]["study_instance_uid"]
    assert [s["study_instance_uid"] for s in studies] == [chest, films]
    pngs = sorted((tmp_path / "thumbs").rglob("*.png"))
    series_count = sum(
        manifest[n]["series_count"] for n in ("ct_chest_contrast_hosp_a", "dx_chest_2v_hosp_c")
    )
    assert len(pngs) == series_count
    assert all(Image.open(p).format == "PNG" for p in pngs)
    readable = embedded.cli("history", "--token", token, "--modality", "DX")
    assert films in readable.stdout
    assert chest not in readable.stdout

    shared = embedded.cli("share", "--token", token, chest, "--days", "2", "--note", "Dr Li")
    assert shared.returncode == 0, shared.stderr
    share_token = shared.stdout.strip().removeprefix("mutualrec://share/")
    saved = embedded.cli("download", "--token", share_token, "--out", str(tmp_path / "dl"))
    assert saved.returncode == 0, saved.stderr
    files = sorted((tmp_path / "dl").rglob("*.dcm"))
    originals = {
        f["sop_instance_uid"]: (SAMPLES / f["path"]).read_bytes()
        for f in manifest["ct_chest_contrast_hosp_a"]["files"]
    }
    assert {p.stem: p.read_bytes() for p in files} == originals

    links = embedded.cli("share-links", "--token", token, "--json")
    assert links.returncode == 0, links.stderr
    (link,) = json.loads(links.stdout)["links"]
    assert link["opening_count"] == 1
    assert link["openings"][0]["rpc"] == "DownloadStudy"
    revoked = embedded.cli("revoke-share", "--token", token, link["link_id"])
    assert revoked.returncode == 0, revoked.stderr
    refused = embedded.cli("download", "--token", share_token, "--out", str(tmp_path / "again"))
    assert refused.returncode == 2
    assert "UNAUTHENTICATED" in refused.stderr

    bad = embedded.cli("history", "--token", token, "--from", "2024/01/01")
    assert bad.returncode == 2
    assert "from_date" in bad.stderr

    # Every blob written above (instances, thumbnails) is referenced: the sweep keeps them all.
    swept = embedded.cli("admin", "sweep", "--grace-minutes", "0")
    assert swept.returncode == 0, swept.stderr
    assert ", removed 0 (0 bytes)" in swept.stdout
    kept = embedded.cli("download", "--token", token, chest, "--out", str(tmp_path / "kept"))
    assert kept.returncode == 0, kept.stderr

    # The audit trail names every call above that touched the patient's data, and holds.
    audit = embedded.cli("audit", "--patient-id", patient, "--json")
    assert audit.returncode == 0, audit.stderr
    rpcs = {entry["rpc"] for entry in json.loads(audit.stdout)}
    assert {
        "IngestService/UploadStudy",
        "ImagingService/ListStudies",
        "ImagingService/GetThumbnail",
        "ImagingService/DownloadStudy",
        "ImagingService/CreateShareLink",
        "ImagingService/RevokeShareLink",
    } <= rpcs
    verified = embedded.cli("audit", "--verify")
    assert verified.returncode == 0, verified.stdout
    assert ", 0 problems" in verified.stdout
