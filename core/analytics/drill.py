"""Drill-downs: the rows behind a number on a chart. The events behind a point of an events,
revenue or trend series, and the profiles behind a count (active customers, new profiles, a
cohort's retained customers); and one profile's events for its timeline. RFM cells have
`c360.analytics.rfm.rfm_cell`.

These read the profile store (PostgreSQL), which holds each event once with its profile and
exact revenue, and page with LIMIT / OFFSET in a fixed order, so a page is stable while the
data is. The rows match the numbers they explain: the same filters, the same order rule, the
same breakdown keys as `c360.analytics.trends` (a country is `unknown` when none is known).

Touches: reads PostgreSQL only; nothing is cached (a page is cheap and rarely asked twice).
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from c360 import audit
from c360.access import Principal
from c360.analytics.cohorts import MONTHS_SQL, cohort_month
from c360.analytics.filters import Filters, period_start, pg_event_conditions, pg_period
from c360.analytics.overview import first_event_conditions
from c360.analytics.trends import UNKNOWN, check_breakdown
from c360.errors import InputError
from c360.governance.policies import mask_profiles
from c360.runtime import Runtime

MAX_LIMIT = 1000
MAX_OFFSET = 10_000_000

#: What an identifier the principal may not see reads as (c360.governance.policies).
MASKED = "***"

#: What a profile drill-down can explain.
PROFILE_METRICS = ("active_customers", "new_profiles")

#: Store SQL of each breakdown key, matching `c360.analytics.trends.BREAKDOWNS` on the lake.
_KEYS = {
    "type": "CASE WHEN e.type = 'track' AND coalesce(e.event, '') <> '' THEN e.event"
    " ELSE e.type END",
    "source": "e.source",
    "country": f"coalesce(nullif(e.payload #>> '{{context,geo,country}}', ''), '{UNKNOWN}')",
}

#: What `profiles` rows a drill-down shows.
_PROFILE_COLUMNS = (
    "p.profile_id, p.first_seen, p.last_seen, p.event_count, p.order_count, p.revenue,"
    " (SELECT i.id_value FROM identifiers i WHERE i.profile_id = p.profile_id"
    " AND i.id_type = 'user_id' ORDER BY i.first_seen, i.id_value LIMIT 1)"
)


def for_principal(
    runtime: Runtime, principal: Principal | None, rows: list[dict[str, Any]], via: str
) -> list[dict[str, Any]]:
    """Rows that list profiles or events (each with `profile_id` and `user_id`) as `principal`
    may see them: the userId is the identifier `id_user_id`, masked by the access policies as
    the profile API masks it; a userId shown unmasked is recorded as a PII read through `via`.
    Applied after any cache, so one principal's view never reaches another."""
    if not rows:
        return rows
    docs = [_identified(row) for row in rows]
    with runtime.pool.connection() as conn:
        masked, shown = mask_profiles(conn, principal, docs)
        if principal is not None and shown:
            audit.record_pii_read(
                conn,
                actor=principal.actor,
                profile_ids=_shown_profiles(docs),
                fields=shown,
                via=via,
            )
    return [{**row, "user_id": _user_id(doc)} for row, doc in zip(rows, masked, strict=True)]


def customer_label(row: dict[str, Any]) -> str:
    """How a table names a customer: its userId when shown, else its profile id (a masked
    userId tells readers nothing and every masked one looks the same)."""
    user_id = row.get("user_id")
    return user_id if user_id and user_id != MASKED else str(row.get("profile_id") or "")


def check_page(limit: int, offset: int) -> None:
    """Refuse a page outside its bounds (an OFFSET beyond them scans for minutes)."""
    if not 1 <= limit <= MAX_LIMIT or not 0 <= offset <= MAX_OFFSET:
        raise InputError(
            "invalid_page",
            f"limit must be from 1 to {MAX_LIMIT} and offset from 0 to {MAX_OFFSET:,}",
        )


def drill_events(
    runtime: Runtime,
    filters: Filters,
    period: date | None = None,
    by: str | None = None,
    key: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> dict[str, Any]:
    """Events matching the filters, within one period (the day, or the ISO week holding
    `period`, as `filters.granularity` says) when given, and with one breakdown key when
    `by` and `key` are given; oldest first, then by source and messageId."""
    check_page(limit, offset)
    where, values = pg_event_conditions(filters)
    where, values = _narrowed(where, values, filters, period, by, key)
    with runtime.pool.connection() as conn:
        total = conn.execute(f"SELECT count(*) FROM events e WHERE {where}", values).fetchone()
        rows = conn.execute(
            "SELECT e.event_time, e.source, e.type, e.event, e.message_id, e.profile_id,"
            f" e.user_id, e.revenue FROM events e WHERE {where}"
            " ORDER BY e.event_time, e.source, e.message_id"
            " LIMIT %(limit)s OFFSET %(offset)s",
            {**values, "limit": limit, "offset": offset},
        ).fetchall()
    return {
        "filters": filters.canonical(),
        "period": period_start(period, filters.granularity).isoformat() if period else None,
        "by": by,
        "key": key,
        "total": int(total[0]) if total else 0,
        "limit": limit,
        "offset": offset,
        "rows": [_event_row(row) for row in rows],
    }


def drill_profiles(
    runtime: Runtime,
    filters: Filters,
    metric: str,
    period: date | None = None,
    limit: int = 50,
    offset: int = 0,
) -> dict[str, Any]:
    """The profiles behind `active_customers` (profiles with an event matching the filters)
    or `new_profiles` (live profiles first seen in the range), optionally within one period;
    largest revenue first, then profile id."""
    check_page(limit, offset)
    if metric not in PROFILE_METRICS:
        raise InputError(
            "invalid_metric",
            f"metric must be one of {', '.join(PROFILE_METRICS)}; got {metric[:30]!r}",
        )
    if metric == "active_customers":
        where, values = pg_event_conditions(filters)
        where, values = _narrowed(where, values, filters, period, None, None)
        chosen = f"p.profile_id IN (SELECT e.profile_id FROM events e WHERE {where})"
    else:
        chosen, values = _first_seen_in(filters, period)
    return _profiles_page(runtime, chosen, values, limit, offset) | {
        "filters": filters.canonical(),
        "metric": metric,
        "period": period_start(period, filters.granularity).isoformat() if period else None,
    }


def cohort_profiles(
    runtime: Runtime, cohort: str, month_offset: int, limit: int = 50, offset: int = 0
) -> dict[str, Any]:
    """The customers of a cohort (YYYY-MM) who ordered in month cohort + `month_offset`."""
    check_page(limit, offset)
    if not 0 <= month_offset <= 1200:
        raise InputError("invalid_offset", "month_offset must be from 0 to 1200")
    values = {"cohort": cohort_month(cohort), "k": month_offset}
    chosen = (
        f"p.profile_id IN ({MONTHS_SQL} SELECT profile_id FROM activity"
        " WHERE cohort = %(cohort)s AND k = %(k)s)"
    )
    return _profiles_page(runtime, chosen, values, limit, offset) | {
        "cohort": cohort,
        "month_offset": month_offset,
    }


def profile_events(
    runtime: Runtime, profile_id: str, limit: int = 50, offset: int = 0
) -> dict[str, Any]:
    """One profile's events for its timeline, newest first (then by source and messageId),
    paged; the rows are those of `drill_events`. An id that is not a UUID has no events."""
    check_page(limit, offset)
    try:
        key = uuid.UUID(profile_id)
    except ValueError:
        return {"profile_id": profile_id, "total": 0, "limit": limit, "offset": offset, "rows": []}
    with runtime.pool.connection() as conn:
        total = conn.execute("SELECT count(*) FROM events WHERE profile_id = %s", (key,)).fetchone()
        rows = conn.execute(
            "SELECT e.event_time, e.source, e.type, e.event, e.message_id, e.profile_id,"
            " e.user_id, e.revenue FROM events e WHERE e.profile_id = %s"
            " ORDER BY e.event_time DESC, e.source, e.message_id LIMIT %s OFFSET %s",
            (key, limit, offset),
        ).fetchall()
    return {
        "profile_id": profile_id,
        "total": int(total[0]) if total else 0,
        "limit": limit,
        "offset": offset,
        "rows": [_event_row(row) for row in rows],
    }


def _identified(row: dict[str, Any]) -> dict[str, Any]:
    """A row as the profile document masking reads: its userId as an identifier."""
    user_id = row.get("user_id")
    identifiers = [] if user_id is None else [{"type": "user_id", "value": user_id}]
    return {"profile_id": row.get("profile_id"), "identifiers": identifiers}


def _shown_profiles(docs: list[dict[str, Any]]) -> list[str]:
    """The profiles whose userId a page shows, once each (events repeat them)."""
    found = (doc["profile_id"] for doc in docs if doc["identifiers"] and doc["profile_id"])
    return list(dict.fromkeys(found))


def _user_id(doc: dict[str, Any]) -> Any:
    return doc["identifiers"][0]["value"] if doc["identifiers"] else None


def _narrowed(
    where: str,
    values: dict[str, Any],
    filters: Filters,
    period: date | None,
    by: str | None,
    key: str | None,
) -> tuple[str, dict[str, Any]]:
    """The event conditions, narrowed to one period and one breakdown key."""
    if period is not None:
        where += f" AND {pg_period('e.event_time', filters.granularity)} = %(d_period)s"
        values = {**values, "d_period": period_start(period, filters.granularity)}
    if (by is None) != (key is None):
        raise InputError("invalid_breakdown", "give both by and key, or neither")
    if by is not None:
        check_breakdown(by)
        where += f" AND {_KEYS[by]} = %(d_key)s"
        values = {**values, "d_key": key}
    return where, values


def _first_seen_in(filters: Filters, period: date | None) -> tuple[str, dict[str, Any]]:
    first, values = first_event_conditions(filters)
    clauses = ["p.first_seen IS NOT NULL", first]
    if filters.start():
        clauses.append("p.first_seen >= %(n_start)s")
        values["n_start"] = filters.start()
    if filters.end():
        clauses.append("p.first_seen < %(n_end)s")
        values["n_end"] = filters.end()
    if period is not None:
        clauses.append(f"{pg_period('p.first_seen', filters.granularity)} = %(n_period)s")
        values["n_period"] = period_start(period, filters.granularity)
    return " AND ".join(clauses), values


def _profiles_page(
    runtime: Runtime, chosen: str, values: dict[str, Any], limit: int, offset: int
) -> dict[str, Any]:
    where = f"p.merged_into IS NULL AND {chosen}"
    with runtime.pool.connection() as conn:
        total = conn.execute(f"SELECT count(*) FROM profiles p WHERE {where}", values).fetchone()
        rows = conn.execute(
            f"SELECT {_PROFILE_COLUMNS} FROM profiles p WHERE {where}"
            " ORDER BY p.revenue DESC, p.profile_id LIMIT %(limit)s OFFSET %(offset)s",
            {**values, "limit": limit, "offset": offset},
        ).fetchall()
    return {
        "total": int(total[0]) if total else 0,
        "limit": limit,
        "offset": offset,
        "profiles": [_profile_row(row) for row in rows],
    }


def _event_row(row: tuple) -> dict[str, Any]:
    time, source, type_, event, message_id, profile_id, user_id, revenue = row
    return {
        "time": _utc(time),
        "source": source,
        "type": type_,
        "event": event,
        "message_id": message_id,
        "profile_id": str(profile_id) if profile_id else None,
        "user_id": user_id,
        "revenue": Decimal(revenue) if revenue is not None else None,
    }


def _profile_row(row: tuple) -> dict[str, Any]:
    profile_id, first_seen, last_seen, events, orders, revenue, user_id = row
    return {
        "profile_id": str(profile_id),
        "user_id": user_id,
        "first_seen": _utc(first_seen),
        "last_seen": _utc(last_seen),
        "events": int(events),
        "orders": int(orders),
        "revenue": Decimal(revenue),
    }


def _utc(moment: datetime | None) -> str | None:
    """A time in UTC, ISO 8601, whatever time zone the session reads it in."""
    return moment.astimezone(UTC).isoformat() if moment else None
