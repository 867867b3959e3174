"""The region's civil time zone: hospitals' dates and times without a zone are in it."""

from __future__ import annotations

from zoneinfo import ZoneInfo

LOCAL_ZONE = ZoneInfo("Asia/Shanghai")
