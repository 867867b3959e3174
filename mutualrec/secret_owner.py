"""Which deployment a generated patient-key secret belongs to, so sharing one is noticed.

Without ``MUTUALREC_PATIENT_KEY_SECRET`` the secret is generated into the data directory, and
the objects default to a folder beside it. A second deployment started from the same folder
(say PostgreSQL set, the data directory not) silently keys its patients with the first one's
secret and writes into its objects. The first server to use the secret file records the index
it served next to it; a server on another index warns at start.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from sqlalchemy.engine import make_url

from mutualrec.config import PREFIX, Settings

MARKER_SUFFIX = ".deployment"


def _index(url: str) -> str:
    """The database URL without its password (a changed password is the same deployment)."""
    with contextlib.suppress(Exception):
        return make_url(url).render_as_string(hide_password=True)
    return url


def shared_secret_warning(settings: Settings) -> str | None:
    """A warning when the generated secret file was first used with another index; records
    this one when the file has no owner yet. None when all is well (or the secret is set)."""
    if settings.patient_key_secret_source == f"{PREFIX}PATIENT_KEY_SECRET":
        return None
    secret_file = Path(settings.patient_key_secret_source)
    marker = secret_file.with_name(secret_file.name + MARKER_SUFFIX)
    index = _index(settings.database_url)
    try:
        recorded = json.loads(marker.read_text())["database_url"]
    except FileNotFoundError:
        _record(marker, index)
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return f"{marker} is unreadable: cannot tell whether another deployment uses {secret_file}"
    if recorded == index:
        return None
    return (
        f"warning: the patient-key secret {secret_file} was first used with the index {recorded};"
        f" this server uses {index}. Two deployments share one secret file (and its data "
        f"directory's objects): give each its own {PREFIX}DATA_DIR, or set "
        f"{PREFIX}PATIENT_KEY_SECRET. If this deployment moved, delete {marker}."
    )


def _record(marker: Path, index: str) -> None:
    # Written once, by whichever server starts first; a race leaves one of two equal writers.
    with contextlib.suppress(FileExistsError):
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump({"database_url": index}, handle)
