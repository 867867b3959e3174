"""Server-rendered pages: Jinja2 templates (autoescaped) with the request's language, its CSRF
token, and nothing inline that a Content-Security-Policy would have to allow."""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from mutualrec.config import Settings
from mutualrec.http.browser import (
    PRESESSION_COOKIE,
    expected_csrf,
    new_presession_token,
    set_cookie,
)
from mutualrec.http.strings import language_of, strings
from mutualrec.localtime import LOCAL_ZONE


@functools.cache
def environment() -> Environment:
    """The templates, loaded once from the package."""
    env = Environment(
        loader=PackageLoader("mutualrec.http", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
    )
    env.filters["local"] = _local_time
    return env


def _local_time(value: dt.datetime | None) -> str:
    """A time as patients of the region read it (China Standard Time)."""
    if value is None:
        return ""
    return value.astimezone(LOCAL_ZONE).strftime("%Y-%m-%d %H:%M")


def render_page(
    request: Request, settings: Settings, template: str, status: int = 200, **context: Any
) -> HTMLResponse:
    """``template`` rendered for ``request``: its language's strings as ``t``, its CSRF token as
    ``csrf`` (a browser without one gets a fresh pre-session token in a cookie)."""
    language = language_of(request)
    csrf = expected_csrf(request, settings)
    fresh = None
    if csrf is None:
        fresh = csrf = new_presession_token()
    body = (
        environment()
        .get_template(template)
        .render(
            lang=language,
            html_lang="zh-CN" if language == "zh" else "en",
            t=strings(language),
            csrf=csrf,
            path=request.url.path,
            **context,
        )
    )
    response = HTMLResponse(body, status_code=status)
    if fresh is not None:
        set_cookie(response, settings, PRESESSION_COOKIE, fresh)
    return response
