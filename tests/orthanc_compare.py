"""Run inside a loopback-only network namespace (``unshare --net``): hold the sample studies in
mutualrec and in Orthanc's DICOMweb plugin, ask both the same QIDO-RS searches and WADO-RS
metadata, and write both answers to a JSON file for tests/integration/test_dicomweb_orthanc.py
to compare. Usage: ``python tests/orthanc_compare.py WORKDIR OUTPUT.json``."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402

from bench.orthanc_dicomweb import OrthancDicomWeb, in_loopback_namespace  # noqa: E402
from tests.dicomweb_region import LI, WANG, ZHANG, region_on  # noqa: E402
from tests.helpers import study_files  # noqa: E402


class _OnSqlite:
    """What region_on reads of a pytest request."""

    param = "sqlite"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _queries(studies: list[str], accession: str) -> list[tuple[str, dict[str, str]]]:
    queries: list[tuple[str, dict[str, str]]] = [
        ("/studies", {}),
        ("/studies", {"ModalitiesInStudy": "CT"}),
        ("/studies", {"StudyDate": "20240401-20240510"}),
        ("/studies", {"AccessionNumber": accession}),
        ("/studies", {"StudyInstanceUID": ",".join(studies)}),
        ("/series", {"Modality": "CT"}),
        ("/series", {}),
    ]
    for uid in studies:
        queries += [
            (f"/studies/{uid}/series", {}),
            (f"/studies/{uid}/instances", {}),
            (f"/studies/{uid}/metadata", {}),
        ]
    return queries


def main(workdir: Path, output: Path) -> None:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True, timeout=30)
    if not in_loopback_namespace():
        raise SystemExit("not in a loopback-only network namespace")
    region_dir = workdir / "mutualrec"
    region_dir.mkdir(parents=True, exist_ok=True)
    regions = region_on(_OnSqlite(), region_dir)  # type: ignore[arg-type]
    region = next(regions)
    orthanc = OrthancDicomWeb(workdir / "orthanc", _free_port())
    try:
        for sample in region.manifest.values():
            for path in study_files(sample):
                orthanc.store(path.read_bytes())
        for data in region.jpeg_files.values():
            orthanc.store(data)
        answers: list[dict[str, Any]] = []
        for patient in (ZHANG, WANG, LI):
            token = region.token(patient)
            studies = sorted(region.studies_of(patient))
            if patient == ZHANG:
                studies.append(region.jpeg_study)
            accession = next(iter(region.studies_of(patient).values()))["accession_number"]
            for path, params in _queries(studies, accession):
                ours = httpx.get(
                    region.url + path,
                    params=params,
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=60,
                )
                theirs = httpx.get(orthanc.url + "/dicom-web" + path, params=params, timeout=60)
                answers.append(
                    {
                        "patient": patient,
                        "studies": studies,
                        "path": path,
                        "params": params,
                        # 204 (no match, PS3.18 8.3.4.4.1) has no content.
                        "mutualrec": [ours.status_code, ours.json() if ours.content else None],
                        "orthanc": [theirs.status_code, theirs.json() if theirs.content else None],
                    }
                )
        output.write_text(
            json.dumps({"orthanc_version": orthanc.version, "answers": answers}), encoding="utf-8"
        )
    finally:
        orthanc.stop()
        regions.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
