"""What a running server holds: settings, the index engine, the object store, worker threads."""

from __future__ import annotations

import asyncio
import contextvars
import datetime as dt
import functools
import tempfile
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import ParamSpec, TypeVar

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from mutualrec.change_watch import ChangeWatch
from mutualrec.config import Settings
from mutualrec.imaging.thumbnails import Thumbnail, render_thumbnail
from mutualrec.ingest.dicom_limits import HeaderLimits
from mutualrec.parse_workers import ParseWorkers
from mutualrec.private_files import private_dir
from mutualrec.security.limits import Limits, Slots, TokenBuckets
from mutualrec.security.principal_cache import PrincipalCache
from mutualrec.services.audit import AuditWriter
from mutualrec.services.authentication import Authentication
from mutualrec.services.catalog import CatalogReader
from mutualrec.services.cds_clients import CdsClients
from mutualrec.services.dicom_peers import DicomPeers
from mutualrec.services.dicom_store import DicomStorage
from mutualrec.services.identity import PatientTokens
from mutualrec.services.lab_submission import LabSubmissions, SubmissionLimits
from mutualrec.services.patient_history import PatientHistory
from mutualrec.services.recognition import Recognition
from mutualrec.services.reference import ReferenceCache
from mutualrec.services.result_indexing import ResultIndexing
from mutualrec.services.sharing import Sharing
from mutualrec.services.statistics import Statistics
from mutualrec.services.study_links import StudyLinks
from mutualrec.services.study_upload import StudyUploads, UploadLimits
from mutualrec.services.web_sessions import SessionLimits, WebSessions
from mutualrec.services.web_store import WebStore
from mutualrec.storage import catalog_store
from mutualrec.storage.db import ensure_schema, make_engine
from mutualrec.storage.factory import open_object_store
from mutualrec.storage.objects import ObjectStore
from mutualrec.storage.tally_compactor import TallyCompactor

P = ParamSpec("P")
T = TypeVar("T")


@dataclass
class Runtime:
    """Shared resources of one server process."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    store: ObjectStore
    executor: ThreadPoolExecutor
    # Pure CPU work (parsing and validating documents) runs here: worker processes use every
    # core whatever the number of connections, where threads would share one GIL.
    cpu_executor: Executor
    reference: ReferenceCache
    recognition: Recognition
    principals: PrincipalCache
    history: PatientHistory
    sharing: Sharing
    statistics: Statistics
    catalog: CatalogReader
    patient_tokens: PatientTokens
    audit: AuditWriter
    tallies: TallyCompactor
    limits: Limits
    # DICOM headers are walked here, a few at a time: uploads of costly instances must not hold
    # the worker threads that every storage-backed call needs.
    header_executor: ThreadPoolExecutor
    # Drops `reference`, `principals` and `cds_clients`' keys when an administrator changed
    # something.
    changes: ChangeWatch
    authentication: Authentication
    study_uploads: StudyUploads
    lab_submissions: LabSubmissions
    # The DICOM C-STORE door's services: who may call, and storing what they send.
    dicom_peers: DicomPeers
    dicom_storage: DicomStorage
    # The CDS Hooks services' callers: EHRs' JWTs verified against their registered keys.
    cds_clients: CdsClients
    # Browsers signed in to the web pages.
    web_sessions: WebSessions
    # STOW-RS: DICOMweb's store, over the study upload service as the other doors.
    web_store: WebStore
    # The open_url of a recognized study: a check-bound link to the viewer.
    study_links: StudyLinks
    # Regulators' reports wait their turn here, whichever door asks (gRPC or the dashboard):
    # a few regulators must not take the CPU that hospitals' ordering-time checks need.
    report_turns: asyncio.Semaphore

    @classmethod
    def open(cls, settings: Settings) -> Runtime:
        """Connect to the index (migrating it when allowed) and the object store."""
        if settings.data_dir.is_dir():
            # Made by an older version, or by hand with the usual 0755: patients' data inside.
            private_dir(settings.data_dir)
        engine = make_engine(settings.database_url, pool_size=settings.blocking_workers)
        ensure_schema(engine, auto_migrate=settings.auto_migrate)
        executor = ThreadPoolExecutor(
            max_workers=settings.blocking_workers, thread_name_prefix="mutualrec-io"
        )
        cpu_executor: Executor = executor
        if settings.parse_workers > 0:
            # Started on first use (the first FHIR document or thumbnail): a DICOM-only
            # deployment never holds their 260 MiB, nor their resource tracker.
            cpu_executor = ParseWorkers(settings.parse_workers)
        sessions = sessionmaker(engine, expire_on_commit=False)
        # Once, at start: every check and catalog read needs a catalog version to exist.
        with sessions.begin() as session:
            catalog_store.ensure_packaged_catalog(session)
        reference = ReferenceCache(sessions)
        principals = PrincipalCache(settings.auth_cache_seconds)
        cds_clients = CdsClients(sessions)

        def forget_cached() -> None:
            reference.invalidate()
            principals.clear()
            cds_clients.forget()

        store = open_object_store(settings)
        audit = AuditWriter(sessions)
        sharing = Sharing(sessions, token_secret=settings.token_secret)
        header_executor = ThreadPoolExecutor(
            max_workers=settings.header_workers, thread_name_prefix="mutualrec-header"
        )
        indexing = ResultIndexing(reference)
        study_uploads = StudyUploads(
            store=store,
            sessions=sessions,
            indexing=indexing,
            limits=UploadLimits(
                patient_key_secret=settings.patient_key_secret,
                max_instance_bytes=settings.max_instance_bytes,
                max_chunk_bytes=settings.max_chunk_bytes,
                header_limits=HeaderLimits(
                    max_inflated_bytes=settings.max_inflated_bytes,
                    max_inflate_ratio=settings.max_inflate_ratio,
                    max_elements=settings.max_dicom_elements,
                ),
            ),
            blocking=executor,
            headers=header_executor,
        )
        dicom_storage = DicomStorage(study_uploads)
        return cls(
            settings=settings,
            engine=engine,
            sessions=sessions,
            store=store,
            executor=executor,
            cpu_executor=cpu_executor,
            reference=reference,
            recognition=Recognition(
                make_engine(
                    settings.database_url, pool_size=settings.blocking_workers, fast_records=True
                )
                if engine.dialect.name == "postgresql"
                else engine,
                reference,
                settings.patient_key_secret,
                settings.check_batch,
            ),
            principals=principals,
            history=PatientHistory(
                sessions,
                store,
                lambda: reference.data().catalog,
                audit,
                Path(tempfile.gettempdir()),
                # Decoding and resizing pixels is pure CPU: in a worker process it does not hold
                # the server's GIL while other calls wait. Without workers, on the caller's thread.
                functools.partial(_render_elsewhere, cpu_executor)
                if settings.parse_workers > 0
                else render_thumbnail,
                token_secret=settings.token_secret,
            ),
            sharing=sharing,
            statistics=Statistics(sessions, reference.data, settings.min_group_size),
            catalog=CatalogReader(sessions),
            patient_tokens=PatientTokens(settings.patient_key_secret, settings.token_secret),
            audit=audit,
            tallies=TallyCompactor(engine, settings.tally_interval_seconds),
            limits=Limits(
                TokenBuckets(settings.rate_limit, settings.rate_burst),
                Slots(settings.max_uploads),
                peers=Slots(settings.max_calls_per_peer),
                auth_failures=TokenBuckets(settings.auth_failure_rate, settings.auth_failure_burst),
            ),
            header_executor=header_executor,
            changes=ChangeWatch(sessions, forget_cached),
            authentication=Authentication(sessions, principals, settings.token_secret, sharing),
            study_uploads=study_uploads,
            dicom_peers=DicomPeers(sessions),
            dicom_storage=dicom_storage,
            # STOW-RS instances without an identity resolve and commit as C-STORE's do, in the
            # same group commits.
            web_store=WebStore(study_uploads, dicom_storage),
            study_links=StudyLinks(settings.token_secret, settings.http_public_url),
            cds_clients=cds_clients,
            report_turns=asyncio.Semaphore(settings.max_concurrent_reports),
            web_sessions=WebSessions(
                sessions,
                SessionLimits(
                    idle=dt.timedelta(seconds=settings.web_session_idle_seconds),
                    absolute=dt.timedelta(seconds=settings.web_session_max_seconds),
                ),
            ),
            lab_submissions=LabSubmissions(
                store=store,
                sessions=sessions,
                indexing=indexing,
                limits=SubmissionLimits(
                    max_bytes=settings.max_fhir_bytes,
                    patient_key_secret=settings.patient_key_secret,
                    clock_skew=dt.timedelta(seconds=settings.clock_skew_seconds),
                ),
                blocking=executor,
                cpu=cpu_executor,
            ),
        )

    async def run_blocking(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run blocking storage or parsing work on the worker threads, off the event loop.

        In a copy of the caller's context: a service says which patients' data the call
        touched (:func:`mutualrec.security.audit.touched`) into the call's audit record, which
        a worker thread would not see otherwise.
        """
        loop = asyncio.get_running_loop()
        work = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
        return await loop.run_in_executor(self.executor, work)

    async def run_header(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run header parsing on its own bounded threads, off the storage workers."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self.header_executor, functools.partial(fn, *args, **kwargs)
        )

    async def run_cpu(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run pure CPU work on the parse workers; arguments and result must pickle."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.cpu_executor, functools.partial(fn, *args, **kwargs))

    def close(self) -> None:
        """Release processes, threads and connections; write the audit entries still queued and
        fold the statistics deltas."""
        self.changes.close()
        self.recognition.close()
        self.audit.close()
        self.tallies.close()
        self.cpu_executor.shutdown(wait=True, cancel_futures=True)
        self.executor.shutdown(wait=True)
        self.header_executor.shutdown(wait=True)
        self.engine.dispose()
        if self.recognition.engine is not self.engine:
            self.recognition.engine.dispose()


def _render_elsewhere(executor: Executor, path: Path) -> Thumbnail:
    return executor.submit(render_thumbnail, path).result()
