"""Report periods a user can write once and run on any day: ``today``, ``today-30``."""

from __future__ import annotations

import datetime as dt
import re

from mutualrec.localtime import LOCAL_ZONE

_RELATIVE = re.compile(r"today(?:\s*-\s*(\d{1,4}))?")


def region_today(now: dt.datetime | None = None) -> dt.date:
    """Today's date on the region's calendar (Asia/Shanghai), the one reports count days in."""
    return (now or dt.datetime.now(dt.UTC)).astimezone(LOCAL_ZONE).date()


def report_date(text: str, today: dt.date) -> str:
    """``text`` as YYYY-MM-DD: ``today`` and ``today-N`` (N days before) are resolved against
    ``today``; anything else is passed on as written, for the server to judge."""
    match = _RELATIVE.fullmatch(text.strip().lower())
    if match is None:
        return text
    return (today - dt.timedelta(days=int(match.group(1) or 0))).isoformat()
