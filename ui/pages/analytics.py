"""Analytics pages: the RFM grid (/analytics/rfm) with the customers of each cell, and cohort
retention by first-purchase month (/analytics/cohorts) with the customers behind each share.

Touches no database itself: c360.analytics.rfm, .cohorts and .drill compute.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from litestar import Request, get
from litestar.datastructures import State
from litestar.params import FromPath
from litestar.response import Response, Template

from c360.analytics import drill
from c360.analytics.cohorts import cohorts
from c360.analytics.filters import parse_day
from c360.analytics.rfm import SCORES, rfm, rfm_cell
from c360.errors import InputError
from c360.ui.pages.common import (
    Link,
    TableView,
    csv_response,
    moment,
    page,
    principal,
    require,
    with_query,
)
from c360.ui.pages.exports import csv_download

#: Customers per page of a cell or cohort drill-down.
PAGE_SIZE = 50

#: Colour steps of the RFM grid (heat-0 .. heat-5 in c360.css).
HEAT_STEPS = 5


@get(
    "/analytics/rfm",
    opt={"permission": "analytics:read"},
    include_in_schema=False,
    sync_to_thread=True,
)
def rfm_page(request: Request[Any, Any, Any], state: State) -> Template:
    """The 5 × 5 grid of recency and frequency scores, coloured by customers."""
    as_of = parse_day(request.query_params.get("as_of"), "as_of")
    grid = rfm(state.runtime, as_of)
    context = {
        "grid": grid,
        "rows": rfm_rows(grid),
        "scores": list(SCORES),
        "cells": rfm_table(grid),
        "as_of": as_of.isoformat() if as_of else "",
        "pdf_href": with_query("/export/pdf/rfm", request.query_params),
    }
    return page(request, "rfm.html", "RFM", "rfm", context)


@get(
    "/analytics/rfm/cell",
    opt={"permission": "analytics:read"},
    include_in_schema=False,
    sync_to_thread=True,
)
def rfm_cell_page(request: Request[Any, Any, Any], state: State) -> Template:
    """The customers of one cell (`r`, `f`), largest spend first."""
    view, found, pages = _cell(request, state)
    title = f"RFM cell R{found['r']} F{found['f']}"
    context = {"table": view, "back_href": "/analytics/rfm", "back_label": "Back to RFM", **pages}
    return page(request, "customer_drill.html", title, "rfm", context)


@get(
    "/analytics/cohorts",
    opt={"permission": "analytics:read"},
    include_in_schema=False,
    sync_to_thread=True,
)
def cohorts_page(request: Request[Any, Any, Any], state: State) -> Template:
    """Retention by first-purchase month: the share of each cohort ordering k months on."""
    found = cohorts(state.runtime)
    context = {"table": cohort_table(found), "pdf_href": "/export/pdf/cohorts"}
    return page(request, "cohorts.html", "Cohorts", "cohorts", context)


@get(
    "/analytics/cohorts/customers",
    opt={"permission": "analytics:read"},
    include_in_schema=False,
    sync_to_thread=True,
)
def cohort_customers_page(request: Request[Any, Any, Any], state: State) -> Template:
    """The customers of a cohort who ordered `month_offset` months after their first order."""
    view, found, pages = _cohort_customers(request, state)
    title = f"Cohort {found['cohort']}, month {found['month_offset']}"
    back = {"back_href": "/analytics/cohorts", "back_label": "Back to cohorts"}
    return page(request, "customer_drill.html", title, "cohorts", {"table": view, **back, **pages})


@get(
    "/export/csv/analytics/{table:str}",
    opt={"permission": "exports:create"},
    include_in_schema=False,
    sync_to_thread=True,
)
def analytics_csv(request: Request[Any, Any, Any], state: State, table: FromPath[str]) -> Response:
    """A table of these pages as CSV: `rfm`, `rfm-cell`, `cohorts`, `cohort-customers`."""
    require(request, "analytics:read")
    runtime = state.runtime
    if table == "rfm-cell":
        return csv_download("rfm-cell", CELL_COLUMNS, _cell_fetch(request, state))
    if table == "cohort-customers":
        return csv_download("cohort-customers", COHORT_COLUMNS, _cohort_fetch(request, state))
    if table == "rfm":
        as_of = parse_day(request.query_params.get("as_of"), "as_of")
        view = rfm_table(rfm(runtime, as_of))
    elif table == "cohorts":
        view = cohort_table(cohorts(runtime))
    else:
        raise InputError("unknown_table", "the tables are rfm, rfm-cell, cohorts, cohort-customers")
    return csv_response(f"{table}.csv", view.columns, view.rows)


HANDLERS = [rfm_page, rfm_cell_page, cohorts_page, cohort_customers_page, analytics_csv]


def rfm_rows(grid: dict[str, Any]) -> list[dict[str, Any]]:
    """The grid as the page draws it: one row per recency score (5, the most recent, first),
    one cell per frequency score, each with its count, colour step and link."""
    by_key = {(cell["r"], cell["f"]): cell for cell in grid["cells"]}
    largest = max((cell["customers"] for cell in grid["cells"]), default=0)
    suffix = f"&as_of={grid['as_of']}" if grid.get("as_of") else ""
    return [
        {
            "r": r,
            "cells": [
                {
                    **by_key[(r, f)],
                    "heat": _heat(by_key[(r, f)]["customers"], largest),
                    "href": f"/analytics/rfm/cell?r={r}&f={f}{suffix}",
                }
                for f in SCORES
            ],
        }
        for r in reversed(SCORES)
    ]


def rfm_table(grid: dict[str, Any]) -> TableView:
    """The 25 cells as a flat table (what the CSV holds)."""
    return TableView(
        id="rfm-cells",
        caption=f"RFM cells as of {grid['as_of'] or 'no orders yet'}",
        columns=("Recency score", "Frequency score", "Customers", "Spend", "Mean spend"),
        rows=[
            [c["r"], c["f"], c["customers"], c["monetary_total"], c["monetary_mean"]]
            for c in grid["cells"]
        ],
        csv_href=with_query("/export/csv/analytics/rfm", {"as_of": grid.get("as_of")}),
        numeric=frozenset({2, 3, 4}),
    )


def cohort_table(found: dict[str, Any]) -> TableView:
    """The retention triangle: a row per cohort, a column per month since the first order;
    each cell the share retained (with the customers behind it as a link)."""
    months = found["months"]
    rows = []
    for cohort in found["cohorts"]:
        cells: list[Any] = [cohort["cohort"], cohort["size"]]
        for point in cohort["retention"]:
            href = (
                f"/analytics/cohorts/customers?cohort={cohort['cohort']}"
                f"&month_offset={point['offset']}"
            )
            text = f"{_percent(point['share'])} ({point['customers']:,})"
            cells.append(Link(text, href))
        cells += [None] * (months - len(cohort["retention"]))
        rows.append(cells)
    return TableView(
        id="cohort-retention",
        caption="Share of each first-purchase cohort ordering again, by months since",
        columns=("Cohort", "Customers", *[f"Month {k}" for k in range(months)]),
        rows=rows,
        csv_href="/export/csv/analytics/cohorts",
        numeric=frozenset(range(1, months + 2)),
    )


#: Columns of a cell's customers, on the page and in its CSV.
CELL_COLUMNS = ("Customer", "Days since last order", "Orders", "Spend", "R", "F", "M")

#: Columns of a cohort's customers, on the page and in its CSV.
COHORT_COLUMNS = ("Customer", "First seen", "Last seen", "Orders", "Revenue")


def _cell(
    request: Request[Any, Any, Any], state: State
) -> tuple[TableView, dict[str, Any], dict[str, Any]]:
    params = request.query_params
    offset = _whole(params, "offset", 0, drill.MAX_OFFSET, default=0)
    found = _cell_fetch(request, state, found_only=True)(PAGE_SIZE, offset)
    view = TableView(
        id="rfm-cell",
        caption=f"{found['customers']:,} customers with recency score {found['r']} and "
        f"frequency {found['f']}, as of {found['as_of'] or 'no orders yet'}",
        columns=CELL_COLUMNS,
        rows=_cell_rows(found["profiles"]),
        csv_href=with_query("/export/csv/analytics/rfm-cell", params, offset=None),
        numeric=frozenset({1, 2, 3}),
    )
    return view, found, _pages(request, offset, found["customers"])


def _cell_fetch(
    request: Request[Any, Any, Any], state: State, found_only: bool = False
) -> Callable[[int, int], Any]:
    """A reader of pages of one cell's customers (`r`, `f`, `as_of`), masked for the reader:
    the whole answer, or (total, table rows) for a CSV."""
    params = request.query_params
    r, f = _whole(params, "r", 1, 5), _whole(params, "f", 1, 5)
    as_of = parse_day(params.get("as_of"), "as_of")

    def fetch(limit: int, offset: int) -> Any:
        found = rfm_cell(state.runtime, r, f, limit, offset, as_of)
        found["profiles"] = _masked(request, state, found["profiles"])
        return found if found_only else (found["customers"], _cell_rows(found["profiles"]))

    return fetch


def _cell_rows(profiles: list[dict[str, Any]]) -> list[list[Any]]:
    return [
        [
            Link(drill.customer_label(row), f"/customers/{row['profile_id']}"),
            row["recency_days"],
            row["frequency"],
            row["monetary"],
            row["r"],
            row["f"],
            row["m"],
        ]
        for row in profiles
    ]


def _cohort_customers(
    request: Request[Any, Any, Any], state: State
) -> tuple[TableView, dict[str, Any], dict[str, Any]]:
    params = request.query_params
    offset = _whole(params, "offset", 0, drill.MAX_OFFSET, default=0)
    found = _cohort_fetch(request, state, found_only=True)(PAGE_SIZE, offset)
    view = TableView(
        id="cohort-customers",
        caption=f"{found['total']:,} customers of cohort {found['cohort']} ordering in month "
        f"{found['month_offset']}",
        columns=COHORT_COLUMNS,
        rows=_cohort_rows(found["profiles"]),
        csv_href=with_query("/export/csv/analytics/cohort-customers", params, offset=None),
        numeric=frozenset({3, 4}),
    )
    return view, found, _pages(request, offset, found["total"])


def _cohort_fetch(
    request: Request[Any, Any, Any], state: State, found_only: bool = False
) -> Callable[[int, int], Any]:
    """A reader of pages of a cohort's customers in one month, masked for the reader."""
    params = request.query_params
    cohort = params.get("cohort") or ""
    month_offset = _whole(params, "month_offset", 0, 1200)

    def fetch(limit: int, offset: int) -> Any:
        found = drill.cohort_profiles(state.runtime, cohort, month_offset, limit, offset)
        found["profiles"] = _masked(request, state, found["profiles"])
        return found if found_only else (found["total"], _cohort_rows(found["profiles"]))

    return fetch


def _cohort_rows(profiles: list[dict[str, Any]]) -> list[list[Any]]:
    return [
        [
            Link(drill.customer_label(row), f"/customers/{row['profile_id']}"),
            moment(row["first_seen"]),
            moment(row["last_seen"]),
            row["orders"],
            row["revenue"],
        ]
        for row in profiles
    ]


def _masked(
    request: Request[Any, Any, Any], state: State, rows: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Customer rows with userIds masked for the reader (those shown audited)."""
    return drill.for_principal(state.runtime, principal(request), rows, f"ui:{request.url.path}")


def _pages(request: Request[Any, Any, Any], offset: int, total: int) -> dict[str, Any]:
    params, path = request.query_params, request.url.path
    return {
        "previous_href": (
            with_query(path, params, offset=max(offset - PAGE_SIZE, 0) or None)
            if offset > 0
            else None
        ),
        "next_href": (
            with_query(path, params, offset=offset + PAGE_SIZE)
            if offset + PAGE_SIZE < total
            else None
        ),
    }


def _whole(params: Any, name: str, low: int, high: int, default: int | None = None) -> int:
    """A whole-number parameter within bounds; missing means `default` (required if None)."""
    text = params.get(name)
    if text is None or text == "":
        if default is not None:
            return default
        raise InputError(f"missing_{name}", f"give {name}, a whole number from {low} to {high}")
    if not text.isdigit() or not low <= int(text) <= high:
        raise InputError(
            f"invalid_{name}", f"{name} must be a whole number from {low} to {high}; got {text!r}"
        )
    return int(text)


def _heat(customers: int, largest: int) -> int:
    """The colour step of a cell: 0 for none, else 1..5 in proportion to the largest."""
    if customers == 0 or largest == 0:
        return 0
    return max(1, -(-customers * HEAT_STEPS // largest))


def _percent(share: Any) -> str:
    return f"{Decimal(str(share)) * 100:.1f}%"
