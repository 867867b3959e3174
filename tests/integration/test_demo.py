"""`mutualrec demo` against a real server: it shows recognition on any day, and again."""

from __future__ import annotations

import stat
from pathlib import Path

import grpc
import pytest

from mutualrec.cli.demo import DemoError, run_demo
from mutualrec.client.upload import auth_metadata
from mutualrec.services.demo_region import DemoRegion
from mutualrec.v1 import imaging_pb2, imaging_pb2_grpc
from tests.conftest import SAMPLES, RunningServer


def test_the_demo_recognizes_a_ct_and_a_lab_item_and_runs_again(
    server: RunningServer, tmp_path: Path
) -> None:
    said: list[str] = []
    data_dir = tmp_path / "data"

    first = run_demo(
        server.channel,
        DemoRegion(server.runtime.sessions),
        data_dir,
        SAMPLES,
        server.address,
        said.append,
    )
    again = run_demo(
        server.channel,
        DemoRegion(server.runtime.sessions),
        data_dir,
        SAMPLES,
        server.address,
        said.append,
    )

    out = "\n".join(said)
    assert "IMG-CT-CHEST     RECOGNIZABLE          H500103001  200.00" in out
    assert "LAB-K            RECOGNIZABLE          H500103001    4.00" in out
    assert "IMG-DX-CHEST-PA  ISSUER_NOT_QUALIFIED  H500112003" in out
    assert "doctor's decision on IMG-CT-CHEST: accepted, 200.00 yuan" in out
    assert "2 series, 12 images" in out
    # The second run sends the same studies and results: nothing new is stored.
    assert out.count("stored 12 instances") == 1
    assert out.count("already held") == 5
    assert "created 0, unchanged 2" in out
    assert first.study_uid == again.study_uid
    assert len(set(first.checks + again.checks)) == 4
    # Its keys are for its user only, and work: the regulator's reads the report.
    env = first.env_file.read_text()
    assert stat.S_IMODE(first.env_file.stat().st_mode) == 0o600
    assert f"export DEMO_CT_URL=mutualrec://study/{first.study_uid}" in env
    key = next(line for line in env.splitlines() if "SHAPINGBA_KEY" in line).split("=", 1)[1]
    opened = imaging_pb2_grpc.ImagingServiceStub(server.channel).GetStudy(
        imaging_pb2.GetStudyRequest(study_instance_uid=first.study_uid),
        metadata=auth_metadata(key.strip("'")),
    )
    assert opened.study.institution_code == "H500103001"


def test_no_server_is_said_plainly(server: RunningServer, tmp_path: Path) -> None:
    with grpc.insecure_channel("127.0.0.1:1") as nowhere, pytest.raises(DemoError, match="serve"):
        run_demo(nowhere, DemoRegion(server.runtime.sessions), tmp_path, SAMPLES, "127.0.0.1:1")
