"""Report builders for the analytics pages: `overview`, `rfm` and `cohorts`, each made from the
same service functions as its page, registered with c360.reports.registry on import.

A builder takes the page's parameters as plain values (a query string's or a saved report's)
and the principal it builds for; these three reports hold aggregates only, no personal data.
Touches nothing itself: c360.analytics reads.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from c360.access import Principal
from c360.analytics.cohorts import cohorts
from c360.analytics.filters import Filters, parse_day, parse_filters
from c360.analytics.overview import overview
from c360.analytics.rfm import SCORES, rfm
from c360.errors import InputError
from c360.reports import registry
from c360.reports.model import Chart, Report, Table, Text
from c360.runtime import Runtime

#: Months of retention a cohort report prints side by side; a PDF page holds no more.
COHORT_MONTHS_SHOWN = 12


def build_overview(runtime: Runtime, params: dict[str, Any], principal: Principal) -> Report:
    """The overview: the totals, events and revenue per period, and the series table."""
    filters = parse_filters(params)
    numbers = overview(runtime, filters)
    labels = [point["period"] for point in numbers["events"]]
    return Report(
        title="Overview",
        subtitle=_range_text(filters),
        sections=[
            Table(
                columns=("Measure", "Value"),
                rows=_overview_totals(numbers),
                caption="In this range",
            ),
            Chart(
                kind="bar",
                labels=labels,
                series={"Events": [point["events"] for point in numbers["events"]]},
                caption=f"Events per {filters.granularity}",
            ),
            Chart(
                kind="line",
                labels=labels,
                series={"Revenue": [point["revenue"] for point in numbers["revenue"]]},
                caption=f"Revenue per {filters.granularity}",
            ),
            Table(
                columns=("Period", "Events", "Orders", "Revenue", "New profiles"),
                rows=[
                    [e["period"], e["events"], r["orders"], r["revenue"], n["profiles"]]
                    for e, r, n in zip(
                        numbers["events"], numbers["revenue"], numbers["new_profiles"], strict=True
                    )
                ],
                caption=f"Per {filters.granularity}",
            ),
        ],
    )


def build_rfm(runtime: Runtime, params: dict[str, Any], principal: Principal) -> Report:
    """The RFM grid: customers per recency (rows) and frequency (columns) score, and the
    25 cells with their spend."""
    _only(params, ("as_of",))
    as_of = parse_day(_text(params.get("as_of")), "as_of")
    grid = rfm(runtime, as_of)
    by_key = {(cell["r"], cell["f"]): cell for cell in grid["cells"]}
    return Report(
        title="RFM",
        subtitle=f"scores as of {grid['as_of'] or 'no orders yet'}; {grid['customers']:,} "
        f"customers spending {grid['monetary_total']:,}",
        sections=[
            Table(
                columns=("Recency \\ frequency", *[f"F{f}" for f in SCORES]),
                rows=[
                    [f"R{r}", *[by_key[(r, f)]["customers"] for f in SCORES]]
                    for r in reversed(SCORES)
                ],
                caption="Customers by recency score (5 = most recent) and frequency score",
            ),
            Table(
                columns=("R", "F", "Customers", "Spend", "Mean spend"),
                rows=[
                    [c["r"], c["f"], c["customers"], c["monetary_total"], c["monetary_mean"]]
                    for c in grid["cells"]
                ],
                caption="Every cell",
            ),
        ],
    )


def build_cohorts(runtime: Runtime, params: dict[str, Any], principal: Principal) -> Report:
    """Cohort retention: the share of each first-purchase month ordering k months later."""
    _only(params, ())
    found = cohorts(runtime)
    months = min(found["months"], COHORT_MONTHS_SHOWN)
    sections: list[Any] = [
        Table(
            columns=("Cohort", "Customers", *[f"M{k}" for k in range(months)]),
            rows=[_cohort_row(cohort, months) for cohort in found["cohorts"]],
            caption="Share of each cohort ordering again, by months since the first order",
        )
    ]
    if found["months"] > months:
        sections.append(
            Text(f"Months {months} to {found['months'] - 1} are in the CSV export of the page.")
        )
    return Report(
        title="Cohort retention",
        subtitle=f"{len(found['cohorts'])} monthly cohorts",
        sections=sections,
    )


registry.register("overview", build_overview)
registry.register("rfm", build_rfm)
registry.register("cohorts", build_cohorts)


def _overview_totals(numbers: dict[str, Any]) -> list[list[Any]]:
    return [
        ["Events", numbers["events_total"]],
        ["Active customers", numbers["active_customers"]],
        ["Orders", numbers["orders_total"]],
        ["Revenue", numbers["revenue_total"]],
        ["New profiles", numbers["new_profiles_total"]],
        ["Profiles in all", numbers["profiles_total"]],
        ["Dead letters", numbers["dlq_size"]],
    ]


def _cohort_row(cohort: dict[str, Any], months: int) -> list[Any]:
    shares: list[Any] = [
        f"{Decimal(str(point['share'])) * 100:.1f}%" for point in cohort["retention"][:months]
    ]
    return [cohort["cohort"], cohort["size"], *shares, *[None] * (months - len(shares))]


def _range_text(filters: Filters) -> str:
    start = filters.date_from.isoformat() if filters.date_from else "the first event"
    end = filters.date_to.isoformat() if filters.date_to else "the latest"
    parts = [f"from {start} to {end}"]
    if filters.sources:
        parts.append("sources " + ", ".join(filters.sources))
    if filters.event_types:
        parts.append("event types " + ", ".join(filters.event_types))
    return "; ".join(parts)


def _only(params: dict[str, Any], known: tuple[str, ...]) -> None:
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise InputError(
            "unknown_parameter",
            f"unknown report parameter {', '.join(unknown)}; "
            + (f"the known ones are {', '.join(known)}" if known else "this report takes none"),
        )


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return str(value[-1] if isinstance(value, list | tuple) and value else value)
