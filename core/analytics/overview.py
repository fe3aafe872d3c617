"""The overview dashboard's numbers: events, active customers, revenue and orders, new and
total profiles, dead letters, for a date range, sources and event types.

Where each number comes from, and why:
- events per period: the raw lake through `runtime.lake_query` (chdb, or a ClickHouse server
  when configured). Counting rows is what the lake is for, and it scales past what the
  profile store should scan.
- active customers, revenue, orders: the profile store's `events` table (PostgreSQL). An
  active customer is a resolved profile, which only the store knows; money is read there
  because F2 has already turned it into exact `numeric` by c360's money rules (the lake keeps
  the raw payload, whose amounts would have to be parsed again in SQL).
- new and total profiles: the `profiles` table (live profiles: not merged into another). A
  profile is new in the range when it was first seen in it; with sources or event types, also
  when its first event came from one of those sources and is of one of those types (what
  brought the customer in). Total profiles follow no filter.
- dead letters: the length of the c360-dlq topic, through the bus adapter.

Touches: reads PostgreSQL, the lake and the bus; writes only the analytics cache.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from c360.adapters.bus import DLQ
from c360.analytics import cache
from c360.analytics.filters import (
    Filters,
    lake_conditions,
    lake_period,
    periods,
    pg_event_conditions,
    pg_period,
    pg_time_conditions,
)
from c360.runtime import Runtime

#: SQL that is true for an order: Segment's `Order Completed`, as F2 and F3 read it.
ORDER_SQL = "(e.type = 'track' AND lower(btrim(e.event)) = 'order completed')"


def overview(runtime: Runtime, filters: Filters) -> dict[str, Any]:
    """The overview for these filters, cached (see `c360.analytics.cache`). Series are lists
    of `{"period": "YYYY-MM-DD", ...}` oldest first; a period is a UTC day or the Monday of an
    ISO week, as `filters.granularity` says."""
    return cache.cached(
        runtime, "overview", filters.canonical(), lambda: compute_overview(runtime, filters)
    )


def compute_overview(runtime: Runtime, filters: Filters) -> dict[str, Any]:
    """The overview, computed now (no cache)."""
    events = lake_event_counts(runtime, filters)
    store = store_numbers(runtime, filters)
    new_profiles = new_profile_counts(runtime, filters)
    seen = [*events, *store["revenue"], *new_profiles]
    series = periods(filters, seen)
    return {
        "filters": filters.canonical(),
        "events_total": sum(events.values()),
        "events": [{"period": p, "events": events.get(p, 0)} for p in series],
        "active_customers": store["active_customers"],
        "orders_total": sum(orders for orders, _ in store["revenue"].values()),
        "revenue_total": sum((amount for _, amount in store["revenue"].values()), Decimal(0)),
        "revenue": [
            {
                "period": p,
                "orders": store["revenue"].get(p, (0, Decimal(0)))[0],
                "revenue": store["revenue"].get(p, (0, Decimal(0)))[1],
            }
            for p in series
        ],
        "new_profiles_total": sum(new_profiles.values()),
        "new_profiles": [{"period": p, "profiles": new_profiles.get(p, 0)} for p in series],
        "profiles_total": profiles_total(runtime),
        "dlq_size": dlq_size(runtime),
    }


def lake_event_counts(runtime: Runtime, filters: Filters) -> dict[str, int]:
    """Events per period from the lake: {ISO day: count}."""
    rows = runtime.lake_query.query(
        f"SELECT {lake_period(filters.granularity)} AS period, count() AS events"
        f" FROM {{lake}} WHERE {lake_conditions(filters)}"
        " GROUP BY period ORDER BY period"
    )
    return {iso_day(period): int(count) for period, count in rows}


def store_numbers(runtime: Runtime, filters: Filters) -> dict[str, Any]:
    """Active customers, and (orders, revenue) per period, from the store's events."""
    where, values = pg_event_conditions(filters)
    with runtime.pool.connection() as conn:
        active = conn.execute(
            "SELECT count(DISTINCT e.profile_id) FROM events e"
            f" WHERE e.profile_id IS NOT NULL AND {where}",
            values,
        ).fetchone()
        rows = conn.execute(
            f"SELECT {pg_period('e.event_time', filters.granularity)} AS period,"
            f" count(*) FILTER (WHERE {ORDER_SQL}), coalesce(sum(e.revenue), 0)"
            f" FROM events e WHERE {where} AND ({ORDER_SQL} OR e.revenue IS NOT NULL)"
            " GROUP BY period ORDER BY period",
            values,
        ).fetchall()
    return {
        "active_customers": int(active[0]) if active else 0,
        "revenue": {
            iso_day(period): (int(orders), Decimal(total)) for period, orders, total in rows
        },
    }


def new_profile_counts(runtime: Runtime, filters: Filters) -> dict[str, int]:
    """Live profiles first seen in each period of the range (whose first event matches the
    sources and event types, when given)."""
    where, values = pg_time_conditions(filters, "p.first_seen")
    first, first_values = first_event_conditions(filters)
    with runtime.pool.connection() as conn:
        rows = conn.execute(
            f"SELECT {pg_period('p.first_seen', filters.granularity)} AS period, count(*)"
            " FROM profiles p WHERE p.merged_into IS NULL AND p.first_seen IS NOT NULL"
            f" AND {where} AND {first} GROUP BY period ORDER BY period",
            {**values, **first_values},
        ).fetchall()
    return {iso_day(period): int(count) for period, count in rows}


def first_event_conditions(filters: Filters) -> tuple[str, dict[str, Any]]:
    """SQL true for a profile `p` whose first event (oldest, then by source and messageId)
    matches the filters' sources and event types; TRUE when the filters name neither."""
    if not (filters.sources or filters.event_types):
        return "TRUE", {}
    kinds = Filters(sources=filters.sources, event_types=filters.event_types)
    where, values = pg_event_conditions(kinds, alias="fe")
    first = (
        "SELECT e1.source, e1.type, e1.event FROM events e1 WHERE e1.profile_id = p.profile_id"
        " ORDER BY e1.event_time, e1.source, e1.message_id LIMIT 1"
    )
    return f"EXISTS (SELECT 1 FROM ({first}) fe WHERE {where})", values


def profiles_total(runtime: Runtime) -> int:
    """Live profiles (not merged into another), whatever the filters."""
    with runtime.pool.connection() as conn:
        row = conn.execute("SELECT count(*) FROM profiles WHERE merged_into IS NULL").fetchone()
    return int(row[0]) if row else 0


def dlq_size(runtime: Runtime) -> int:
    """Dead letters kept on the c360-dlq topic.

    TODO(bus adapter): read them through a `length(topic)` method once EventBus has one;
    `read_all` fetches every message, which is fine for a DLQ a person empties, but not free."""
    return len(runtime.bus.read_all(DLQ))


def iso_day(period: Any) -> str:
    """A period from either engine (a date, or a datetime at midnight) as an ISO day."""
    return period.isoformat()[:10]
