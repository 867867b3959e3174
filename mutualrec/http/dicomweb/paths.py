"""What every DICOMweb route reads of its request: the UIDs of its path, checked, the query
parameters it takes (any other is refused by name), and the URLs its answers point to."""

from __future__ import annotations

import re
from collections.abc import Collection

from starlette.requests import Request

from mutualrec.violations import Rejected, Violation

PREFIX = "/dicomweb"
_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
_PATH_UIDS = ("study", "series", "instance")


def path_uids(request: Request) -> tuple[str, str, str]:
    """The study, series and instance UIDs the path names ("" where it names none);
    :class:`Rejected` naming each one that is not a UID."""
    problems = []
    found = []
    for name in _PATH_UIDS:
        value = str(request.path_params.get(name, ""))
        if name in request.path_params and (len(value) > 64 or not _UID.match(value)):
            problems.append(
                Violation(name, "not a DICOM UID (digits and dots, at most 64)", "MALFORMED_UID")
            )
        found.append(value)
    if problems:
        raise Rejected("the path is invalid", problems)
    return found[0], found[1], found[2]


def only_parameters(request: Request, allowed: Collection[str]) -> None:
    """Refuse, by name, every query parameter outside ``allowed``."""
    unknown = sorted({name for name in request.query_params if name not in allowed})
    if unknown:
        supported = ", ".join(sorted(allowed)) or "none"
        raise Rejected(
            "the request has parameters this resource does not take",
            [
                Violation(name[:64], f"not supported here; supported: {supported}", "UNSUPPORTED")
                for name in unknown
            ],
        )


def base_url(request: Request, public_url: str) -> str:
    """Where the DICOMweb routes are, as clients reach them (behind a proxy:
    ``MUTUALREC_HTTP_PUBLIC_URL``)."""
    root = public_url or str(request.base_url).rstrip("/")
    return root + PREFIX


def retrieve_url(base: str, study: str, series: str = "", instance: str = "") -> str:
    """The WADO-RS URL of a study, series or instance."""
    url = f"{base}/studies/{study}"
    if series:
        url += f"/series/{series}"
        if instance:
            url += f"/instances/{instance}"
    return url
