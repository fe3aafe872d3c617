"""Trends: events per day or week broken down by event type, source or country, with active
customers and revenue per period.

Event counts run on the raw lake through `runtime.lake_query` (the same SQL on chdb and on a
ClickHouse server): a breakdown over every event is a scan the lake's columnar files are made
for. The country is the one F1's geo enricher put in `context.geo.country` of the payload.
Active customers (resolved profiles) and revenue (exact `numeric`, read by F2's money rules)
come from the profile store, as in `c360.analytics.overview`.

Touches: reads the lake and PostgreSQL; writes only the analytics cache.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from c360.analytics import cache
from c360.analytics.filters import (
    Filters,
    lake_conditions,
    lake_period,
    periods,
    pg_event_conditions,
    pg_period,
)
from c360.analytics.overview import ORDER_SQL, iso_day
from c360.errors import InputError
from c360.runtime import Runtime

#: What a trend can be broken down by, and the lake SQL of each key. A track event's type is
#: its name (`Order Completed`); other events go by their Segment type (`identify`, `page`).
BREAKDOWNS = {
    "type": "if(type = 'track' AND event IS NOT NULL AND event != '', event, type)",
    "source": "source",
    "country": "JSONExtractString(payload, 'context', 'geo', 'country')",
}

#: The key of events without a country (no IP, a private address, no match).
UNKNOWN = "unknown"


def trends(runtime: Runtime, filters: Filters, by: str = "type") -> dict[str, Any]:
    """Per-period series for the filters, cached. `series` holds one entry per key (most
    events first) with `{"period", "events"}` points; `active_customers` and `revenue` are
    per period, whatever the breakdown."""
    check_breakdown(by)
    params = {**filters.canonical(), "by": by}
    return cache.cached(runtime, "trends", params, lambda: compute_trends(runtime, filters, by))


def check_breakdown(by: str) -> None:
    """Refuse a breakdown that does not exist, naming the ones that do."""
    if by not in BREAKDOWNS:
        raise InputError(
            "invalid_breakdown", f"by must be one of {', '.join(BREAKDOWNS)}; got {by[:20]!r}"
        )


def compute_trends(runtime: Runtime, filters: Filters, by: str) -> dict[str, Any]:
    """The trends, computed now (no cache)."""
    check_breakdown(by)
    counts = lake_counts_by(runtime, filters, by)
    active, revenue = store_series(runtime, filters)
    seen = [period for points in counts.values() for period in points]
    series = periods(filters, [*seen, *active, *revenue])
    keys = sorted(counts, key=lambda key: (-sum(counts[key].values()), key))
    return {
        "filters": filters.canonical(),
        "by": by,
        "series": [
            {
                "key": key,
                "total": sum(counts[key].values()),
                "points": [{"period": p, "events": counts[key].get(p, 0)} for p in series],
            }
            for key in keys
        ],
        "active_customers": [{"period": p, "customers": active.get(p, 0)} for p in series],
        "revenue": [
            {
                "period": p,
                "orders": revenue.get(p, (0, Decimal(0)))[0],
                "revenue": revenue.get(p, (0, Decimal(0)))[1],
            }
            for p in series
        ],
    }


def lake_counts_by(runtime: Runtime, filters: Filters, by: str) -> dict[str, dict[str, int]]:
    """{key: {ISO period: events}} from the lake."""
    rows = runtime.lake_query.query(
        f"SELECT {lake_period(filters.granularity)} AS period, {BREAKDOWNS[by]} AS key,"
        f" count() AS events FROM {{lake}} WHERE {lake_conditions(filters)}"
        " GROUP BY period, key ORDER BY period, key"
    )
    found: dict[str, dict[str, int]] = {}
    for period, key, count in rows:
        found.setdefault(key or UNKNOWN, {})[iso_day(period)] = int(count)
    return found


def store_series(
    runtime: Runtime, filters: Filters
) -> tuple[dict[str, int], dict[str, tuple[int, Decimal]]]:
    """Active customers per period, and (orders, revenue) per period, from the store."""
    where, values = pg_event_conditions(filters)
    period = pg_period("e.event_time", filters.granularity)
    with runtime.pool.connection() as conn:
        active = conn.execute(
            f"SELECT {period} AS period, count(DISTINCT e.profile_id) FROM events e"
            f" WHERE e.profile_id IS NOT NULL AND {where} GROUP BY period",
            values,
        ).fetchall()
        money = conn.execute(
            f"SELECT {period} AS period, count(*) FILTER (WHERE {ORDER_SQL}),"
            f" coalesce(sum(e.revenue), 0) FROM events e"
            f" WHERE {where} AND ({ORDER_SQL} OR e.revenue IS NOT NULL) GROUP BY period",
            values,
        ).fetchall()
    return (
        {iso_day(p): int(n) for p, n in active},
        {iso_day(p): (int(n), Decimal(total)) for p, n, total in money},
    )
