"""ImagingService: a patient's cloud imaging history, and share links for their doctors."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Iterator
from typing import TypeAlias

import grpc

from mutualrec.api.auth import caller
from mutualrec.imaging.records import InstanceFile, SeriesEntry
from mutualrec.imaging.sharing import LinkEntry, LinkState
from mutualrec.runtime import Runtime
from mutualrec.services.patient_history import (
    AccessesRequest,
    ListedStudy,
    StudiesRequest,
    StudyRequest,
)
from mutualrec.services.sharing import ShareLinkRequest
from mutualrec.v1 import imaging_pb2, imaging_pb2_grpc

Context: TypeAlias = grpc.aio.ServicerContext

THUMBNAIL_URI = "mutualrec://thumbnail/{study}/{series}"
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
        state=_STATES[link.state(now)],
        opening_count=link.opening_count,
        openings=[
            imaging_pb2.ShareOpening(time=_time(o.opened_at), rpc=o.rpc, peer=o.peer)
            for o in link.openings
        ],
    )


def _download_messages(
    read: Iterator[bytes], instance: InstanceFile
) -> Iterator[imaging_pb2.DownloadStudyResponse]:
    """One instance as messages: its description on the first, data of at most 1 MiB each."""
    first = True
    for block in read:
        for start in range(0, len(block), DOWNLOAD_CHUNK):
            message = imaging_pb2.DownloadStudyResponse(data=block[start : start + DOWNLOAD_CHUNK])
            if first:
                message.instance.CopyFrom(_instance_proto(instance))
                first = False
            yield message
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
    """Translates imaging-history calls between messages and :mod:`mutualrec.services`."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.history = runtime.history
        self.sharing = runtime.sharing

    async def ListStudies(
        self, request: imaging_pb2.ListStudiesRequest, context: Context
    ) -> imaging_pb2.ListStudiesResponse:
        """The patient's studies, newest first, a page at a time."""
        page = await self.runtime.run_blocking(
            self.history.list_studies,
            caller(self.runtime, context),
            StudiesRequest(
                page_size=request.page_size,
                page_token=request.page_token,
                modality=request.modality,
                from_date=request.from_date,
                to_date=request.to_date,
                institution_code=request.institution_code,
            ),
        )
        return imaging_pb2.ListStudiesResponse(
            studies=[_study_proto(listed) for listed in page.studies],
            next_page_token=page.next_page_token,
        )

    async def GetStudy(
        self, request: imaging_pb2.GetStudyRequest, context: Context
    ) -> imaging_pb2.GetStudyResponse:
        """One study of the patient's (or the shared study) with its series."""
        found = await self.runtime.run_blocking(
            self.history.study,
            caller(self.runtime, context),
            StudyRequest(request.study_instance_uid, peer=context.peer() or ""),
        )
        uid = found.study.entry.study_instance_uid
        return imaging_pb2.GetStudyResponse(
            study=_study_proto(found.study), series=[_series_proto(uid, s) for s in found.series]
        )

    async def GetThumbnail(
        self, request: imaging_pb2.GetThumbnailRequest, context: Context
    ) -> imaging_pb2.Thumbnail:
        """A PNG of one series, rendered on first request and kept."""
        shown = await self.runtime.run_blocking(
            self.history.thumbnail,
            caller(self.runtime, context),
            StudyRequest(
                request.study_instance_uid,
                request.series_instance_uid,
                peer=context.peer() or "",
            ),
        )
        thumbnail = shown.thumbnail
        return imaging_pb2.Thumbnail(
            content_type="image/png",
            data=thumbnail.png,
            width=thumbnail.width,
            height=thumbnail.height,
            placeholder=thumbnail.placeholder,
            reason=thumbnail.reason,
            sop_instance_uid=shown.sop_instance_uid,
        )

    async def DownloadStudy(
        self, request: imaging_pb2.DownloadStudyRequest, context: Context
    ) -> AsyncIterator[imaging_pb2.DownloadStudyResponse]:
        """The study's original instances, streamed chunk by chunk with bounded memory."""
        files = await self.runtime.run_blocking(
            self.history.files,
            caller(self.runtime, context),
            StudyRequest(
                request.study_instance_uid,
                request.series_instance_uid,
                peer=context.peer() or "",
            ),
        )
        for instance in files:
            messages = _download_messages(self.history.read(instance), instance)
            while True:
                message = await self.runtime.run_blocking(next, messages, None)
                if message is None:
                    break
                yield message

    async def CreateShareLink(
        self, request: imaging_pb2.CreateShareLinkRequest, context: Context
    ) -> imaging_pb2.CreateShareLinkResponse:
        """A read-only link to one of the patient's studies."""
        created = await self.runtime.run_blocking(
            self.sharing.create,
            caller(self.runtime, context),
            ShareLinkRequest(request.study_instance_uid, request.expire_time, request.note),
        )
        return imaging_pb2.CreateShareLinkResponse(
            link=_link_proto(created.link, dt.datetime.now(dt.UTC)),
            token=created.token,
            uri=SHARE_URI.format(token=created.token),
        )

    async def ListShareLinks(
        self, request: imaging_pb2.ListShareLinksRequest, context: Context
    ) -> imaging_pb2.ListShareLinksResponse:
        """The patient's links with their openings."""
        links = await self.runtime.run_blocking(
            self.sharing.links, caller(self.runtime, context), request.study_instance_uid
        )
        now = dt.datetime.now(dt.UTC)
        return imaging_pb2.ListShareLinksResponse(links=[_link_proto(link, now) for link in links])

    async def RevokeShareLink(
        self, request: imaging_pb2.RevokeShareLinkRequest, context: Context
    ) -> imaging_pb2.ShareLink:
        """Close a link at once; revoking twice keeps the first revocation."""
        link = await self.runtime.run_blocking(
            self.sharing.revoke, caller(self.runtime, context), request.link_id
        )
        return _link_proto(link, dt.datetime.now(dt.UTC))

    async def ListAccesses(
        self, request: imaging_pb2.ListAccessesRequest, context: Context
    ) -> imaging_pb2.ListAccessesResponse:
        """Who read or wrote the patient's data, from the audit trail."""
        page = await self.runtime.run_blocking(
            self.history.accesses,
            caller(self.runtime, context),
            AccessesRequest(page_size=request.page_size, page_token=request.page_token),
        )
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
                for access in page.accesses
            ],
            next_page_token=page.next_page_token,
        )
