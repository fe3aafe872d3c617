"""F5 analytics API: `GET /v1/analytics/...` for the overview, trends, RFM, cohorts and the rows
behind any of their numbers. JSON with exact Decimal money; permission `analytics:read`
(enforced by the global guard of `c360.api.auth`).

The handlers only read parameters and call the service functions in `c360.analytics`, the
same ones the dashboards call, so a page and the API always agree.
"""

from __future__ import annotations

import inspect
from datetime import date
from typing import Annotated, Any

from litestar import Request, Response, get
from litestar.datastructures import State
from litestar.params import Parameter
from litestar.types import ControllerRouterHandler

from c360.analytics.cohorts import cohorts
from c360.analytics.drill import cohort_profiles, drill_events, drill_profiles, for_principal
from c360.analytics.filters import parse_day, parse_filters
from c360.analytics.overview import overview
from c360.analytics.rfm import check_as_of, rfm, rfm_cell
from c360.analytics.trends import trends
from c360.api import auth
from c360.errors import InputError
from c360.events.model import encode
from c360.events.text import clean_text

OPT = {"permission": "analytics:read"}

#: The page bounds every paged endpoint checks (the service functions check them too).
MAX_LIMIT = 1000
MAX_OFFSET = 10_000_000

DateFrom = Annotated[
    str | None, Parameter(description="First UTC day in range, YYYY-MM-DD (default: unbounded).")
]
DateTo = Annotated[
    str | None, Parameter(description="Last UTC day in range, YYYY-MM-DD (default: unbounded).")
]
Sources = Annotated[
    list[str] | None,
    Parameter(description="Sources to keep (repeat, or separate with commas); default all."),
]
EventTypes = Annotated[
    list[str] | None,
    Parameter(
        description="Event types to keep: a Segment type (track, page...) or a track event's "
        "name (Order Completed); repeat or separate with commas; default all."
    ),
]
Granularity = Annotated[
    str | None, Parameter(description="Period of a series point: day (default) or week.")
]
Limit = Annotated[str | None, Parameter(description=f"Rows per page, 1 to {MAX_LIMIT}; 50.")]
Offset = Annotated[str | None, Parameter(description="Rows to skip; 0.")]
AsOf = Annotated[
    str | None,
    Parameter(description="RFM reference day, YYYY-MM-DD; default the day of the latest order."),
]


@get("/v1/analytics/overview", sync_to_thread=True, opt=OPT)
def read_overview(
    request: Request,
    state: State,
    date_from: DateFrom = None,
    date_to: DateTo = None,
    source: Sources = None,
    event_type: EventTypes = None,
    granularity: Granularity = None,
) -> Response[bytes]:
    """Events per period (from the lake), active customers, orders and revenue per period,
    new profiles per period (first seen in the range; with source or event_type, only those
    whose first event matches them), total profiles and the DLQ size (from the store and the
    bus)."""
    return _json(overview(state.runtime, parse_filters(request.query_params)))


@get("/v1/analytics/trends", sync_to_thread=True, opt=OPT)
def read_trends(
    request: Request,
    state: State,
    date_from: DateFrom = None,
    date_to: DateTo = None,
    source: Sources = None,
    event_type: EventTypes = None,
    granularity: Granularity = None,
    by: Annotated[
        str | None, Parameter(description="Break events down by type (default), source or country.")
    ] = None,
) -> Response[bytes]:
    """Events per day or week for each event type, source or country; active customers and
    revenue per period."""
    filters = parse_filters(request.query_params, extra=("by",))
    return _json(trends(state.runtime, filters, by or "type"))


@get("/v1/analytics/rfm", sync_to_thread=True, opt=OPT)
def read_rfm(request: Request, state: State, as_of: AsOf = None) -> Response[bytes]:
    """The 5 x 5 recency-by-frequency grid: customers, total and mean monetary per cell."""
    _only(request, ("as_of",))
    return _json(rfm(state.runtime, _as_of(as_of)))


@get("/v1/analytics/rfm/cells/{r:int}/{f:int}", sync_to_thread=True, opt=OPT)
def read_rfm_cell(
    request: Request,
    state: State,
    r: Annotated[int, Parameter(description="Recency score, 1 to 5 (5: most recent).")],
    f: Annotated[int, Parameter(description="Frequency score, 1 to 5 (5: most orders).")],
    as_of: AsOf = None,
    limit: Limit = None,
    offset: Offset = None,
) -> Response[bytes]:
    """The customers in one RFM cell, largest monetary first, paged."""
    _only(request, ("as_of", "limit", "offset"))
    page = _page(limit, offset)
    found = rfm_cell(state.runtime, r, f, *page, as_of=_as_of(as_of))
    return _json(_masked(request, state, found, "profiles"))


@get("/v1/analytics/cohorts", sync_to_thread=True, opt=OPT)
def read_cohorts(request: Request, state: State) -> Response[bytes]:
    """Retention by first-purchase month: cohort size, and per month offset the customers who
    ordered again and their share of the cohort."""
    _only(request, ())
    return _json(cohorts(state.runtime))


@get("/v1/analytics/cohorts/{cohort:str}/{month_offset:int}", sync_to_thread=True, opt=OPT)
def read_cohort_cell(
    request: Request,
    state: State,
    cohort: Annotated[str, Parameter(description="First-purchase month, YYYY-MM.")],
    month_offset: Annotated[int, Parameter(description="Months after the cohort's, 0 first.")],
    limit: Limit = None,
    offset: Offset = None,
) -> Response[bytes]:
    """The customers of a cohort who ordered in a given month after their first, paged."""
    _only(request, ("limit", "offset"))
    page = _page(limit, offset)
    found = cohort_profiles(state.runtime, cohort, month_offset, *page)
    return _json(_masked(request, state, found, "profiles"))


@get("/v1/analytics/rows", sync_to_thread=True, opt=OPT)
def read_rows(
    request: Request,
    state: State,
    date_from: DateFrom = None,
    date_to: DateTo = None,
    source: Sources = None,
    event_type: EventTypes = None,
    granularity: Granularity = None,
    period: Annotated[
        str | None,
        Parameter(description="A chart point: its day, or any day of its week, YYYY-MM-DD."),
    ] = None,
    by: Annotated[str | None, Parameter(description="Breakdown of the point: type, ...")] = None,
    key: Annotated[str | None, Parameter(description="The breakdown key (with by).")] = None,
    limit: Limit = None,
    offset: Offset = None,
) -> Response[bytes]:
    """The events behind a chart point (time, source, type, event, messageId, profile,
    userId, revenue), oldest first, paged."""
    filters = parse_filters(request.query_params, extra=("period", "by", "key", "limit", "offset"))
    day = parse_day(period, "period")
    found = drill_events(state.runtime, filters, day, by, key, *_page(limit, offset))
    return _json(_masked(request, state, found, "rows"))


@get("/v1/analytics/profiles", sync_to_thread=True, opt=OPT)
def read_metric_profiles(
    request: Request,
    state: State,
    metric: Annotated[
        str | None, Parameter(description="active_customers (default) or new_profiles.")
    ] = None,
    date_from: DateFrom = None,
    date_to: DateTo = None,
    source: Sources = None,
    event_type: EventTypes = None,
    granularity: Granularity = None,
    period: Annotated[str | None, Parameter(description="One period, YYYY-MM-DD.")] = None,
    limit: Limit = None,
    offset: Offset = None,
) -> Response[bytes]:
    """The profiles behind a count on the overview (active customers, new profiles), paged;
    userIds masked for the caller as the profile API masks them."""
    filters = parse_filters(request.query_params, extra=("metric", "period", "limit", "offset"))
    day = parse_day(period, "period")
    page = _page(limit, offset)
    found = drill_profiles(state.runtime, filters, metric or "active_customers", day, *page)
    return _json(_masked(request, state, found, "profiles"))


def route_handlers() -> list[ControllerRouterHandler]:
    """Every analytics route, for the app to register; each handler's docstring is its
    OpenAPI description, whatever the app's OpenAPI settings say about docstrings."""
    handlers = [
        read_overview,
        read_trends,
        read_rfm,
        read_rfm_cell,
        read_cohorts,
        read_cohort_cell,
        read_rows,
        read_metric_profiles,
    ]
    for handler in handlers:
        handler.description = handler.description or inspect.getdoc(handler.fn)
    return handlers


def _json(value: Any) -> Response[bytes]:
    """JSON with Decimal as exact numbers (13990.93, never a float's 13990.929999)."""
    return Response(content=encode(value), media_type="application/json")


def _masked(request: Request, state: State, found: dict[str, Any], key: str) -> dict[str, Any]:
    """An answer whose `key` lists profiles or events, with their userIds masked for the
    caller as the profile API masks them (unmasked ones audited)."""
    via = clean_text(f"api:{request.url.path}")  # a NUL in a path is not text
    rows = for_principal(state.runtime, auth.principal(request), found[key], via)
    return {**found, key: rows}


def _only(request: Request, known: tuple[str, ...]) -> None:
    """Refuse query parameters an endpoint does not read: a typo would be ignored silently."""
    unknown = sorted(set(request.query_params.keys()) - set(known))
    if unknown:
        allowed = ", ".join(known) or "none"
        raise InputError(
            "unknown_parameter",
            f"unknown query parameter {', '.join(unknown)}; the known ones are {allowed}",
        )


def _as_of(text: str | None) -> date | None:
    day = parse_day(text, "as_of")
    check_as_of(day)
    return day


def _page(limit: str | None, offset: str | None) -> tuple[int, int]:
    """(limit, offset) from their text, with defaults 50 and 0."""
    return (
        _whole(limit, "limit", 50, MAX_LIMIT, 1),
        _whole(offset, "offset", 0, MAX_OFFSET, 0),
    )


def _whole(text: str | None, name: str, default: int, high: int, low: int) -> int:
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise InputError(
            "invalid_page",
            f"{name} must be a whole number from {low} to {high:,}; got {text[:30]!r}",
        )
    return value
