"""Keep pydicom from writing patients' data into the logs.

pydicom logs (and warns about) malformed values by quoting them, and in a corrupt instance the
quoted "value" runs on through the header: names, identity numbers, birth dates. The service
reports every problem of an instance as a violation of its own instead, so pydicom's logger is
silenced and its value validation on reading turned off, in every process that reads DICOM.
"""

from __future__ import annotations

import logging

from pydicom import config


def quiet_pydicom() -> None:
    """Silence pydicom's logger and its validation of values read (idempotent)."""
    logging.getLogger("pydicom").setLevel(logging.CRITICAL + 1)
    config.settings.reading_validation_mode = config.IGNORE
