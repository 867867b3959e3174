"""QIDO-RS (PS3.18 10.6): searches for studies, series and instances, answered in the DICOM
JSON model."""

from __future__ import annotations

import json

from pydicom.dataelem import DataElement
from starlette.requests import Request
from starlette.responses import Response

from mutualrec.http.admission import peer_address
from mutualrec.http.dicomweb.multipart import accepted, not_acceptable
from mutualrec.http.dicomweb.paths import base_url, path_uids, retrieve_url
from mutualrec.imaging.dicom_json import entry_json
from mutualrec.imaging.dicomweb_query import Level, defaults_for, parse_query
from mutualrec.runtime import Runtime
from mutualrec.security.api_keys import Principal
from mutualrec.services.study_reading import SearchScope, StudyReading

DICOM_JSON = "application/dicom+json"
_JSON_TYPES = (DICOM_JSON, "application/json")
_RETRIEVE_URL_TAG = 0x00081190


def _check_accept(request: Request) -> None:
    header = request.headers.get("accept")
    if not any(r.covers(t) for r in accepted(header) for t in _JSON_TYPES):
        raise not_acceptable(header, DICOM_JSON)


async def search(
    runtime: Runtime, reading: StudyReading, request: Request, principal: Principal, level: Level
) -> Response:
    """One search: the level asked, under the study or series the path names."""
    study, series, _ = path_uids(request)
    fixed = [Level.STUDY] if study else []
    if series:
        fixed.append(Level.SERIES)
    query = parse_query(request.query_params.multi_items(), level, fixed)
    _check_accept(request)
    found = await runtime.run_blocking(
        reading.search,
        principal,
        peer_address(request),
        query,
        SearchScope(study, series),
    )
    if not found:
        # PS3.18 8.3.4.4.1: no match is 204 with no payload (CP-2473, not yet final, would
        # make it 200 with an empty array; clients such as dicomweb-client take both).
        return Response(status_code=204)
    base = base_url(request, runtime.settings.http_public_url)
    shown = (*defaults_for(level, fixed), *query.include)
    entries = []
    for entry in found:
        url = retrieve_url(
            base, entry.study_instance_uid, entry.series_instance_uid, entry.sop_instance_uid
        )
        entry.attributes.add(DataElement(_RETRIEVE_URL_TAG, "UR", url))
        entries.append(entry_json(entry.attributes, shown, query.include_all))
    body = json.dumps(entries, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return Response(body, media_type=DICOM_JSON)
