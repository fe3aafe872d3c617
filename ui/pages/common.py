"""What every page shares: who is asking, the navigation they may see, the CSRF token, views of
tables and charts for the templates, and page, fragment, CSV and error responses.

Touches no database: pages get their data from the same service functions as the JSON API.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from litestar import Request, Response
from litestar.enums import MediaType
from litestar.exceptions import NotFoundException
from litestar.response import Template

from c360.access import Principal
from c360.api import auth
from c360.errors import InputError
from c360.reports.csv_export import to_csv

#: Sent with every page: scripts, styles, images and fetches from c360 itself only (no inline
#: script or style anywhere, so nothing injected into a page can run).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)

#: A cent, for padding money to two decimals.
CENT = Decimal("0.01")

#: The response headers of every page and fragment.
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",  # pages show personal data: never from a shared cache
}


#: htmx's settings (in a meta tag): no eval and no inline styles (the CSP forbids both), no
#: history cache (pages hold personal data), and 4xx answers swapped in so their message shows.
HTMX_CONFIG = {
    "includeIndicatorStyles": False,
    "allowEval": False,
    "allowScriptTags": False,
    "historyCacheSize": 0,
    # settling copies attributes onto swapped elements; a `style` one would be an inline style
    "attributesToSettle": ["class", "width", "height"],
    "responseHandling": [
        {"code": "204", "swap": False},
        {"code": "[23]..", "swap": True},
        {"code": "4..", "swap": True, "error": False},
        {"code": "...", "swap": False, "error": True},
    ],
}


@dataclass(frozen=True)
class NavItem:
    """One section in the main navigation, shown only to principals holding `permission`."""

    id: str
    label: str
    href: str
    permission: str


#: The main navigation, in order. A page module of another area appends its own entry.
NAV: list[NavItem] = [
    NavItem("overview", "Overview", "/", "dashboards:read"),
    NavItem("customers", "Customers", "/customers", "profiles:read"),
    NavItem("segments", "Segments", "/segments", "segments:read"),
    NavItem("rfm", "RFM", "/analytics/rfm", "analytics:read"),
    NavItem("cohorts", "Cohorts", "/analytics/cohorts", "analytics:read"),
    NavItem("ltv", "Lifetime value", "/analytics/ltv", "analytics:read"),
    NavItem("pipeline", "Pipeline", "/pipeline", "pipeline:read"),
    NavItem("agents", "Conversations", "/agents", "agents:read"),
]


@dataclass(frozen=True)
class Link:
    """A table cell or number that leads somewhere (a drill-down, a profile)."""

    text: Any
    href: str


@dataclass
class TableView:
    """A table as the `table` macro draws it: caption, column headers, rows of cells (a value
    or a Link), and where its CSV is (None for no download link)."""

    id: str
    caption: str
    columns: Sequence[str]
    rows: Sequence[Sequence[Any]]
    csv_href: str | None = None
    #: columns whose cells are numbers (right-aligned)
    numeric: frozenset[int] = frozenset()


@dataclass
class ChartView:
    """A chart drawn by static/charts.js from its JSON beside the canvas; `links[i]` is where a
    click on point i leads. The paired TableView holds the same numbers for screen readers."""

    id: str
    caption: str
    kind: str  # "bar" or "line"
    labels: Sequence[str]
    series: Mapping[str, Sequence[Any]]
    links: Sequence[str | None] = field(default_factory=list)

    def payload(self) -> dict[str, Any]:
        """The JSON charts.js reads (values as floats: drawing needs no cents)."""
        return {
            "kind": self.kind,
            "labels": [str(label) for label in self.labels],
            "series": [
                {"label": name, "data": [_plain_number(value) for value in values]}
                for name, values in self.series.items()
            ],
            "links": list(self.links),
        }


def principal(request: Request[Any, Any, Any]) -> Principal | None:
    """The signed-in principal, or None when anonymous."""
    return auth.principal(request)


def require(request: Request[Any, Any, Any], permission: str) -> Principal:
    """The principal, refused unless it also holds `permission` (for a route that needs two,
    such as a CSV of customer rows: exports:create on the route, profiles:read here)."""
    who = principal(request)
    if who is None:
        raise auth.NotSignedIn("not_signed_in", "sign in first")
    if not who.can(permission):
        raise auth.Forbidden(
            "forbidden", f"this needs the {permission} permission, which {who.actor} lacks"
        )
    return who


def csrf(request: Request[Any, Any, Any]) -> str:
    """The CSRF token pages put in their meta tag, htmx headers and forms."""
    return auth.csrf_token(request)


def is_fragment(request: Request[Any, Any, Any]) -> bool:
    """Whether htmx asked for a fragment (a swap of the main content, not a history restore)."""
    headers = request.headers
    return headers.get("hx-request") == "true" and headers.get("hx-history-restore-request") is None


def page(
    request: Request[Any, Any, Any],
    template: str,
    title: str,
    section: str,
    context: Mapping[str, Any] | None = None,
    status_code: int = 200,
) -> Template:
    """A whole page, or its main content alone when htmx asked for a fragment."""
    who = principal(request)
    base = {
        "title": title,
        "section": section,
        "principal": who,
        "nav": [item for item in NAV if who is not None and who.can(item.permission)],
        "csrf": csrf(request),
        "htmx_config": HTMX_CONFIG,
        "layout": "fragment.html" if is_fragment(request) else "base.html",
        "path": request.url.path,
        "query": request.url.query,
    }
    return Template(
        template_name=template,
        context={**base, **(context or {})},
        headers=PAGE_HEADERS,
        status_code=status_code,
        # a handler typed `-> Any` (a page or a redirect) would otherwise answer JSON's type
        media_type=MediaType.HTML,
    )


def csv_response(filename: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Response:
    """A table as a CSV download (cells that are Links export their text)."""
    plain = [[cell.text if isinstance(cell, Link) else cell for cell in row] for row in rows]
    return Response(
        content=to_csv(columns, plain, bom=True),
        media_type="text/csv",  # Litestar adds "; charset=utf-8" to any text/ type
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
        },
    )


def table_csv(view: TableView) -> Response:
    """The CSV of a TableView, named after it."""
    return csv_response(f"{view.id}.csv", view.columns, view.rows)


def with_query(path: str, params: Mapping[str, Any], **changes: Any) -> str:
    """`path` with the query `params` (a multi-dict or a dict), some changed or dropped (None)."""
    pairs = _pairs(params)
    pairs = [(key, value) for key, value in pairs if key not in changes]
    pairs += [(key, value) for key, value in changes.items() if value is not None]
    pairs.sort(key=lambda pair: pair[0])  # one spelling per view: links compare and cache
    query = urlencode(pairs, doseq=True)
    return f"{path}?{query}" if query else path


def error_page(request: Request[Any, Any, Any], exc: InputError) -> Response[Any]:
    """A user's mistake on a page (a bad filter): the page's frame with what to change. Not
    signed in or not allowed is answered as everywhere else (a redirect to sign in, or 403)."""
    if isinstance(exc, auth.NotSignedIn | auth.Forbidden):
        return auth.refusal_response(request, exc.status_code, exc.code, exc.message)
    context = {"code": exc.code, "message": exc.message}
    title = "Cannot show this page"
    return page(request, "error.html", title, "", context, status_code=exc.status_code)


def not_found_page(request: Request[Any, Any, Any], exc: NotFoundException) -> Template:
    """A page for something that is not there (an unknown customer, a replayed dead letter)."""
    context = {"code": "not_found", "message": exc.detail}
    return page(request, "error.html", "Not found", "", context, status_code=404)


def money(value: Any) -> str:
    """Money with thousands separators and its cents exactly (Decimal in, text out)."""
    if value is None:
        return "—"
    return f"{Decimal(value):,.2f}"


def cents(value: Decimal) -> Decimal:
    """Money with at least two decimals (0 as 0.00, 12.5 as 12.50), every digit kept."""
    exponent = value.as_tuple().exponent
    return value.quantize(CENT) if isinstance(exponent, int) and exponent > -2 else value


def count(value: Any) -> str:
    """A whole number with thousands separators."""
    if value is None:
        return "—"
    return f"{int(value):,}"


def share(value: Any) -> str:
    """A fraction 0..1 as a percentage with one decimal."""
    if value is None:
        return "—"
    return f"{Decimal(str(value)) * 100:.1f}%"


def when(value: Any) -> str:
    """A time in UTC as `2026-03-01 14:05 UTC`; a date as itself."""
    if value is None:
        return "—"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M UTC")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def display(value: Any) -> str:
    """A table cell as text: numbers with thousands separators and every digit kept (a
    Decimal's cents exactly), times in UTC, nothing as a dash."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Decimal | int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.3f}"
    return when(value)


def moment(text: str | None) -> datetime | None:
    """A time the services give as ISO 8601 text, as a datetime (shown, and exported, alike)."""
    return datetime.fromisoformat(text) if text else None


#: Filters the templates use.
TEMPLATE_FILTERS: dict[str, Callable[[Any], str]] = {
    "money": money,
    "count": count,
    "share": share,
    "when": when,
    "display": display,
}

#: Tests the templates use (`value is link`).
TEMPLATE_TESTS: dict[str, Callable[[Any], bool]] = {"link": lambda value: isinstance(value, Link)}


def to_json(value: Any) -> str:
    """JSON for a <script type="application/json"> block: Decimal as float for drawing."""
    return json.dumps(value, default=_plain_number)


def _plain_number(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, int | float) or value is None:
        return value
    raise TypeError(f"cannot put {type(value).__name__} in a chart")


def _pairs(params: Mapping[str, Any]) -> list[tuple[str, Any]]:
    if hasattr(params, "multi_items"):
        return list(params.multi_items())
    return [(key, value) for key, value in params.items() if value is not None]
