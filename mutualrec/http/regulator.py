"""The regulators' dashboard on the HTTP door: ``GET /regulator`` (the page: a period and a
grouping, the totals, a chart and the table) and ``GET /regulator/report.csv`` (the same report
as ExportReport's CSV), both from the statistics service GetSavingsReport and ExportReport use;
and the page's stylesheet and icon.

A request the report cannot answer is a 400 problem body naming each field, or for a browser
(``Accept: text/html``) the page again with each field's error shown.
"""

from __future__ import annotations

from importlib import resources

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute

from mutualrec.http.admission import Admission, Authenticator
from mutualrec.http.regulator_form import DashboardForm, read_form, report_query
from mutualrec.http.regulator_page import error_view, render_page, report_view
from mutualrec.http.regulator_strings import choose_language
from mutualrec.matching.language import Language
from mutualrec.security.api_keys import Principal
from mutualrec.services.statistics import ReportQuery
from mutualrec.statistics.csv_export import csv_chunks
from mutualrec.statistics.periods import today
from mutualrec.violations import NotFound, Rejected

PAGE_PATH = "/regulator"
CSV_PATH = "/regulator/report.csv"
STATIC_PATH = "/static/regulator/{name}"
# The page loads its stylesheet and submits its form to itself, nothing else: no script runs,
# no inline style applies (the chart is styled by class), nothing may frame it.
PAGE_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)
# Excel reads a CSV file as the system's code page unless it starts with a byte order mark:
# Chinese names would be mojibake.
BYTE_ORDER_MARK = "\ufeff"
_CSV_PIECE = 64 * 1024
_STATIC_TYPES = {".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}


def wants_html(request: Request) -> bool:
    """Whether the caller is a browser (asks for HTML) rather than an API client."""
    return "text/html" in request.headers.get("accept", "").lower()


def _page(body: str, language: Language, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        body,
        status_code=status,
        headers={
            "content-security-policy": PAGE_POLICY,
            "content-language": "zh-CN" if language is Language.ZH else "en",
            "vary": "Accept, Accept-Language",
        },
    )


def _static_files() -> dict[str, tuple[bytes, str]]:
    """The dashboard's static files by name, read once: (content, media type)."""
    folder = resources.files("mutualrec.http") / "static" / "regulator"
    found: dict[str, tuple[bytes, str]] = {}
    for entry in folder.iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if entry.is_file() and suffix in _STATIC_TYPES:
            found[entry.name] = (entry.read_bytes(), _STATIC_TYPES[suffix])
    return found


def _csv_name(form: DashboardForm) -> str:
    return f"mutualrec-savings-{form.from_date}-{form.to_date}-{form.group_by}.csv"


def regulator_routes(
    admission: Admission, authenticate: Authenticator | None = None
) -> list[BaseRoute]:
    """The dashboard's routes: the page and its CSV for regulators (admitted by
    ``authenticate``, by default a Bearer API key), its stylesheet and icon for anyone."""
    runtime = admission.runtime
    statistics = runtime.statistics
    # Reports wait their turn with gRPC's (MUTUALREC_MAX_CONCURRENT_REPORTS for both doors).
    turns = runtime.report_turns
    static = _static_files()

    def language_of(request: Request) -> Language:
        return choose_language(
            request.query_params.get("lang", ""), request.headers.get("accept-language", "")
        )

    def read(request: Request, language: Language) -> tuple[DashboardForm, ReportQuery] | Response:
        """The form and its query; raises :class:`Rejected`, except to a browser, which gets
        the page showing the form's errors."""
        form, violations = read_form(request.query_params, today())
        try:
            return form, report_query(form, violations)
        except Rejected as rejected:
            if not wants_html(request):
                raise
            page = render_page(error_view(form, language, rejected.violations))
            return _page(page, language, 400)

    def page_of(query: ReportQuery, form: DashboardForm, language: Language) -> str:
        return render_page(report_view(statistics.report(query), form, language))

    def csv_of(query: ReportQuery) -> bytes:
        text = "".join(csv_chunks(statistics.csv(query), _CSV_PIECE))
        return (BYTE_ORDER_MARK + text).encode("utf-8")

    async def dashboard(request: Request, _principal: Principal | None) -> Response:
        language = language_of(request)
        read_in = read(request, language)
        if isinstance(read_in, Response):
            return read_in
        form, query = read_in
        async with turns:
            # 50 to 600 ms of CPU for a large report: on a worker thread, as over gRPC.
            body = await runtime.run_blocking(page_of, query, form, language)
        return _page(body, language)

    async def export(request: Request, _principal: Principal | None) -> Response:
        read_in = read(request, language_of(request))
        if isinstance(read_in, Response):
            return read_in
        form, query = read_in
        async with turns:
            body = await runtime.run_blocking(csv_of, query)
        return Response(
            body,
            media_type="text/csv; charset=utf-8",
            headers={"content-disposition": f'attachment; filename="{_csv_name(form)}"'},
        )

    async def static_file(request: Request, _principal: Principal | None) -> Response:
        found = static.get(request.path_params["name"])
        if found is None:
            raise NotFound("no such file")
        content, media_type = found
        # Names no one and changes only with a release: caches may keep it a while.
        return Response(content, media_type=media_type, headers={"cache-control": "max-age=3600"})

    return [
        admission.route("GET", PAGE_PATH, dashboard, authenticate),
        admission.route("GET", CSV_PATH, export, authenticate),
        admission.route("GET", STATIC_PATH, static_file),
    ]
