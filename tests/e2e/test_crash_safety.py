"""Crash safety: `mutualrec serve` is killed with SIGKILL while uploads and submissions run.

Several clients upload synthetic DICOM studies (and new versions of instances) and submit FHIR
bundles (new results and amendments) to a real server process; at a seeded moment, with calls in
flight and upload streams inside an instance, the server is killed with SIGKILL and restarted on
the same data directory and index. After every restart:

1. every acknowledged instance (an outcome of a completed UploadStudy) is held: GetStudyStatus
   lists it, its index row has the acknowledged version and SHA-256, its blob hashes to it;
2. every acknowledged lab result entry is held at its version, pointing at the very document
   that was sent, which the store holds byte for byte;
3. nothing is half-indexed: every instance row has its blob (size and SHA-256 as recorded),
   versions have no gaps, study counts equal a recount, no study or series is an empty shell,
   every lab result has its current version, every document of a version row exists, and a
   bundle's results are held all or none.

After the last restart `mutualrec admin sweep --grace-minutes 0` must remove exactly the
unreferenced blobs (those the crashes left plus planted ones) and nothing else, a second sweep
nothing; then everything that was not acknowledged is sent again and the region must end with
every instance and result held exactly once, readable through DownloadStudy.

The seed (``MUTUALREC_CRASH_SEED``) fixes the kill points; the figures are printed (``-s``).

A second test makes one window deterministic: the server dies after every instance of an
upload was committed but before the call was answered; the study must still count for
recognition (it did not, before recognition rows moved into the batches' transactions).
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import functools
import hashlib
import io
import os
import random
import re
import signal
import subprocess
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import grpc
import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from mutualrec.client.imaging import download_study, list_all_studies
from mutualrec.client.upload import auth_metadata, make_header
from mutualrec.config import Settings, load_settings
from mutualrec.identity import parse_identity, patient_key
from mutualrec.security.access import HOSPITAL
from mutualrec.security.patient_tokens import mint_patient_token
from mutualrec.storage.db import make_engine
from mutualrec.storage.factory import open_object_store
from mutualrec.storage.institutions import add_institution
from mutualrec.storage.models import (
    Instance,
    Institution,
    LabResult,
    LabResultVersion,
    RecognitionResult,
    Series,
    Study,
)
from mutualrec.storage.objects import ObjectNotFound, ObjectStore
from mutualrec.v1 import imaging_pb2, imaging_pb2_grpc, ingest_pb2, ingest_pb2_grpc
from tests.conftest import SAMPLES, new_key
from tests.e2e.test_serve import ServeProcess, _spawn
from tests.fhir_docs import encode, entry, observation, patient

pytestmark = pytest.mark.e2e

SEED = int(os.environ.get("MUTUALREC_CRASH_SEED", "20261122"))
CYCLES = 3
UPLOADERS = 4
SUBMITTERS = 3
# A kill waits for at least this many acknowledged instances and lab entries in its cycle (drawn
# from these ranges), then a random moment, then until streams are inside an instance and
# bundles are in flight.
INSTANCES_BEFORE_KILL = (30, 120)
ENTRIES_BEFORE_KILL = (10, 40)
KILL_DELAY_SECONDS = (0.0, 0.05)
CHUNK = 4096
# Clients pause between the chunks of an instance, so a server holds partial instances often.
CHUNK_PAUSE_SECONDS = 0.002
INSTITUTIONS = ("H500103001", "H500106002")
# Valid resident IDs (check digits verified); each hospital has its own PatientID for each.
PATIENTS = ("50010319680315109X", "500106195511021028", "500112199007211020")
PERFORMED_ITEM = "IMG-CT-CHEST-C"
# The server shuts down in order on SIGTERM; the test ends it that way once it is done.
STOP_TIMEOUT = 30

Request = ingest_pb2.UploadStudyRequest


# --------------------------------------------------------------------------------------------
# What the clients send, and what the region acknowledged
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedInstance:
    """One DICOM instance as a client sends it."""

    sop: str
    series: str
    data: bytes
    sha256: str


@dataclass
class StudyPlan:
    """A synthetic study: its originals and, once revised, the new bytes of one instance."""

    uid: str
    institution: str
    patient: str
    accession: str
    originals: list[PlannedInstance]
    revision: PlannedInstance | None = None

    def expected_versions(self) -> dict[str, list[str]]:
        """SOP Instance UID -> the SHA-256 of each version, in version order."""
        versions = {i.sop: [i.sha256] for i in self.originals}
        if self.revision is not None:
            versions[self.revision.sop].append(self.revision.sha256)
        return versions

    def current(self) -> dict[str, PlannedInstance]:
        """SOP Instance UID -> the bytes that must be current."""
        held = {i.sop: i for i in self.originals}
        if self.revision is not None:
            held[self.revision.sop] = self.revision
        return held


@dataclass
class UploadCall:
    """One UploadStudy call: the study's originals, or a revision (identical + new bytes)."""

    study: StudyPlan
    instances: list[PlannedInstance]
    cycle: int
    revision: bool = False
    acked: bool = False
    # (SOP Instance UID, SHA-256, version, outcome name) of each acknowledged instance.
    outcomes: list[tuple[str, str, int, str]] = field(default_factory=list)

    def expected(self, instance: PlannedInstance) -> tuple[int, set[str]]:
        """The version this call must report for ``instance``, and the acceptable outcomes."""
        if self.revision and self.study.revision is instance:
            return 2, {"NEW_VERSION", "DUPLICATE_IDENTICAL"}
        if self.revision:
            return 1, {"DUPLICATE_IDENTICAL"}
        return 1, {"STORED", "DUPLICATE_IDENTICAL"}


@dataclass(frozen=True)
class PlannedObservation:
    """One version of one Observation as a bundle carries it."""

    identity: str
    number: str
    version: int
    status: str
    value: str


@dataclass
class BundleCall:
    """One SubmitObservations call."""

    institution: str
    patient: str
    kind: str
    body: bytes
    observations: list[PlannedObservation]
    cycle: int
    acked: bool = False
    # (identity, outcome name, version, status) of each acknowledged Observation entry.
    outcomes: list[tuple[str, str, int, str]] = field(default_factory=list)

    @property
    def key(self) -> str:
        """Where the region keeps the document."""
        return f"fhir/{hashlib.sha256(self.body).hexdigest()}.json"


@dataclass
class CycleFigures:
    """What happened in one kill/restart cycle."""

    cycle: int
    target_instances: int = 0
    target_entries: int = 0
    load_seconds: float = 0.0
    acked_instances: int = 0
    acked_entries: int = 0
    acked_uploads: int = 0
    acked_bundles: int = 0
    uploads_in_flight: int = 0
    streams_mid_instance: int = 0
    bundles_in_flight: int = 0
    failed_codes: Counter[str] = field(default_factory=Counter)
    checked_instances: int = 0
    checked_entries: int = 0
    held_unacked_instances: int = 0
    held_unacked_bundles: int = 0


class Ledger:
    """Everything sent and acknowledged, shared by the client threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.studies: dict[str, StudyPlan] = {}
        self.uploads: list[UploadCall] = []
        self.bundles: list[BundleCall] = []
        # Studies whose originals were acknowledged and that have no revision yet.
        self.revisable: list[StudyPlan] = []
        # Acknowledged, never amended observations by (institution, patient).
        self.amendable: dict[tuple[str, str], list[PlannedObservation]] = defaultdict(list)
        self.errors: list[str] = []
        self.figures: list[CycleFigures] = []
        self.killed = threading.Event()
        self.mid_instance = 0
        self.uploads_in_flight = 0
        self.bundles_in_flight = 0
        self._counter = 0

    def next_number(self) -> int:
        with self.lock:
            self._counter += 1
            return self._counter

    @property
    def cycle(self) -> CycleFigures:
        return self.figures[-1]

    def acked_items(self) -> tuple[int, int]:
        with self.lock:
            return self.cycle.acked_instances, self.cycle.acked_entries

    def in_flight(self) -> tuple[int, int, int]:
        with self.lock:
            return self.uploads_in_flight, self.mid_instance, self.bundles_in_flight

    def enter_instance(self, delta: int) -> None:
        with self.lock:
            self.mid_instance += delta

    def begin_upload(self, call: UploadCall) -> None:
        with self.lock:
            self.studies.setdefault(call.study.uid, call.study)
            self.uploads.append(call)
            self.uploads_in_flight += 1

    def begin_bundle(self, call: BundleCall) -> None:
        with self.lock:
            self.bundles.append(call)
            self.bundles_in_flight += 1

    def failed(self, what: str, error: grpc.RpcError, *, upload: bool) -> None:
        """A call that ended without an answer: expected only once the server was killed."""
        with self.lock:
            if upload:
                self.uploads_in_flight -= 1
            else:
                self.bundles_in_flight -= 1
            code = error.code().name if hasattr(error, "code") else type(error).__name__
            self.cycle.failed_codes[code] += 1
            if not self.killed.is_set():
                self.errors.append(f"{what} failed before any kill: {code} {error}")

    def acknowledge_upload(self, call: UploadCall, response: Any) -> None:
        with self.lock:
            self.uploads_in_flight -= 1
            self._record_upload(call, response, self.errors)
            self.cycle.acked_uploads += 1
            self.cycle.acked_instances += len(call.outcomes)
            if not call.revision:
                self.revisable.append(call.study)

    def acknowledge_bundle(self, call: BundleCall, response: Any) -> None:
        with self.lock:
            self.bundles_in_flight -= 1
            self._record_bundle(call, response, self.errors)
            self.cycle.acked_bundles += 1
            self.cycle.acked_entries += len(call.outcomes)
            for planned in call.observations:
                if planned.version == 1:
                    self.amendable[(call.institution, call.patient)].append(planned)

    @staticmethod
    def _record_upload(call: UploadCall, response: Any, errors: list[str]) -> None:
        by_sop = {i.sop: i for i in call.instances}
        if len(response.instances) != len(call.instances):
            errors.append(f"upload of {call.study.uid}: {len(response.instances)} outcomes")
        for outcome in response.instances:
            kind = ingest_pb2.InstanceOutcomeKind.Name(outcome.outcome)
            planned = by_sop.get(outcome.sop_instance_uid)
            if planned is None or outcome.sha256 != planned.sha256:
                errors.append(f"upload of {call.study.uid}: unexpected outcome {outcome}")
                continue
            version, kinds = call.expected(planned)
            if kind not in kinds or outcome.version != version:
                errors.append(
                    f"upload of {call.study.uid}: {planned.sop} was {kind} v{outcome.version}, "
                    f"expected {sorted(kinds)} v{version} ({outcome.reason})"
                )
                continue
            call.outcomes.append((planned.sop, planned.sha256, outcome.version, kind))
        call.acked = True

    @staticmethod
    def _record_bundle(call: BundleCall, response: Any, errors: list[str]) -> None:
        planned = {p.identity: p for p in call.observations}
        for outcome in response.entries:
            kind = ingest_pb2.EntryOutcomeKind.Name(outcome.outcome)
            if kind == "CONTEXT":
                continue
            expected = planned.get(outcome.identity)
            allowed = {"CREATED", "UNCHANGED"} if expected and expected.version == 1 else set()
            if expected and expected.version > 1:
                allowed = {"UPDATED_NEW_VERSION", "UNCHANGED"}
            if (
                expected is None
                or kind not in allowed
                or outcome.version != expected.version
                or outcome.status != expected.status
            ):
                errors.append(f"bundle {call.key}: unexpected entry outcome {outcome}")
                continue
            call.outcomes.append((outcome.identity, kind, outcome.version, outcome.status))
        if len(call.outcomes) != len(call.observations):
            errors.append(f"bundle {call.key}: {len(call.outcomes)} of {len(call.observations)}")
        call.acked = True


# --------------------------------------------------------------------------------------------
# Synthetic data
# --------------------------------------------------------------------------------------------


@functools.cache
def _template() -> Any:
    """A CT instance of the samples, made small (64x64)."""
    ds = pydicom.dcmread(SAMPLES / "ct_chest_contrast_hosp_a" / "S02_I001.dcm")
    ds.Rows = 64
    ds.Columns = 64
    ds.PixelSpacing = [2.8, 2.8]
    ds.PixelData = bytes(64 * 64 * 2)
    return ds


def _hospital_patient_id(institution: str, document: str) -> str:
    return f"{institution[-3:]}-{document[-8:]}"


def _dicom(
    study: StudyPlan, series: str, series_number: int, sop: str, number: int, seed: int
) -> PlannedInstance:
    ds = copy.deepcopy(_template())
    ds.StudyInstanceUID = study.uid
    ds.SeriesInstanceUID = series
    ds.SeriesNumber = series_number
    ds.SOPInstanceUID = sop
    ds.file_meta.MediaStorageSOPInstanceUID = sop
    ds.InstanceNumber = number
    ds.AccessionNumber = study.accession
    ds.PatientID = _hospital_patient_id(study.institution, study.patient)
    ds.PatientBirthDate = study.patient[6:14]
    pixels = np.random.default_rng(seed).integers(-1000, 1500, size=(64, 64), dtype=np.int16)
    ds.PixelData = pixels.tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    data = buffer.getvalue()
    return PlannedInstance(sop, series, data, hashlib.sha256(data).hexdigest())


def _new_study(rng: random.Random, number: int, institution: str = "") -> StudyPlan:
    study = StudyPlan(
        uid=str(generate_uid()),
        institution=institution or rng.choice(INSTITUTIONS),
        patient=rng.choice(PATIENTS),
        accession=f"CRASH-{number}",
        originals=[],
    )
    for series_number in range(1, rng.randint(1, 2) + 1):
        series = str(generate_uid())
        for instance_number in range(1, rng.randint(2, 6) + 1):
            study.originals.append(
                _dicom(
                    study,
                    series,
                    series_number,
                    str(generate_uid()),
                    instance_number,
                    rng.getrandbits(32),
                )
            )
    return study


def _revise(study: StudyPlan, rng: random.Random) -> list[PlannedInstance]:
    """New bytes for one instance of ``study``; sent with one unchanged instance."""
    changed = rng.choice(study.originals)
    series_number = 1 + sorted({i.series for i in study.originals}).index(changed.series)
    number = 1 + [i.sop for i in study.originals if i.series == changed.series].index(changed.sop)
    study.revision = _dicom(
        study, changed.series, series_number, changed.sop, number, rng.getrandbits(32)
    )
    unchanged = [i for i in study.originals if i is not changed]
    return [rng.choice(unchanged), study.revision]


def _header(study: StudyPlan) -> Any:
    return Request(
        header=make_header(
            study.patient,
            "RESIDENT_ID_CARD",
            accession_number=study.accession,
            performed_item_code=PERFORMED_ITEM,
        )
    )


def _messages(call: UploadCall, ledger: Ledger | None) -> Iterator[Any]:
    """The upload's messages; ``ledger`` counts the streams that are inside an instance."""
    yield _header(call.study)
    for index, instance in enumerate(call.instances):
        pieces = [instance.data[i : i + CHUNK] for i in range(0, len(instance.data), CHUNK)]
        inside = False
        try:
            for number, piece in enumerate(pieces):
                last = number == len(pieces) - 1
                if ledger is not None and not last and not inside:
                    ledger.enter_instance(1)
                    inside = True
                if ledger is not None and last and inside:
                    ledger.enter_instance(-1)
                    inside = False
                yield Request(
                    chunk=ingest_pb2.InstanceChunk(
                        source_name=f"{index}.dcm", data=piece, end_of_instance=last
                    )
                )
                if ledger is not None and not last:
                    time.sleep(CHUNK_PAUSE_SECONDS)
        finally:
            if ledger is not None and inside:
                ledger.enter_instance(-1)


def _bundle(
    institution: str,
    document: str,
    observations: list[PlannedObservation],
    kind: str,
) -> bytes:
    system = f"urn:mutualrec:lis:{institution}"
    entries = [patient(number=document)]
    for index, planned in enumerate(observations):
        resource = observation(planned.number, value=float(planned.value), status=planned.status)
        resource["identifier"][0]["system"] = system
        entries.append(entry(resource, f"urn:uuid:obs-{index}"))
    return encode({"resourceType": "Bundle", "type": kind, "entry": entries})


def _identity(institution: str, number: str) -> str:
    return f"identifier|urn:mutualrec:lis:{institution}|{number}"


def _new_bundle(rng: random.Random, ledger: Ledger, cycle: int) -> BundleCall:
    institution, document = rng.choice(INSTITUTIONS), rng.choice(PATIENTS)
    observations = []
    for _ in range(rng.randint(2, 6)):
        number = f"CRASH-{ledger.next_number()}"
        observations.append(
            PlannedObservation(
                _identity(institution, number),
                number,
                1,
                "final",
                str(Decimal(rng.randint(300, 600)) / 100),
            )
        )
    if rng.random() < 0.35:
        with ledger.lock:
            candidates = ledger.amendable[(institution, document)]
            original = candidates.pop(rng.randrange(len(candidates))) if candidates else None
        if original is not None:
            value = str(Decimal(original.value) + Decimal("0.25"))
            observations.append(
                PlannedObservation(original.identity, original.number, 2, "amended", value)
            )
    kind = rng.choice(("batch", "transaction"))
    body = _bundle(institution, document, observations, kind)
    return BundleCall(institution, document, kind, body, observations, cycle)


# --------------------------------------------------------------------------------------------
# The server process: started, crashed, restarted on the same data
# --------------------------------------------------------------------------------------------


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (the server's parse workers), read from /proc."""
    parents: dict[int, int] = {}
    for proc_dir in Path("/proc").iterdir():
        if not proc_dir.name.isdigit():
            continue
        try:
            stat = (proc_dir / "stat").read_text()
        except OSError:
            continue
        parents[int(proc_dir.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: list[int] = []
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, ppid in parents.items() if ppid == parent]
        found += children
        frontier += children
    return found


class Service:
    """`mutualrec serve` on one data directory and index."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.cwd = cwd
        self.env = env
        self._running: Generator[ServeProcess, None, None] | None = None
        self.proc: ServeProcess | None = None
        self.lingering_workers: list[int] = []

    def start(self) -> ServeProcess:
        self._running = cast(Generator[ServeProcess, None, None], _spawn(self.cwd, self.env))
        self.proc = next(self._running)
        return self.proc

    @property
    def running(self) -> ServeProcess:
        assert self.proc is not None
        return self.proc

    def crash(self) -> None:
        """SIGKILL the server, then the worker processes it leaves behind (by their pids)."""
        process = self.running.process
        workers = _descendants(process.pid)
        process.send_signal(signal.SIGKILL)
        process.wait(30)
        time.sleep(0.2)
        for pid in workers:
            if Path(f"/proc/{pid}").exists():
                self.lingering_workers.append(pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self._close()

    def stop(self) -> int | None:
        """Stop in order (SIGTERM); SIGKILL the server and its workers if that hangs."""
        if self.proc is None:
            return None
        process = self.proc.process
        workers = _descendants(process.pid)
        code: int | None = None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                code = process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._close()
        return code

    def _close(self) -> None:
        if self._running is not None:
            self._running.close()
        self._running = None
        self.proc = None


# --------------------------------------------------------------------------------------------
# Load
# --------------------------------------------------------------------------------------------


def _uploader(address: str, keys: dict[str, str], ledger: Ledger, seed: int, cycle: int) -> None:
    rng = random.Random(seed)
    with grpc.insecure_channel(address) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        while not ledger.killed.is_set():
            study: StudyPlan | None = None
            if rng.random() < 0.25:
                with ledger.lock:
                    if ledger.revisable:
                        study = ledger.revisable.pop(rng.randrange(len(ledger.revisable)))
            if study is not None:
                call = UploadCall(study, _revise(study, rng), cycle, revision=True)
            else:
                study = _new_study(rng, ledger.next_number())
                call = UploadCall(study, list(study.originals), cycle)
            ledger.begin_upload(call)
            try:
                response = stub.UploadStudy(
                    _messages(call, ledger),
                    metadata=auth_metadata(keys[study.institution]),
                    timeout=60,
                )
            except grpc.RpcError as error:
                ledger.failed(f"upload of {study.uid}", error, upload=True)
                return
            ledger.acknowledge_upload(call, response)


def _submitter(address: str, keys: dict[str, str], ledger: Ledger, seed: int, cycle: int) -> None:
    rng = random.Random(seed)
    with grpc.insecure_channel(address) as channel:
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        while not ledger.killed.is_set():
            call = _new_bundle(rng, ledger, cycle)
            ledger.begin_bundle(call)
            try:
                response = stub.SubmitObservations(
                    ingest_pb2.SubmitObservationsRequest(body=call.body),
                    metadata=auth_metadata(keys[call.institution]),
                    timeout=60,
                )
            except grpc.RpcError as error:
                ledger.failed(f"bundle {call.key}", error, upload=False)
                return
            ledger.acknowledge_bundle(call, response)


def _load_and_kill(
    service: Service, keys: dict[str, str], ledger: Ledger, rng: random.Random, cycle: int
) -> None:
    """Run the clients against the server and SIGKILL it at a seeded moment with calls open."""
    figures = CycleFigures(
        cycle,
        target_instances=rng.randint(*INSTANCES_BEFORE_KILL),
        target_entries=rng.randint(*ENTRIES_BEFORE_KILL),
    )
    ledger.figures.append(figures)
    ledger.killed.clear()
    address = service.running.address
    threads = [
        threading.Thread(target=_uploader, args=(address, keys, ledger, rng.getrandbits(32), cycle))
        for _ in range(UPLOADERS)
    ] + [
        threading.Thread(
            target=_submitter, args=(address, keys, ledger, rng.getrandbits(32), cycle)
        )
        for _ in range(SUBMITTERS)
    ]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    delay = rng.uniform(*KILL_DELAY_SECONDS)
    deadline = started + 60

    def wait_for(ready: Callable[[], bool]) -> None:
        while time.monotonic() < deadline and not ledger.errors and not ready():
            time.sleep(0.0005)

    def enough_acknowledged() -> bool:
        instances, entries = ledger.acked_items()
        return instances >= figures.target_instances and entries >= figures.target_entries

    wait_for(enough_acknowledged)
    time.sleep(delay)
    wait_for(lambda: ledger.in_flight()[1] > 0 and ledger.in_flight()[2] > 0)
    figures.load_seconds = time.monotonic() - started
    with ledger.lock:
        figures.uploads_in_flight = ledger.uploads_in_flight
        figures.streams_mid_instance = ledger.mid_instance
        figures.bundles_in_flight = ledger.bundles_in_flight
        ledger.killed.set()
    service.crash()
    for thread in threads:
        thread.join(60)
        assert not thread.is_alive(), "a client did not notice the server was gone"


# --------------------------------------------------------------------------------------------
# Verification
# --------------------------------------------------------------------------------------------


def _read(store: ObjectStore, key: str) -> bytes | None:
    try:
        return b"".join(store.open(key))
    except ObjectNotFound:
        return None


class Region:
    """Read access to what the restarted region holds: index, object store, gRPC."""

    def __init__(self, proc: ServeProcess, keys: dict[str, str]) -> None:
        self.proc = proc
        self.keys = keys
        self.settings: Settings = load_settings(proc.env)
        self.store = open_object_store(self.settings)
        self.engine: Engine = make_engine(self.settings.database_url, pool_size=2)
        self.sessions = sessionmaker(self.engine)
        self.channel = grpc.insecure_channel(proc.address)
        self.stub = ingest_pb2_grpc.IngestServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()
        self.engine.dispose()

    def session(self) -> Session:
        return self.sessions()

    def study_status(self, study: StudyPlan) -> dict[str, tuple[int, str, int]]:
        """SOP Instance UID -> (version, SHA-256, size) of what GetStudyStatus reports."""
        response = self.stub.GetStudyStatus(
            ingest_pb2.GetStudyStatusRequest(study_instance_uid=study.uid),
            metadata=auth_metadata(self.keys[study.institution]),
            timeout=30,
        )
        return {i.sop_instance_uid: (i.version, i.sha256, i.size_bytes) for i in response.instances}

    def referenced_keys(self) -> set[str]:
        """Blobs the index refers to; a thumbnail while its series holds its instance's hash."""
        with self.session() as session:
            keys = set(session.scalars(select(Instance.object_key)))
            keys |= set(session.scalars(select(LabResultVersion.document_key)))
            held = set(
                session.execute(
                    select(Series.series_instance_uid, Instance.sha256).join(
                        Series, Series.id == Instance.series_id
                    )
                )
            )
        for thumbnail in self.store.list("thumbnails/"):
            _, series, name = thumbnail.key.split("/")
            if (series, name.split(".", 1)[0]) in held:
                keys.add(thumbnail.key)
        return keys

    def tokens(self) -> dict[str, str]:
        """A patient token for each patient (what the identity provider would mint)."""
        secret = self.settings.patient_key_secret
        return {
            document: mint_patient_token(
                self.settings.token_secret,
                patient_key(parse_identity("RESIDENT_ID_CARD", document), secret),
                dt.timedelta(hours=1),
            ).token
            for document in PATIENTS
        }

    def stored_keys(self) -> set[str]:
        return {
            o.key for prefix in ("dicom/", "fhir/", "thumbnails/") for o in self.store.list(prefix)
        }


def _check_acknowledged_instances(region: Region, ledger: Ledger) -> int:
    """Check 1: every acknowledged instance is held, listed and readable."""
    instances = 0
    acked_uploads = [u for u in ledger.uploads if u.acked]
    with region.session() as session:
        rows = {
            (sop, sha): (version, key)
            for sop, sha, version, key in session.execute(
                select(
                    Instance.sop_instance_uid,
                    Instance.sha256,
                    Instance.version,
                    Instance.object_key,
                )
            )
        }
    statuses: dict[str, dict[str, tuple[int, str, int]]] = {}
    for call in acked_uploads:
        study = call.study
        if study.uid not in statuses:
            statuses[study.uid] = region.study_status(study)
        held = statuses[study.uid]
        for sop, sha, version, kind in call.outcomes:
            instances += 1
            what = f"acknowledged instance {sop} ({kind} v{version}) of study {study.uid}"
            assert (sop, sha) in rows, f"{what} is missing from the index"
            assert rows[(sop, sha)][0] == version, f"{what} is held as v{rows[(sop, sha)][0]}"
            data = _read(region.store, rows[(sop, sha)][1])
            assert data is not None, f"the blob of {what} is missing"
            assert hashlib.sha256(data).hexdigest() == sha, f"the blob of {what} is damaged"
            assert sop in held, f"GetStudyStatus does not list {what}"
            revised = study.revision is not None and study.revision.sop == sop
            if revised:
                assert held[sop][0] >= version, f"GetStudyStatus holds an older version of {what}"
            else:
                assert held[sop][1] == sha, f"GetStudyStatus holds other bytes for {what}"
    return instances


def _check_acknowledged_entries(region: Region, ledger: Ledger) -> int:
    """Check 2: every acknowledged lab entry is held at its version, with its document."""
    entries = 0
    institution_ids = _institution_ids(region)
    with region.session() as session:
        versions = {
            (institution, identity, version): (status, value, key, entry_index)
            for institution, identity, version, status, value, key, entry_index in session.execute(
                select(
                    LabResult.institution_id,
                    LabResult.identity,
                    LabResultVersion.version,
                    LabResultVersion.status,
                    LabResultVersion.value_decimal,
                    LabResultVersion.document_key,
                    LabResultVersion.entry_index,
                ).join(LabResult, LabResult.id == LabResultVersion.lab_result_id)
            )
        }
    for call in (b for b in ledger.bundles if b.acked):
        institution_id = institution_ids[call.institution]
        planned = {p.identity: (i, p) for i, p in enumerate(call.observations)}
        body = _read(region.store, call.key)
        assert body == call.body, f"the document {call.key} of an acknowledged bundle is not held"
        for identity, kind, version, status in call.outcomes:
            entries += 1
            what = f"acknowledged entry {identity} ({kind} v{version})"
            row = versions.get((institution_id, identity, version))
            assert row is not None, f"{what} is missing from the index"
            position, plan = planned[identity]
            assert row[0] == status, f"{what} is held with status {row[0]}"
            assert Decimal(str(row[1])) == Decimal(plan.value), f"{what} is held as {row[1]}"
            # Only the call that made the version names its document; a re-send of the same
            # bytes names the same key, so every acknowledged entry points at its own body.
            assert row[2] == call.key, f"{what} points at {row[2]}, not its document"
            assert row[3] == position + 1, f"{what} points at entry {row[3]}"
    return entries


def _institution_ids(region: Region) -> dict[str, int]:
    with region.session() as session:
        return {
            code: number
            for code, number in session.execute(select(Institution.code, Institution.id))
        }


def _check_consistent(region: Region, ledger: Ledger) -> None:
    """Check 3: nothing is half-indexed, whatever was or was not acknowledged."""
    sent = {
        (i.sop, i.sha256)
        for study in ledger.studies.values()
        for i in [*study.originals, *([study.revision] if study.revision else [])]
    }
    with region.session() as session:
        instances = session.execute(
            select(
                Study.id,
                Series.id,
                Instance.sop_instance_uid,
                Instance.version,
                Instance.sha256,
                Instance.size_bytes,
                Instance.object_key,
            )
            .join(Series, Series.id == Instance.series_id)
            .join(Study, Study.id == Series.study_id)
        ).all()
        studies = session.execute(
            select(
                Study.id,
                Study.study_instance_uid,
                Study.series_count,
                Study.instance_count,
                Study.size_bytes,
            )
        ).all()
        series_ids = set(session.scalars(select(Series.id)))
        results = session.execute(
            select(
                LabResult.id,
                LabResult.identity,
                LabResult.current_version,
                LabResult.current_status,
                LabResult.current_sha256,
            )
        ).all()
        lab_versions = session.execute(
            select(
                LabResultVersion.lab_result_id,
                LabResultVersion.version,
                LabResultVersion.status,
                LabResultVersion.content_sha256,
                LabResultVersion.document_key,
            )
        ).all()
        recognized = session.execute(
            select(RecognitionResult.result_ref, RecognitionResult.version)
        ).all()
    versions_of: dict[str, list[int]] = defaultdict(list)
    newest: dict[str, tuple[int, int]] = {}
    for _study, _series, sop, version, sha, size, key in instances:
        what = f"instance row {sop} v{version}"
        assert (sop, sha) in sent, f"{what} holds bytes no client sent"
        data = _read(region.store, key)
        assert data is not None, f"{what} has no blob under {key}"
        assert len(data) == size, f"{what}: blob has {len(data)} bytes, the row says {size}"
        assert hashlib.sha256(data).hexdigest() == sha, f"{what}: blob does not match its sha256"
        versions_of[sop].append(version)
        if version > newest.get(sop, (0, 0))[0]:
            newest[sop] = (version, size)
    for sop, numbers in versions_of.items():
        assert sorted(numbers) == list(range(1, len(numbers) + 1)), f"{sop} versions {numbers}"
    recount: dict[int, tuple[set[int], set[str], int]] = {}
    for study_id, series_id, sop, version, _sha, _size, _key in instances:
        series_set, sops, size = recount.setdefault(study_id, (set(), set(), 0))
        series_set.add(series_id)
        sops.add(sop)
        if newest[sop][0] == version:
            size += newest[sop][1]
        recount[study_id] = (series_set, sops, size)
    assert series_ids == {series for _, series, *_ in instances}, "a series row has no instance"
    for study_id, uid, series_count, instance_count, size_bytes in studies:
        assert study_id in recount, f"study {uid} is a row without instances"
        series_set, sops, size = recount[study_id]
        assert (series_count, instance_count, size_bytes) == (len(series_set), len(sops), size), (
            f"study {uid} counts {(series_count, instance_count, size_bytes)} != recount "
            f"{(len(series_set), len(sops), size)}"
        )
    identities = {p.identity for b in ledger.bundles for p in b.observations}
    by_result: dict[int, dict[int, tuple[str, str, str]]] = defaultdict(dict)
    for result_id, version, status, sha, key in lab_versions:
        by_result[result_id][version] = (status, sha, key)
    documents: set[str] = set()
    for result_id, identity, current, status, sha in results:
        assert identity in identities, f"lab result {identity} was never sent"
        held = by_result.get(result_id, {})
        assert sorted(held) == list(range(1, len(held) + 1)), f"{identity} versions {sorted(held)}"
        assert current in held, f"lab result {identity} has no row of its current v{current}"
        assert held[current][:2] == (status, sha), f"{identity}: current row differs"
        assert current == max(held), f"{identity}: current v{current} is not the newest"
        documents |= {key for _, _, key in held.values()}
    for key in documents:
        data = _read(region.store, key)
        assert data is not None, f"document {key} of a version row is missing"
        assert f"fhir/{hashlib.sha256(data).hexdigest()}.json" == key, f"{key} is damaged"
    current_of = {f"lab:{result_id}": current for result_id, _, current, _, _ in results}
    study_uids = {uid for _, uid, *_ in studies}
    for ref, version in recognized:
        if ref.startswith("lab:"):
            assert current_of.get(ref) == version, f"recognition row {ref} v{version} is stale"
        else:
            assert ref.removeprefix("study:") in study_uids, f"recognition row {ref} dangles"
    # A bundle is indexed in one transaction: its versions are all held, or none is.
    created_by = Counter(key for held in by_result.values() for _, _, key in held.values())
    for call in ledger.bundles:
        count = created_by.get(call.key, 0)
        assert count in (0, len(call.observations)), (
            f"bundle {call.key} ({call.kind}) is half-indexed: {count} of "
            f"{len(call.observations)} versions"
        )
        if call.acked:
            assert count == len(call.observations), f"acknowledged bundle {call.key}: {count}"


def _held_unacknowledged(region: Region, ledger: Ledger) -> tuple[int, int]:
    """How many instances of unanswered uploads, and unanswered bundles, the region kept."""
    referenced = region.referenced_keys()
    instances = sum(
        1
        for call in ledger.uploads
        if not call.acked
        for i in call.instances
        if _instance_key(call.study, i) in referenced
    )
    bundles = sum(1 for call in ledger.bundles if not call.acked and call.key in referenced)
    return instances, bundles


def _instance_key(study: StudyPlan, instance: PlannedInstance) -> str:
    return f"dicom/{study.uid}/{instance.series}/{instance.sop}.{instance.sha256}.dcm"


def _verify(region: Region, ledger: Ledger, figures: CycleFigures | None) -> None:
    assert not ledger.errors, "\n".join(ledger.errors[:20])
    instances = _check_acknowledged_instances(region, ledger)
    entries = _check_acknowledged_entries(region, ledger)
    _check_consistent(region, ledger)
    if figures is not None:
        figures.checked_instances = instances
        figures.checked_entries = entries
        figures.held_unacked_instances, figures.held_unacked_bundles = _held_unacknowledged(
            region, ledger
        )


def _sweep(proc: ServeProcess) -> tuple[int, list[str], str]:
    result = proc.cli("admin", "sweep", "--grace-minutes", "0", "--verbose")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    summary = lines[-1]
    removed = re.search(r"removed (\d+)", summary)
    assert removed is not None, summary
    return int(removed.group(1)), lines[:-1], summary


def _plant_orphans(region: Region, ledger: Ledger) -> tuple[list[str], str]:
    """Unreferenced blobs the sweep must remove, and an object outside its prefixes to keep."""
    acked = next(u.study for u in ledger.uploads if u.acked)
    series = f"dicom/{acked.uid}/{acked.originals[0].series}"
    planted = []
    for where in (
        series + "/1.2.826.0.1.99.1.{}.dcm",
        "dicom/1.2.826.0.1.99/1.{}.dcm",
        "fhir/{}.json",
    ):
        data = os.urandom(512)
        key = where.format(hashlib.sha256(data).hexdigest())
        region.store.put(key, io.BytesIO(data), len(data))
        planted.append(key)
    data = os.urandom(512)
    key = f"thumbnails/{acked.originals[0].series}/{hashlib.sha256(data).hexdigest()}.png"
    region.store.put(key, io.BytesIO(data), len(data))
    planted.append(key)
    outside = "crash-test/keep-me.txt"
    region.store.put(outside, io.BytesIO(b"not the sweep's"), 15)
    return planted, outside


def _render_thumbnails(region: Region, ledger: Ledger) -> int:
    """A thumbnail of every series of a few acknowledged studies: referenced blobs to keep."""
    tokens = region.tokens()
    stub = imaging_pb2_grpc.ImagingServiceStub(region.channel)
    rendered = 0
    for study in [u.study for u in ledger.uploads if u.acked][:3]:
        for series in sorted({i.series for i in study.originals}):
            thumbnail = stub.GetThumbnail(
                imaging_pb2.GetThumbnailRequest(
                    study_instance_uid=study.uid, series_instance_uid=series
                ),
                metadata=auth_metadata(tokens[study.patient]),
                timeout=60,
            )
            assert not thumbnail.placeholder, thumbnail.reason
            rendered += 1
    return rendered


def _resend(region: Region, ledger: Ledger) -> Counter[str]:
    """Check 5: send every unanswered call again, as a gateway would; all must succeed."""
    outcomes: Counter[str] = Counter()
    resent = Ledger()
    for call in [u for u in ledger.uploads if not u.acked]:
        response = region.stub.UploadStudy(
            _messages(call, None),
            metadata=auth_metadata(region.keys[call.study.institution]),
            timeout=60,
        )
        Ledger._record_upload(call, response, resent.errors)
        outcomes.update(f"instance {kind}" for *_, kind in call.outcomes)
    for bundle_call in [b for b in ledger.bundles if not b.acked]:
        response = region.stub.SubmitObservations(
            ingest_pb2.SubmitObservationsRequest(body=bundle_call.body),
            metadata=auth_metadata(region.keys[bundle_call.institution]),
            timeout=60,
        )
        Ledger._record_bundle(bundle_call, response, resent.errors)
        outcomes.update(f"entry {kind}" for _, kind, _, _ in bundle_call.outcomes)
    assert not resent.errors, "\n".join(resent.errors[:20])
    return outcomes


def _check_exactly_once(region: Region, ledger: Ledger, downloads: Path) -> tuple[int, int]:
    """After the re-sends: every instance and result held exactly once, at the right version."""
    with region.session() as session:
        rows: dict[str, list[tuple[int, str]]] = defaultdict(list)
        for sop, version, sha in session.execute(
            select(Instance.sop_instance_uid, Instance.version, Instance.sha256)
        ):
            rows[sop].append((version, sha))
        studies = {
            uid: count
            for uid, count in session.execute(
                select(Study.study_instance_uid, Study.instance_count)
            )
        }
        recognized = set(session.scalars(select(RecognitionResult.result_ref)))
        results = Counter(session.scalars(select(LabResult.identity)))
        lab_versions: dict[str, list[tuple[int, str, str]]] = defaultdict(list)
        for identity, version, status, value in session.execute(
            select(
                LabResult.identity,
                LabResultVersion.version,
                LabResultVersion.status,
                LabResultVersion.value_decimal,
            ).join(LabResult, LabResult.id == LabResultVersion.lab_result_id)
        ):
            lab_versions[identity].append((version, status, str(value)))
    assert set(studies) == set(ledger.studies), "the region holds other studies than were sent"
    instance_total = 0
    for study in ledger.studies.values():
        expected = study.expected_versions()
        assert studies[study.uid] == len(expected), f"study {study.uid} counts differ"
        for sop, shas in expected.items():
            held = sorted(rows[sop])
            assert held == list(enumerate(shas, 1)), f"{sop} is held as {held}, sent {shas}"
            instance_total += len(shas)
        listed = region.study_status(study)
        current = study.current()
        assert set(listed) == set(current), f"GetStudyStatus of {study.uid} lists other SOPs"
        for sop, (_version, sha, size) in listed.items():
            assert (sha, size) == (current[sop].sha256, len(current[sop].data))
        assert f"study:{study.uid}" in recognized, f"study {study.uid} is not indexed for checks"
    assert sum(len(v) for v in rows.values()) == instance_total
    expected_results: dict[str, list[tuple[int, str, str]]] = defaultdict(list)
    for call in ledger.bundles:
        for planned in call.observations:
            expected_results[planned.identity].append(
                (planned.version, planned.status, planned.value)
            )
    assert set(results) == set(expected_results), "the region holds other results than were sent"
    assert set(results.values()) == {1}
    for identity, expected_versions in expected_results.items():
        held_versions = sorted(lab_versions[identity])
        assert [(v, s, Decimal(x)) for v, s, x in held_versions] == [
            (v, s, Decimal(x)) for v, s, x in sorted(expected_versions)
        ], f"{identity}: held {held_versions}, sent {sorted(expected_versions)}"
    _download_everything(region, ledger, downloads)
    return instance_total, sum(len(v) for v in expected_results.values())


def _download_everything(region: Region, ledger: Ledger, folder: Path) -> None:
    """Every study, through the service, byte for byte (the server checks each SHA-256)."""
    tokens = region.tokens()
    for study in ledger.studies.values():
        target = folder / study.uid
        saved = download_study(region.channel, tokens[study.patient], study.uid, target)
        current = study.current()
        assert {f.sop_instance_uid for f in saved} == set(current)
        for item in saved:
            assert item.path.read_bytes() == current[item.sop_instance_uid].data
    for document, token in tokens.items():
        listed = list(
            list_all_studies(region.channel, token, imaging_pb2.ListStudiesRequest(page_size=100))
        )
        mine = {s.uid for s in ledger.studies.values() if s.patient == document}
        assert {s.study_instance_uid for s in listed} == mine
        assert all(s.recognition for s in listed), "a listed study counts as no catalog item"


# --------------------------------------------------------------------------------------------
# The test
# --------------------------------------------------------------------------------------------


def _register(proc: ServeProcess, codes: tuple[str, ...]) -> dict[str, str]:
    """Add the institutions and an API key each, straight into the index (the CLI commands
    take seconds each on a loaded machine; tests/e2e/test_serve.py covers them)."""
    engine = make_engine(load_settings(proc.env).database_url, pool_size=1)
    try:
        with sessionmaker(engine).begin() as session:
            keys = {}
            for code in codes:
                add_institution(session, code, f"Hospital {code}", "Yuzhong", "tertiary")
                keys[code] = new_key(session, HOSPITAL, code)
            return keys
    finally:
        engine.dispose()


def _environment(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> dict[str, str]:
    env = {
        "MUTUALREC_DATA_DIR": str(tmp_path / "var"),
        "MUTUALREC_PATIENT_KEY_SECRET": "crash-safety-secret-" + "x" * 32,
        "MUTUALREC_PARSE_WORKERS": "2",
        "MUTUALREC_AUTH_CACHE_SECONDS": "0",
    }
    if backend == "postgres":
        env["MUTUALREC_DATABASE_URL"] = str(request.getfixturevalue("postgres_url"))
        env["MUTUALREC_AUTO_MIGRATE"] = "true"
    return env


def _report(backend: str, ledger: Ledger, service: Service, extra: dict[str, Any]) -> None:
    lines = [f"crash safety on {backend} (seed {SEED}): {len(ledger.figures)} SIGKILLs"]
    for f in ledger.figures:
        lines.append(
            f"  kill {f.cycle}: after {f.acked_instances} instances + {f.acked_entries} lab "
            f"entries acknowledged ({f.acked_uploads} uploads, {f.acked_bundles} bundles; "
            f"targets {f.target_instances}/{f.target_entries}, {f.load_seconds:.1f} s); "
            f"in flight: {f.uploads_in_flight} uploads "
            f"({f.streams_mid_instance} inside an instance), {f.bundles_in_flight} bundles; "
            f"failed calls {dict(f.failed_codes)}; after restart checked "
            f"{f.checked_instances} instances + {f.checked_entries} entries acknowledged so far, "
            f"held without answer: {f.held_unacked_instances} instances, "
            f"{f.held_unacked_bundles} bundles"
        )
    lines += [f"  {name}: {value}" for name, value in extra.items()]
    lines.append(f"  parse workers left running by a killed server: {service.lingering_workers}")
    print("\n".join(lines))


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_sigkill_during_ingest_loses_nothing_acknowledged(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    rng = random.Random(f"{SEED}/{backend}")
    service = Service(tmp_path, _environment(request, backend, tmp_path))
    ledger = Ledger()
    extra: dict[str, Any] = {}
    started = time.monotonic()
    try:
        proc = service.start()
        keys = _register(proc, INSTITUTIONS)
        for cycle in range(1, CYCLES + 1):
            _load_and_kill(service, keys, ledger, rng, cycle)
            proc = service.start()
            region = Region(proc, keys)
            try:
                _verify(region, ledger, ledger.cycle)
            finally:
                region.close()

        region = Region(proc, keys)
        try:
            thumbnails = _render_thumbnails(region, ledger)
            referenced = region.referenced_keys()
            assert sum(k.startswith("thumbnails/") for k in referenced) == thumbnails
            crash_orphans = region.stored_keys() - referenced
            tmp_left = len(list((region.settings.data_dir / "objects" / ".tmp").iterdir()))
            planted, outside = _plant_orphans(region, ledger)
            removed, removed_keys, summary = _sweep(proc)
            assert set(removed_keys) == crash_orphans | set(planted), (
                f"the sweep removed {sorted(set(removed_keys) - crash_orphans - set(planted))} "
                f"and kept {sorted(crash_orphans | set(planted) - set(removed_keys))}"
            )
            assert removed == len(removed_keys)
            assert region.store.stat(outside).size == 15, "the sweep touched another prefix"
            assert referenced <= region.stored_keys(), "the sweep removed a referenced blob"
            _verify(region, ledger, None)
            again, _, _ = _sweep(proc)
            assert again == 0, "a second sweep still found orphans"
            extra["orphans left by the kills"] = len(crash_orphans)
            extra["orphans planted"] = len(planted)
            extra["thumbnails rendered (referenced, kept)"] = thumbnails
            extra["sweep"] = summary
            extra["temporary files left in objects/.tmp (not swept)"] = tmp_left

            extra["calls re-sent"] = (
                f"{sum(1 for u in ledger.uploads if not u.acked)} uploads, "
                f"{sum(1 for b in ledger.bundles if not b.acked)} bundles"
            )
            resent = _resend(region, ledger)
            extra["re-send outcomes"] = dict(resent)
            _verify(region, ledger, None)
            instances, results = _check_exactly_once(
                region, ledger, Path(tempfile.mkdtemp(dir=tmp_path))
            )
            final, _, final_summary = _sweep(proc)
            assert final == 0, f"orphans after clean re-sends: {final_summary}"
            extra["held at the end, exactly once"] = (
                f"{len(ledger.studies)} studies, {instances} instance versions, "
                f"{results} lab result versions; nothing lost"
            )
        finally:
            region.close()
        assert service.stop() == 0, "the restarted server did not stop cleanly"
        extra["duration"] = f"{time.monotonic() - started:.1f} s"
    finally:
        service.stop()
        _report(backend, ledger, service, extra)


def _recognition_items(region: Region, study: StudyPlan) -> set[str]:
    with region.session() as session:
        return set(
            session.scalars(
                select(RecognitionResult.item_code).where(
                    RecognitionResult.result_ref == f"study:{study.uid}"
                )
            )
        )


def _status_or_nothing(region: Region, study: StudyPlan) -> dict[str, tuple[int, str, int]]:
    try:
        return region.study_status(study)
    except grpc.RpcError as error:
        if error.code() != grpc.StatusCode.NOT_FOUND:
            raise
        return {}


def _held_open(study: StudyPlan, release: threading.Event) -> Iterator[Any]:
    """Every instance of ``study``, then the stream stays open until ``release``."""
    yield from _messages(UploadCall(study, list(study.originals), 0), None)
    release.wait(60)


@pytest.mark.parametrize("fault", ["sigkill", "sigterm"])
def test_a_study_held_whole_without_an_answer_is_still_recognizable(
    fault: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """The window the load test above rarely hits, made deterministic.

    The stream sends every instance and stays open; once GetStudyStatus lists them all
    (committed), the server is killed (or stopped, its grace running out). A gateway resuming
    as the README says sends only what GetStudyStatus does not list: nothing. The study must
    then count for recognition like an acknowledged one.
    """
    env = _environment(request, "sqlite", tmp_path)
    env["MUTUALREC_SHUTDOWN_GRACE_SECONDS"] = "1"
    env["MUTUALREC_PARSE_WORKERS"] = "0"  # no FHIR here: start faster
    service = Service(tmp_path, env)
    rng = random.Random(f"{SEED}/resume")
    code = INSTITUTIONS[0]
    try:
        proc = service.start()
        keys = _register(proc, (code,))
        control, study = _new_study(rng, 1, code), _new_study(rng, 2, code)
        release = threading.Event()
        with grpc.insecure_channel(proc.address) as channel:
            stub = ingest_pb2_grpc.IngestServiceStub(channel)
            stub.UploadStudy(
                _messages(UploadCall(control, list(control.originals), 0), None),
                metadata=auth_metadata(keys[code]),
                timeout=60,
            )
            call = stub.UploadStudy.future(
                _held_open(study, release), metadata=auth_metadata(keys[code]), timeout=60
            )
            region = Region(proc, keys)
            deadline = time.monotonic() + 30
            while len(_status_or_nothing(region, study)) < len(study.originals):
                if time.monotonic() > deadline:
                    pytest.fail("the instances of the open upload were never committed")
                time.sleep(0.05)
            region.close()
            if fault == "sigkill":
                service.crash()
            else:
                service.stop()  # the shutdown grace (1 s here) runs out with the stream open
            release.set()
            if call.exception(60) is None:
                pytest.fail("the open upload was answered")

        proc = service.start()
        region = Region(proc, keys)
        try:
            # A gateway resumes by sending what GetStudyStatus does not list: here, nothing.
            held = region.study_status(study)
            missing = {i.sop for i in study.originals} - set(held)
            if missing or any(held[i.sop][1] != i.sha256 for i in study.originals):
                pytest.fail(f"GetStudyStatus does not report the study whole: {missing}")
            expected = _recognition_items(region, control)
            if not expected:
                pytest.fail("the acknowledged control study is not indexed for recognition")
            items = _recognition_items(region, study)
            assert items == expected, (
                f"study {study.uid} is held whole (GetStudyStatus lists all "
                f"{len(study.originals)} instances, so nothing is re-sent) but the recognition "
                f"index holds {sorted(items)} for it, an acknowledged study {sorted(expected)}: "
                "CheckOrder and ListStudies will never count it"
            )
        finally:
            region.close()
    finally:
        service.stop()
