"""`mutualrec demo`: load a region that shows what mutual recognition does, into a running server.

Administration (institutions, qualifications, keys) goes straight to the index named by the
settings, through the administration services as `mutualrec admin` does; everything else goes
through the server like a hospital's systems would: the sample studies dated a few days ago, a
LIS's lab results, two ordering-time checks with the doctors' decisions, and a hospital opening
another's CT. All administration is
done before the first call, so a server that has not cached reference data yet sees it at once.
Its keys are written to ``$MUTUALREC_DATA_DIR/demo.env`` for the commands it suggests next.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from mutualrec.client.dates import region_today
from mutualrec.client.demo_data import (
    DAYS_AGO,
    HOSPITALS,
    QUALIFIED_FROM,
    accession_number,
    demo_uid,
    lab_bundle,
    redate_instance,
)
from mutualrec.client.fhir import submit_document
from mutualrec.client.links import STUDY_PREFIX
from mutualrec.client.recognition import check_order, check_report, record_decision
from mutualrec.client.upload import auth_metadata, make_header, upload_study
from mutualrec.services.demo_region import DemoHospital, DemoRegion
from mutualrec.v1 import imaging_pb2, imaging_pb2_grpc, recognition_pb2

# Who asks, about whom, for what; then what the doctor decides on the recognizable lines.
ZHANG_WEI = "50010319680315109X"
LI_XIULAN = "500106195511021028"
ASKER = "H500106002"  # Shapingba: asks about Zhang Wei, whose CT was done in Yuzhong.
CHECKS = (
    (
        ASKER,
        ZHANG_WEI,
        ("IMG-CT-CHEST", "LAB-K", "LAB-GLU", "IMG-DX-CHEST-PA", "LAB-CBC"),
        {"IMG-CT-CHEST": "", "LAB-K": "", "LAB-GLU": "fast-changing-value"},
    ),
    (
        "H500103001",
        LI_XIULAN,
        ("IMG-CT-HEAD", "IMG-MR-BRAIN"),
        {"IMG-CT-HEAD": "", "IMG-MR-BRAIN": "condition-changed"},
    ),
)
SHOWCASE_STUDY = "ct_chest_contrast_hosp_a"


class DemoError(Exception):
    """The demo cannot go on; the message says what to do."""


@dataclass
class DemoResult:
    """What the demo made, for the commands it suggests."""

    env_file: Path
    study_uid: str
    checks: list[str]


def default_samples() -> Path:
    """``./dicom_samples`` when there is one, else the samples beside this checkout's code."""
    here = Path("dicom_samples")
    if (here / "manifest.json").is_file():
        return here
    return Path(__file__).resolve().parents[2] / "dicom_samples"


def _upload_samples(
    channel: grpc.Channel,
    keys: dict[str, str],
    samples: Path,
    manifest: dict[str, Any],
    workdir: Path,
    today: dt.date,
    say: Callable[[str], None],
) -> dict[str, str]:
    """Each sample study dated DAYS_AGO before ``today``; their StudyInstanceUIDs by name."""
    uids = {}
    for name, days in DAYS_AGO.items():
        study = manifest[name]
        day = today - dt.timedelta(days=days)
        folder = workdir / day.strftime("%Y%m%d") / name
        folder.mkdir(parents=True, exist_ok=True)
        files = []
        for entry in study["files"]:
            target = folder / Path(entry["path"]).name
            if not target.exists():
                target.write_bytes(redate_instance((samples / entry["path"]).read_bytes(), day))
            files.append(target)
        header = make_header(
            study["patient"]["document_number"],
            study["patient"]["document_type"],
            accession_number=accession_number(study["accession_number"], day),
            performed_item_code=study["performed_item_code"],
        )
        response = upload_study(channel, keys[study["institution_code"]], header, files)
        counts = response.counts
        if counts.rejected:
            reasons = {i.reason for i in response.instances if i.reason}
            raise DemoError(f"the server rejected {name}: {'; '.join(sorted(reasons))}")
        uids[name] = demo_uid(study["study_instance_uid"], day)
        state = "already held" if counts.stored == 0 else f"stored {counts.stored} instances"
        say(
            f"  {study['institution_code']} {study['performed_item_code']:<16} "
            f"dated {day.isoformat()} ({days} days ago): {state}"
        )
    return uids


def run_demo(
    channel: grpc.Channel,
    region: DemoRegion,
    data_dir: Path,
    samples: Path,
    server: str,
    say: Callable[[str], None] = print,
    now: dt.datetime | None = None,
) -> DemoResult:
    """Load the demo through ``channel`` (administration through ``region``)."""
    manifest_path = samples / "manifest.json"
    if not manifest_path.is_file():
        raise DemoError(f"no sample studies at {samples}: give --samples DIR (dicom_samples/)")
    manifest: dict[str, Any] = json.loads(manifest_path.read_text())["studies"]
    try:
        grpc.channel_ready_future(channel).result(timeout=5)
    except grpc.FutureTimeoutError:
        raise DemoError(
            f"no server answers at {server}: start one first, in another terminal "
            "(`make serve` or `mutualrec serve`), from this folder"
        ) from None
    today = region_today(now)
    names = {s["institution_code"]: s["institution_name_zh"] for s in manifest.values()}
    say("institutions, qualifications (city scope) and keys:")
    keys = region.set_up(
        [DemoHospital(h.code, names[h.code], h.district, h.level, h.categories) for h in HOSPITALS],
        QUALIFIED_FROM,
    )
    for hospital in HOSPITALS:
        held = ", ".join(hospital.categories) or "no recognition qualification"
        say(f"  {hospital.code} {names[hospital.code]} ({hospital.level}): {held}")
    say("sample studies, dated relative to today:")
    try:
        uids = _upload_samples(channel, keys, samples, manifest, data_dir / "demo", today, say)
    except grpc.RpcError as error:
        if error.code() == grpc.StatusCode.UNAUTHENTICATED:
            raise DemoError(
                f"the server at {server} does not know the keys just issued: it runs on another "
                "index. Run the demo with the server's settings (MUTUALREC_DATA_DIR or "
                "MUTUALREC_DATABASE_URL), from the folder it was started in"
            ) from None
        raise
    lab_day = today - dt.timedelta(days=1)
    lis = "H500103001"
    bundle = lab_bundle(ZHANG_WEI, f"urn:mutualrec:lis:{lis}", lab_day)
    submitted = submit_document(channel, keys[lis], json.dumps(bundle).encode())
    c = submitted.counts
    say(
        f"lab results of {lab_day.isoformat()} from {lis} (potassium, glucose): created "
        f"{c.created}, unchanged {c.unchanged}"
    )
    check_ids = []
    for asker, patient, codes, decisions in CHECKS:
        say(f"{asker} checks patient {patient} before ordering {' '.join(codes)}:")
        response = check_order(channel, keys[asker], patient, list(codes))
        check_ids.append(response.check_id)
        for line in check_report(response):
            say("  " + line)
        recognizable = {
            line.ordered_code
            for line in response.lines
            if line.verdict == recognition_pb2.RECOGNIZABLE
        }
        for code, reason in decisions.items():
            if code not in recognizable:
                say(
                    f"  ! {code} is not recognizable here: a server that loaded reference data "
                    "before the demo added it sees it within 30 seconds; run the demo again then"
                )
                continue
            decided = record_decision(
                channel,
                keys[asker],
                response.check_id,
                code,
                "decline" if reason else "accept",
                reason,
            )
            what = f"declined ({reason})" if reason else f"accepted, {decided.booked_saving} yuan"
            say(f"  doctor's decision on {code}: {what}")
    study_uid = uids[SHOWCASE_STUDY]
    opened = imaging_pb2_grpc.ImagingServiceStub(channel).GetStudy(
        imaging_pb2.GetStudyRequest(study_instance_uid=study_uid),
        metadata=auth_metadata(keys[ASKER]),
    )
    say(
        f"{ASKER} opens the recognized CT of H500103001: {len(opened.series)} series, "
        f"{opened.study.instance_count} images ({STUDY_PREFIX}{study_uid})"
    )
    env_file = _write_env(data_dir / "demo.env", keys, server, study_uid, today)
    return DemoResult(env_file, study_uid, check_ids)


def _write_env(
    path: Path, keys: dict[str, str], server: str, study_uid: str, today: dt.date
) -> Path:
    """The demo's keys and references as shell exports, readable by the owner only."""
    values = {
        "MUTUALREC_SERVER": server,
        "MUTUALREC_API_KEY": keys[ASKER],
        "YUZHONG_KEY": keys["H500103001"],
        "SHAPINGBA_KEY": keys["H500106002"],
        "YUBEI_KEY": keys["H500112003"],
        "REGULATOR_KEY": keys["regulator"],
        "DEMO_PATIENT": ZHANG_WEI,
        "DEMO_CT_STUDY": study_uid,
        "DEMO_CT_URL": f"{STUDY_PREFIX}{study_uid}",
    }
    lines = [
        f"# mutualrec demo of {today.isoformat()}: its API keys (shown nowhere else) and study.",
        f"# MUTUALREC_API_KEY is {ASKER}'s, the hospital that asks in the demo.",
        *(f"export {name}={shlex.quote(value)}" for name, value in values.items()),
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


def next_steps(env_file: Path) -> list[str]:
    """The commands to try next, as the README's walkthrough runs them."""
    relative = os.path.relpath(env_file)
    shown = env_file if relative.startswith("..") else relative
    return [
        f". {shown}                     # the demo's keys; MUTUALREC_API_KEY is Shapingba's",
        "mutualrec check --patient-id $DEMO_PATIENT IMG-CT-CHEST LAB-K",
        "mutualrec download $DEMO_CT_URL --out film/       # open the recognized CT",
        "mutualrec report --key $REGULATOR_KEY --from today-30 --by pair",
        "mutualrec report --key $REGULATOR_KEY --from today-30 --by district --format png "
        "--out savings.png",
        "export MUTUALREC_TOKEN=$(mutualrec admin patient-token --patient-id $DEMO_PATIENT)",
        "mutualrec history                                 # the patient's studies",
        'mutualrec share $DEMO_CT_URL --days 7 --note "Dr Li"',
    ]
