"""The overview (/): events, orders and revenue, new profiles per day or week, active customers,
total profiles and dead letters, for the chosen dates, sources and event types; and the
drill-downs behind each number (/overview/events, /overview/profiles).

Touches no database itself: c360.analytics.overview and c360.analytics.drill compute.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from litestar import Request, get
from litestar.datastructures import State
from litestar.response import Response, Template

from c360.analytics import drill
from c360.analytics.filters import GRANULARITIES, Filters, parse_day, parse_filters
from c360.analytics.overview import overview
from c360.errors import InputError
from c360.ui.pages.common import (
    ChartView,
    Link,
    TableView,
    cents,
    csv_response,
    moment,
    page,
    principal,
    require,
    with_query,
)
from c360.ui.pages.exports import csv_download

#: Event types offered in the filter: Segment's calls and the order event c360 counts.
EVENT_TYPE_OPTIONS = ("track", "identify", "page", "screen", "group", "alias", "Order Completed")

#: Rows per page of a drill-down.
PAGE_SIZE = 50

#: Query parameters of a drill-down besides the filters.
_DRILL_PARAMETERS = ("period", "offset", "metric", "table")


@get("/", opt={"permission": "dashboards:read"}, include_in_schema=False, sync_to_thread=True)
def overview_page(request: Request[Any, Any, Any], state: State) -> Template:
    """The overview dashboard for the filters in the query string."""
    filters = parse_filters(request.query_params)
    numbers = overview(state.runtime, filters)
    context = {
        "numbers": numbers,
        "form": filter_form(state, filters),
        "links": _number_links(request),
        "events_chart": _events_chart(request, numbers),
        "revenue_chart": _revenue_chart(request, numbers),
        "profiles_chart": _profiles_chart(request, numbers),
        "series": series_table(request, numbers),
        "pdf_href": with_query("/export/pdf/overview", request.query_params),
    }
    return page(request, "overview.html", "Overview", "overview", context)


@get(
    "/export/csv/overview",
    opt={"permission": "exports:create"},
    include_in_schema=False,
    sync_to_thread=True,
)
def overview_csv(request: Request[Any, Any, Any], state: State) -> Response:
    """The overview's series table (per day or week) as CSV, for the same filters."""
    require(request, "dashboards:read")
    filters = parse_filters(request.query_params)
    view = series_table(request, overview(state.runtime, filters))
    return csv_response("overview.csv", view.columns, view.rows)


@get(
    "/overview/events",
    opt={"permission": "dashboards:read"},
    include_in_schema=False,
    sync_to_thread=True,
)
def events_drill(request: Request[Any, Any, Any], state: State) -> Template:
    """The events behind a point (`period`) or behind the whole range."""
    filters, period, offset = _drill_params(request)
    found = _events_fetch(request, state, filters, period, found_only=True)(PAGE_SIZE, offset)
    view = _events_table(request, found)
    context = _drill_context(request, state, filters, found, view)
    return page(request, "drill.html", "Events behind the number", "overview", context)


@get(
    "/overview/profiles",
    opt={"permission": "dashboards:read"},
    include_in_schema=False,
    sync_to_thread=True,
)
def profiles_drill(request: Request[Any, Any, Any], state: State) -> Template:
    """The profiles behind active customers or new profiles (`metric`), in a period or all."""
    filters, period, offset = _drill_params(request)
    fetch = _profiles_fetch(request, state, filters, period, found_only=True)
    found = fetch(PAGE_SIZE, offset)
    view = _profiles_table(request, found)
    context = _drill_context(request, state, filters, found, view)
    return page(request, "drill.html", "Customers behind the number", "overview", context)


@get(
    "/export/csv/overview/drill",
    opt={"permission": "exports:create"},
    include_in_schema=False,
    sync_to_thread=True,
)
def drill_csv(request: Request[Any, Any, Any], state: State) -> Response:
    """Every row of a drill-down as CSV (`table` events or profiles, the same filters)."""
    require(request, "dashboards:read")
    filters, period, _ = _drill_params(request)
    table = request.query_params.get("table") or "events"
    if table == "events":
        fetch = _events_fetch(request, state, filters, period)
        return csv_download("drill-events", EVENT_COLUMNS, fetch)
    if table == "profiles":
        fetch = _profiles_fetch(request, state, filters, period)
        return csv_download("drill-profiles", PROFILE_COLUMNS, fetch)
    raise InputError("unknown_table", f"table must be events or profiles; got {table[:30]!r}")


HANDLERS = [overview_page, overview_csv, events_drill, profiles_drill, drill_csv]


def filter_form(state: State, filters: Filters) -> dict[str, Any]:
    """What the filter form shows: the current values and the choices."""
    sources = set(state.settings.write_keys.values()) | set(filters.sources)
    return {
        "date_from": filters.date_from.isoformat() if filters.date_from else "",
        "date_to": filters.date_to.isoformat() if filters.date_to else "",
        "sources": filters.sources,
        "event_types": filters.event_types,
        "source_options": sorted(sources),
        "event_type_options": sorted(set(EVENT_TYPE_OPTIONS) | set(filters.event_types)),
        "granularity": filters.granularity,
        "granularities": GRANULARITIES,
    }


def series_table(request: Request[Any, Any, Any], numbers: dict[str, Any]) -> TableView:
    """Every series of the overview by period, each number linking to its rows: the
    accessible twin of the three charts, and what the CSV holds."""
    params = request.query_params
    rows = []
    for events, revenue, new in zip(
        numbers["events"], numbers["revenue"], numbers["new_profiles"], strict=True
    ):
        period = events["period"]
        rows.append(
            [
                period,
                Link(events["events"], _drill_href(params, "/overview/events", period)),
                revenue["orders"],
                cents(revenue["revenue"]),
                Link(new["profiles"], _drill_href(params, "/overview/profiles", period, "new")),
            ]
        )
    return TableView(
        id="overview-series",
        caption=f"Per {numbers['filters']['granularity']}: events, orders, revenue, new profiles",
        columns=("Period", "Events", "Orders", "Revenue", "New profiles"),
        rows=rows,
        csv_href=with_query("/export/csv/overview", params),
        numeric=frozenset({1, 2, 3, 4}),
    )


def _number_links(request: Request[Any, Any, Any]) -> dict[str, str]:
    params = request.query_params
    return {
        "events": _drill_href(params, "/overview/events", None),
        "active_customers": _drill_href(params, "/overview/profiles", None),
        "new_profiles": _drill_href(params, "/overview/profiles", None, "new"),
        "revenue": _drill_href(params, "/overview/events", None, revenue=True),
        "profiles": "/customers",
        "dlq": "/pipeline",
    }


def _drill_href(
    params: Any, path: str, period: str | None, metric: str | None = None, revenue: bool = False
) -> str:
    """The drill-down of one number: the same filters, narrowed to a period."""
    changes: dict[str, Any] = {"period": period, "offset": None}
    if metric == "new":
        changes["metric"] = "new_profiles"
    if revenue:  # revenue comes from orders: show the order events behind it
        changes["event_type"] = "Order Completed"
    return with_query(path, params, **changes)


def _events_chart(request: Request[Any, Any, Any], numbers: dict[str, Any]) -> ChartView:
    points = numbers["events"]
    return ChartView(
        id="chart-events",
        caption="Events per " + numbers["filters"]["granularity"],
        kind="bar",
        labels=[p["period"] for p in points],
        series={"Events": [p["events"] for p in points]},
        links=[_drill_href(request.query_params, "/overview/events", p["period"]) for p in points],
    )


def _revenue_chart(request: Request[Any, Any, Any], numbers: dict[str, Any]) -> ChartView:
    points = numbers["revenue"]
    return ChartView(
        id="chart-revenue",
        caption="Revenue per " + numbers["filters"]["granularity"],
        kind="line",
        labels=[p["period"] for p in points],
        series={"Revenue": [p["revenue"] for p in points]},
        links=[
            _drill_href(request.query_params, "/overview/events", p["period"], revenue=True)
            for p in points
        ],
    )


def _profiles_chart(request: Request[Any, Any, Any], numbers: dict[str, Any]) -> ChartView:
    points = numbers["new_profiles"]
    return ChartView(
        id="chart-new-profiles",
        caption="New profiles per " + numbers["filters"]["granularity"],
        kind="bar",
        labels=[p["period"] for p in points],
        series={"New profiles": [p["profiles"] for p in points]},
        links=[
            _drill_href(request.query_params, "/overview/profiles", p["period"], "new")
            for p in points
        ],
    )


def _drill_params(request: Request[Any, Any, Any]) -> tuple[Filters, Any, int]:
    params = request.query_params
    filters = parse_filters(params, extra=_DRILL_PARAMETERS)
    period = parse_day(params.get("period"), "period")
    offset_text = params.get("offset") or "0"
    if not offset_text.isdigit() or int(offset_text) > drill.MAX_OFFSET:
        raise InputError(
            "invalid_page", f"offset must be a whole number up to {drill.MAX_OFFSET:,}"
        )
    return filters, period, int(offset_text)


def _drill_context(
    request: Request[Any, Any, Any],
    state: State,
    filters: Filters,
    found: dict[str, Any],
    view: TableView,
) -> dict[str, Any]:
    params, offset = request.query_params, found["offset"]
    previous = offset - PAGE_SIZE if offset > 0 else None
    following = offset + PAGE_SIZE if offset + PAGE_SIZE < found["total"] else None
    return {
        "form": filter_form(state, filters),
        "found": found,
        "table": view,
        "back_href": with_query("/", params, period=None, offset=None, metric=None),
        "previous_href": (
            with_query(request.url.path, params, offset=max(previous, 0) or None)
            if previous is not None
            else None
        ),
        "next_href": (
            with_query(request.url.path, params, offset=following) if following else None
        ),
    }


#: Columns of the events behind a number, on the page and in its CSV.
EVENT_COLUMNS = ("Time", "Source", "Type", "Event", "Message id", "Customer", "Revenue")

#: Columns of the profiles behind a number, on the page and in its CSV.
PROFILE_COLUMNS = ("Customer", "First seen", "Last seen", "Events", "Orders", "Revenue")


def _events_fetch(
    request: Request[Any, Any, Any],
    state: State,
    filters: Filters,
    period: Any,
    found_only: bool = False,
) -> Callable[[int, int], Any]:
    """A reader of pages of the events behind a number, masked for the reader: the whole
    answer, or (total, table rows) for a CSV."""

    def fetch(limit: int, offset: int) -> Any:
        found = drill.drill_events(state.runtime, filters, period, limit=limit, offset=offset)
        found["rows"] = _masked(request, state, found["rows"])
        return found if found_only else (found["total"], _event_rows(found["rows"]))

    return fetch


def _profiles_fetch(
    request: Request[Any, Any, Any],
    state: State,
    filters: Filters,
    period: Any,
    found_only: bool = False,
) -> Callable[[int, int], Any]:
    """A reader of pages of the profiles behind a number (`metric`), masked for the reader."""
    metric = request.query_params.get("metric") or "active_customers"

    def fetch(limit: int, offset: int) -> Any:
        found = drill.drill_profiles(state.runtime, filters, metric, period, limit, offset)
        found["profiles"] = _masked(request, state, found["profiles"])
        return found if found_only else (found["total"], _profile_rows(found["profiles"]))

    return fetch


def _masked(
    request: Request[Any, Any, Any], state: State, rows: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Rows with userIds masked for the reader (those shown audited)."""
    return drill.for_principal(state.runtime, principal(request), rows, f"ui:{request.url.path}")


def _events_table(request: Request[Any, Any, Any], found: dict[str, Any]) -> TableView:
    where = f" on {found['period']}" if found["period"] else ""
    return TableView(
        id="drill-events",
        caption=f"{found['total']:,} events{where}, oldest first",
        columns=EVENT_COLUMNS,
        rows=_event_rows(found["rows"]),
        csv_href=with_query(
            "/export/csv/overview/drill", request.query_params, table="events", offset=None
        ),
        numeric=frozenset({6}),
    )


def _event_rows(rows: list[dict[str, Any]]) -> list[list[Any]]:
    return [
        [
            moment(row["time"]),
            row["source"],
            row["type"],
            row["event"],
            row["message_id"],
            Link(drill.customer_label(row), f"/customers/{row['profile_id']}")
            if row["profile_id"]
            else row["user_id"],
            row["revenue"],
        ]
        for row in rows
    ]


def _profiles_table(request: Request[Any, Any, Any], found: dict[str, Any]) -> TableView:
    where = f" in the period of {found['period']}" if found["period"] else ""
    label = "new profiles" if found["metric"] == "new_profiles" else "active customers"
    return TableView(
        id="drill-profiles",
        caption=f"{found['total']:,} {label}{where}, by revenue",
        columns=PROFILE_COLUMNS,
        rows=_profile_rows(found["profiles"]),
        csv_href=with_query(
            "/export/csv/overview/drill", request.query_params, table="profiles", offset=None
        ),
        numeric=frozenset({3, 4, 5}),
    )


def _profile_rows(profiles: list[dict[str, Any]]) -> list[list[Any]]:
    return [
        [
            Link(drill.customer_label(row), f"/customers/{row['profile_id']}"),
            moment(row["first_seen"]),
            moment(row["last_seen"]),
            row["events"],
            row["orders"],
            row["revenue"],
        ]
        for row in profiles
    ]
