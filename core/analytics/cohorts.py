"""Cohort retention by first-purchase month.

A customer's cohort is the UTC month of its first order; for each month offset k (0 is the
cohort month itself) the cohort's *retained* customers are those with at least one order in
month cohort + k, and the share is retained / cohort size. Offsets run up to the last month
with any order, so a month in which nobody came back shows as zero rather than missing.

Computed on the profile store (PostgreSQL): cohorts are per profile, and only the store knows
which events belong to which (merged) profile. Orders are Segment's `Order Completed` events
of live profiles.

Touches: reads PostgreSQL; writes only the analytics cache.
"""

from __future__ import annotations

from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from c360.analytics import cache
from c360.analytics.overview import ORDER_SQL
from c360.errors import InputError
from c360.runtime import Runtime

#: Shares are given to four decimal places (half to even): 0.1234 is 12.34%.
SHARE = Decimal("0.0001")

#: Each order's month, and each customer's first; reused by the drill-down. The first month
#: comes from a window over the same rows, not a join back to them: right after a bulk load,
#: before PostgreSQL has statistics, a join was planned as a nested loop that took minutes.
MONTHS_SQL = f"""
WITH orders AS (
    SELECT DISTINCT e.profile_id,
           date_trunc('month', e.event_time AT TIME ZONE 'UTC')::date AS month
    FROM events e JOIN profiles p ON p.profile_id = e.profile_id
    WHERE p.merged_into IS NULL AND {ORDER_SQL}
), activity AS (
    SELECT profile_id, cohort,
           ((extract(year FROM month) - extract(year FROM cohort)) * 12
            + extract(month FROM month) - extract(month FROM cohort))::int AS k
    FROM (
        SELECT profile_id, month, min(month) OVER (PARTITION BY profile_id) AS cohort
        FROM orders
    ) AS months
)
"""


def cohorts(runtime: Runtime) -> dict[str, Any]:
    """Cohorts oldest first (cached): `{"cohort": "YYYY-MM", "size", "retention": [{"offset",
    "customers", "share"}]}`."""
    return cache.cached(runtime, "cohorts", {}, lambda: compute_cohorts(runtime))


def compute_cohorts(runtime: Runtime) -> dict[str, Any]:
    """The cohorts, computed now (no cache)."""
    with runtime.pool.connection() as conn:
        rows = conn.execute(
            f"{MONTHS_SQL} SELECT cohort, k, count(*) FROM activity GROUP BY cohort, k"
        ).fetchall()
    retained: dict[date, dict[int, int]] = {}
    for cohort, k, customers in rows:
        retained.setdefault(cohort, {})[int(k)] = int(customers)
    if not retained:
        return {"cohorts": [], "months": 0}
    last = max(_month_index(cohort) + max(ks) for cohort, ks in retained.items())
    return {
        "months": last - _month_index(min(retained)) + 1,
        "cohorts": [
            _cohort(cohort, retained[cohort], last - _month_index(cohort))
            for cohort in sorted(retained)
        ],
    }


def cohort_month(text: str) -> date:
    """A cohort written YYYY-MM as its first day."""
    try:
        year, month = (int(part) for part in text.split("-"))
        return date(year, month, 1)
    except ValueError as exc:
        raise InputError(
            "invalid_cohort", f"cohort must be a month written YYYY-MM; got {text[:20]!r}"
        ) from exc


def _cohort(cohort: date, by_offset: dict[int, int], last_offset: int) -> dict[str, Any]:
    size = by_offset.get(0, 0)
    return {
        "cohort": cohort.strftime("%Y-%m"),
        "size": size,
        "retention": [
            {
                "offset": k,
                "customers": by_offset.get(k, 0),
                "share": _share(by_offset.get(k, 0), size),
            }
            for k in range(last_offset + 1)
        ],
    }


def _share(part: int, whole: int) -> Decimal:
    if not whole:
        return Decimal(0)
    return (Decimal(part) / Decimal(whole)).quantize(SHARE, ROUND_HALF_EVEN)


def _month_index(day: date) -> int:
    return day.year * 12 + day.month - 1
