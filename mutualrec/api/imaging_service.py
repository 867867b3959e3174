"""ImagingService: a patient's cloud imaging history, and share links for their doctors."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import AsyncIterator, Iterator
from typing import TypeAlias

import grpc

from mutualrec.api.auth import caller
from mutualrec.api.status import abort, abort_with_violations
from mutualrec.imaging.history import check_query, encode_cursor
from mutualrec.imaging.patient_history import ListedStudy, StudyNotFound, Viewer
from mutualrec.imaging.records import InstanceFile, SeriesEntry
from mutualrec.imaging.sharing import LinkEntry, LinkState, check_share_request, link_state
from mutualrec.runtime import Runtime
from mutualrec.security.access import HOSPITAL
from mutualrec.security.api_keys import Principal
from mutualrec.security.audit import touched
from mutualrec.security.cursors import InvalidCursor, open_cursor, sign_cursor
from mutualrec.storage.objects import ObjectCorrupt, ObjectNotFound, ObjectStoreError
from mutualrec.v1 import imaging_pb2, imaging_pb2_grpc
from mutualrec.violations import Rejected, Violation

Context: TypeAlias = grpc.aio.ServicerContext

THUMBNAIL_URI = "mutualrec://thumbnail/{study}/{series}"
ACCESS_PAGE = 50
MAX_ACCESS_PAGE = 100
_ACCESS_AUDIENCE = "mutualrec:access-page"
SHARE_URI = "mutualrec://share/{token}"
# Largest data field of a DownloadStudy message.
DOWNLOAD_CHUNK = 1024 * 1024
_STATES = {
    LinkState.ACTIVE: imaging_pb2.SHARE_LINK_ACTIVE,
    LinkState.EXPIRED: imaging_pb2.SHARE_LINK_EXPIRED,
    LinkState.REVOKED: imaging_pb2.SHARE_LINK_REVOKED,
}


def _time(moment: dt.datetime | None) -> str:
    return "" if moment is None else moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _study_proto(listed: ListedStudy) -> imaging_pb2.StudyListing:
    entry = listed.entry
    return imaging_pb2.StudyListing(
        study_instance_uid=entry.study_instance_uid,
        institution_code=entry.institution_code,
        institution_name=entry.institution_name,
        study_date="" if entry.study_date is None else entry.study_date.isoformat(),
        study_time="" if entry.study_time is None else entry.study_time.isoformat("seconds"),
        modalities=entry.modalities,
        body_parts=entry.body_parts,
        description=entry.description,
        contrast=entry.contrast,
        series_count=entry.series_count,
        instance_count=entry.instance_count,
        size_bytes=entry.size_bytes,
        accession_number=entry.accession_number,
        recognition=[
            imaging_pb2.StudyRecognition(
                item_code=v.item_code,
                item_name=v.item_name,
                valid_until=_time(v.valid_until),
                within_validity=v.within_validity,
            )
            for v in listed.recognition
        ],
        not_recognized_reason=entry.not_recognized_reason,
    )


def _series_proto(study_uid: str, series: SeriesEntry) -> imaging_pb2.SeriesListing:
    return imaging_pb2.SeriesListing(
        series_instance_uid=series.series_instance_uid,
        series_number=series.series_number or 0,
        modality=series.modality,
        body_part=series.body_part,
        description=series.description,
        contrast=series.contrast,
        instance_count=series.instance_count,
        size_bytes=series.size_bytes,
        thumbnail_uri=THUMBNAIL_URI.format(study=study_uid, series=series.series_instance_uid),
    )


def _link_proto(link: LinkEntry, now: dt.datetime) -> imaging_pb2.ShareLink:
    return imaging_pb2.ShareLink(
        link_id=link.link_id,
        study_instance_uid=link.study_instance_uid,
        note=link.note,
        create_time=_time(link.created_at),
        expire_time=_time(link.expires_at),
        revoke_time=_time(link.revoked_at),
        state=_STATES[link_state(link.expires_at, link.revoked_at, now)],
        opening_count=link.opening_count,
        openings=[
            imaging_pb2.ShareOpening(time=_time(o.opened_at), rpc=o.rpc, peer=o.peer)
            for o in link.openings
        ],
    )


def _viewer(principal: Principal, context: Context) -> Viewer:
    if principal.role == HOSPITAL:
        # A hospital reads a study only while a recent check of its recognized that study.
        return Viewer(
            patient_key="",
            checking_institution_id=principal.institution_id,
            peer=context.peer() or "",
        )
    assert principal.patient_key is not None
    return Viewer(
        patient_key=principal.patient_key,
        shared_study_id=principal.shared_study_id,
        share_link_id=principal.share_link_id,
        peer=context.peer() or "",
    )


def _download_messages(
    read: Iterator[bytes], instance: InstanceFile
) -> Iterator[imaging_pb2.DownloadStudyResponse]:
    """One instance as messages: its description on the first, data of at most 1 MiB each."""
    first = True
    digest = hashlib.sha256()
    for block in read:
        for start in range(0, len(block), DOWNLOAD_CHUNK):
            part = block[start : start + DOWNLOAD_CHUNK]
            digest.update(part)
            message = imaging_pb2.DownloadStudyResponse(data=part)
            if first:
                message.instance.CopyFrom(_instance_proto(instance))
                first = False
            yield message
    if digest.hexdigest() != instance.sha256:
        raise ObjectCorrupt(f"stored bytes of {instance.sop_instance_uid} fail their SHA-256")
    closing = imaging_pb2.DownloadStudyResponse(end_of_instance=True)
    if first:
        closing.instance.CopyFrom(_instance_proto(instance))
    yield closing


def _instance_proto(instance: InstanceFile) -> imaging_pb2.DownloadedInstance:
    return imaging_pb2.DownloadedInstance(
        sop_instance_uid=instance.sop_instance_uid,
        series_instance_uid=instance.series_instance_uid,
        version=instance.version,
        size_bytes=instance.size_bytes,
        sha256=instance.sha256,
        file_name=f"{instance.series_instance_uid}/{instance.sop_instance_uid}.dcm",
    )


class ImagingService(imaging_pb2_grpc.ImagingServiceServicer):  # type: ignore[misc]
    """Translates imaging-history calls between messages and :mod:`mutualrec.imaging`."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.history = runtime.history

    def _reader(self, context: Context) -> Viewer:
        return _viewer(caller(self.runtime, context), context)

    async def _audit_read(self, viewer: Viewer, study_instance_uid: str, what: str) -> None:
        """Name the patient whose study the call reads in its audit entries. A hospital names
        no patient in its request: the study does, if the hospital may open it at all."""
        if viewer.checking_institution_id is None:
            touched(viewer.patient_key, what)
            return
        try:
            entry = await self.runtime.run_blocking(
                self.history.find_study, viewer, study_instance_uid, "audit"
            )
        except StudyNotFound:
            # A refused attempt on a study that exists is the patient's business too: it is
            # recorded against them (the call's outcome says NOT_FOUND); the caller learns
            # nothing more than for a study that does not exist.
            patient = await self.runtime.run_blocking(self.history.patient_of, study_instance_uid)
            if patient is not None:
                touched(
                    patient, f"{what} (refused: no recent check of this institution recognized it)"
                )
            return
        touched(entry.patient_key, what)

    def _owner(self, context: Context) -> str:
        principal = caller(self.runtime, context)
        assert principal.patient_key is not None
        return principal.patient_key

    async def ListStudies(
        self, request: imaging_pb2.ListStudiesRequest, context: Context
    ) -> imaging_pb2.ListStudiesResponse:
        """The patient's studies, newest first, a page at a time."""
        patient_key = self._owner(context)
        touched(patient_key, "list of studies")
        secret = self.runtime.settings.token_secret
        try:
            query = check_query(
                secret,
                patient_key,
                page_size=request.page_size,
                page_token=request.page_token,
                modality=request.modality,
                from_date=request.from_date,
                to_date=request.to_date,
                institution_code=request.institution_code,
            )
        except Rejected as rejection:
            await abort_with_violations(
                context, grpc.StatusCode.INVALID_ARGUMENT, rejection.summary, rejection.violations
            )
        page = await self.runtime.run_blocking(
            self.history.list_studies, patient_key, query, dt.datetime.now(dt.UTC)
        )
        return imaging_pb2.ListStudiesResponse(
            studies=[_study_proto(listed) for listed in page.studies],
            next_page_token=(
                encode_cursor(secret, patient_key, query.history_filter, page.next_cursor)
                if page.next_cursor is not None
                else ""
            ),
        )

    async def GetStudy(
        self, request: imaging_pb2.GetStudyRequest, context: Context
    ) -> imaging_pb2.GetStudyResponse:
        """One study of the patient's (or the shared study) with its series."""
        viewer = self._reader(context)
        await self._audit_read(
            viewer, request.study_instance_uid, f"study {request.study_instance_uid or '(shared)'}"
        )
        if not request.study_instance_uid and viewer.shared_study_id is None:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, "study_instance_uid is empty")
        try:
            listed, series = await self.runtime.run_blocking(
                self.history.study, viewer, request.study_instance_uid, dt.datetime.now(dt.UTC)
            )
        except StudyNotFound:
            await abort(context, grpc.StatusCode.NOT_FOUND, "no such study")
        uid = listed.entry.study_instance_uid
        return imaging_pb2.GetStudyResponse(
            study=_study_proto(listed), series=[_series_proto(uid, s) for s in series]
        )

    async def GetThumbnail(
        self, request: imaging_pb2.GetThumbnailRequest, context: Context
    ) -> imaging_pb2.Thumbnail:
        """A PNG of one series, rendered on first request and kept."""
        viewer = self._reader(context)
        await self._audit_read(
            viewer,
            request.study_instance_uid,
            f"thumbnail of series {request.series_instance_uid} "
            f"of study {request.study_instance_uid or '(shared)'}",
        )
        if not request.series_instance_uid:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, "series_instance_uid is empty")
        try:
            thumbnail, sop_uid = await self.runtime.run_blocking(
                self.history.thumbnail,
                viewer,
                request.study_instance_uid,
                request.series_instance_uid,
            )
        except StudyNotFound:
            await abort(context, grpc.StatusCode.NOT_FOUND, "no such study or series")
        except (ObjectNotFound, ObjectStoreError):
            await abort(
                context, grpc.StatusCode.UNAVAILABLE, "the object store could not be read; retry"
            )
        return imaging_pb2.Thumbnail(
            content_type="image/png",
            data=thumbnail.png,
            width=thumbnail.width,
            height=thumbnail.height,
            placeholder=thumbnail.placeholder,
            reason=thumbnail.reason,
            sop_instance_uid=sop_uid,
        )

    async def DownloadStudy(
        self, request: imaging_pb2.DownloadStudyRequest, context: Context
    ) -> AsyncIterator[imaging_pb2.DownloadStudyResponse]:
        """The study's original instances, streamed chunk by chunk with bounded memory."""
        viewer = self._reader(context)
        await self._audit_read(
            viewer,
            request.study_instance_uid,
            f"files of study {request.study_instance_uid or '(shared)'}",
        )
        if not request.study_instance_uid and viewer.shared_study_id is None:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, "study_instance_uid is empty")
        try:
            files = await self.runtime.run_blocking(
                self.history.files,
                viewer,
                request.study_instance_uid,
                request.series_instance_uid,
            )
        except StudyNotFound:
            await abort(context, grpc.StatusCode.NOT_FOUND, "no such study or series")
        for instance in files:
            messages = _download_messages(self.history.read(instance), instance)
            while True:
                try:
                    message = await self.runtime.run_blocking(next, messages, None)
                except ObjectCorrupt:
                    await abort(
                        context,
                        grpc.StatusCode.DATA_LOSS,
                        f"instance {instance.sop_instance_uid} is damaged in the object store",
                    )
                except (ObjectNotFound, ObjectStoreError):
                    await abort(
                        context,
                        grpc.StatusCode.UNAVAILABLE,
                        f"instance {instance.sop_instance_uid} could not be read; retry",
                    )
                if message is None:
                    break
                yield message

    async def CreateShareLink(
        self, request: imaging_pb2.CreateShareLinkRequest, context: Context
    ) -> imaging_pb2.CreateShareLinkResponse:
        """A read-only link to one of the patient's studies."""
        patient_key = self._owner(context)
        touched(patient_key, f"share link to study {request.study_instance_uid}")
        now = dt.datetime.now(dt.UTC)
        try:
            share = check_share_request(request.expire_time, request.note, now)
        except Rejected as rejection:
            await abort_with_violations(
                context, grpc.StatusCode.INVALID_ARGUMENT, rejection.summary, rejection.violations
            )
        if not request.study_instance_uid:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, "study_instance_uid is empty")
        try:
            created = await self.runtime.run_blocking(
                self.history.create_link, patient_key, request.study_instance_uid, share, now
            )
        except StudyNotFound:
            await abort(context, grpc.StatusCode.NOT_FOUND, "no such study")
        return imaging_pb2.CreateShareLinkResponse(
            link=_link_proto(created.link, now),
            token=created.token,
            uri=SHARE_URI.format(token=created.token),
        )

    async def ListShareLinks(
        self, request: imaging_pb2.ListShareLinksRequest, context: Context
    ) -> imaging_pb2.ListShareLinksResponse:
        """The patient's links with their openings."""
        patient_key = self._owner(context)
        touched(patient_key, "list of share links")
        links = await self.runtime.run_blocking(
            self.history.links, patient_key, request.study_instance_uid
        )
        now = dt.datetime.now(dt.UTC)
        return imaging_pb2.ListShareLinksResponse(links=[_link_proto(link, now) for link in links])

    async def RevokeShareLink(
        self, request: imaging_pb2.RevokeShareLinkRequest, context: Context
    ) -> imaging_pb2.ShareLink:
        """Close a link at once; revoking twice keeps the first revocation."""
        patient_key = self._owner(context)
        touched(patient_key, f"revocation of share link {request.link_id}")
        now = dt.datetime.now(dt.UTC)
        link = await self.runtime.run_blocking(
            self.history.revoke_link, patient_key, request.link_id, now
        )
        if link is None:
            await abort(context, grpc.StatusCode.NOT_FOUND, "no such share link")
        return _link_proto(link, now)

    async def ListAccesses(
        self, request: imaging_pb2.ListAccessesRequest, context: Context
    ) -> imaging_pb2.ListAccessesResponse:
        """Who read or wrote the patient's data, from the audit trail."""
        patient_key = self._owner(context)
        touched(patient_key, "list of accesses")
        secret = self.runtime.settings.token_secret
        page_size = request.page_size or ACCESS_PAGE
        before_id = None
        problems = []
        if not 1 <= page_size <= MAX_ACCESS_PAGE:
            problems.append(
                Violation(
                    "page_size", f"1 to {MAX_ACCESS_PAGE} (0 for {ACCESS_PAGE})", "OUT_OF_RANGE"
                )
            )
        if request.page_token:
            try:
                before_id = int(
                    open_cursor(secret, _ACCESS_AUDIENCE, patient_key, "", request.page_token)
                )
            except (InvalidCursor, TypeError, ValueError) as exc:
                reason = str(exc) if isinstance(exc, InvalidCursor) else "malformed page token"
                problems.append(Violation("page_token", reason, "INVALID_PAGE_TOKEN"))
        if problems:
            await abort_with_violations(
                context, grpc.StatusCode.INVALID_ARGUMENT, "the request is invalid", problems
            )
        # What this patient's own earlier calls queued is committed before it is read.
        await self.runtime.run_blocking(self.runtime.audit.flush, 2.0)
        rows = await self.runtime.run_blocking(
            self.history.accesses, patient_key, page_size + 1, before_id
        )
        more = len(rows) > page_size
        rows = rows[:page_size]
        return imaging_pb2.ListAccessesResponse(
            accesses=[
                imaging_pb2.DataAccess(
                    time=_time(access.at),
                    role=access.role,
                    institution_code=access.institution_code,
                    institution_name=access.institution_name,
                    credential=access.credential,
                    rpc=access.rpc,
                    what=access.what,
                    outcome=access.outcome,
                )
                for _row_id, access in rows
            ],
            next_page_token=(
                sign_cursor(secret, _ACCESS_AUDIENCE, patient_key, "", rows[-1][0]) if more else ""
            ),
        )
