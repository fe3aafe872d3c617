"""RFM: recency, frequency and monetary value per customer, scored 1 to 5, and the 5 x 5 grid
of recency by frequency that the RFM page draws.

Computed on the profile store (PostgreSQL): RFM is per profile, and only the store knows which
events belong to which (merged) profile. A customer is a live profile with at least one order
(Segment's `Order Completed`) up to the `as_of` day:
- recency: whole UTC days from the day of its last order to `as_of`;
- frequency: its orders; each order event counts, repeat purchases included;
- monetary: the sum of its orders' revenue (exact; an order whose amount could not be read
  adds nothing).

Scores, exactly: with n customers, a value's rank is 1 + the number of customers with a worse
value (SQL `RANK()`, so ties share the lowest rank), and its score is 1 + floor(5 x (rank - 1)
/ n). Worse means older for recency and smaller for frequency and monetary, so 5 is always
best. Equal values always get equal scores (no tie is broken by an arbitrary order), which is
why a quintile can hold more or fewer than n / 5 customers: when 60% of customers bought once,
all of them score F = 1 and F = 2 and 3 stay empty.

Touches: reads PostgreSQL; writes only the analytics cache.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from c360.analytics import cache
from c360.analytics.filters import EARLIEST, LATEST
from c360.analytics.overview import ORDER_SQL
from c360.errors import InputError
from c360.runtime import Runtime

SCORES = range(1, 6)

#: Means are shown to the cent (half to even), like the totals they come from.
CENT = Decimal("0.01")

#: Largest page of a cell's profiles.
MAX_LIMIT = 1000

#: Deepest page: beyond it OFFSET scans for too long.
MAX_OFFSET = 10_000_000

#: The scored customers, as a query other SQL selects from; %(as_of_end)s is midnight UTC
#: after the `as_of` day, %(as_of)s the day itself.
SCORED_SQL = f"""
WITH base AS (
    SELECT e.profile_id,
           %(as_of)s::date - max(e.event_time AT TIME ZONE 'UTC')::date AS recency,
           count(*) AS frequency,
           coalesce(sum(e.revenue), 0) AS monetary
    FROM events e JOIN profiles p ON p.profile_id = e.profile_id
    WHERE p.merged_into IS NULL AND {ORDER_SQL} AND e.event_time < %(as_of_end)s
    GROUP BY e.profile_id
), ranked AS (
    SELECT base.*, count(*) OVER () AS n,
           rank() OVER (ORDER BY recency DESC) AS r_rank,
           rank() OVER (ORDER BY frequency) AS f_rank,
           rank() OVER (ORDER BY monetary) AS m_rank
    FROM base
)
SELECT profile_id, recency, frequency, monetary,
       1 + (5 * (r_rank - 1)) / n AS r,
       1 + (5 * (f_rank - 1)) / n AS f,
       1 + (5 * (m_rank - 1)) / n AS m
FROM ranked
"""


def rfm(runtime: Runtime, as_of: date | None = None) -> dict[str, Any]:
    """The RFM grid (cached): `cells` holds all 25 (r, f) pairs, r and f from 1 to 5, each with
    `customers`, `monetary_total` and `monetary_mean`; `as_of` defaults to the day of the
    latest order in the store, so a historical data set reads sensibly."""
    # the default day is found inside the computation, so a hit asks PostgreSQL nothing
    params = {"as_of": as_of.isoformat() if as_of else "latest"}
    return cache.cached(
        runtime, "rfm", params, lambda: compute_rfm(runtime, as_of or latest_order_day(runtime))
    )


def compute_rfm(runtime: Runtime, as_of: date | None) -> dict[str, Any]:
    """The grid, computed now (no cache)."""
    found: dict[tuple[int, int], tuple[int, Decimal]] = {}
    if as_of is not None:
        with runtime.pool.connection() as conn:
            rows = conn.execute(
                f"SELECT r, f, count(*), sum(monetary) FROM ({SCORED_SQL}) s GROUP BY r, f",
                _as_of_params(as_of),
            ).fetchall()
        found = {(int(r), int(f)): (int(n), Decimal(total)) for r, f, n, total in rows}
    cells = [_cell(r, f, *found.get((r, f), (0, Decimal(0)))) for r in SCORES for f in SCORES]
    return {
        "as_of": as_of.isoformat() if as_of else None,
        "customers": sum(cell["customers"] for cell in cells),
        "monetary_total": sum((cell["monetary_total"] for cell in cells), Decimal(0)),
        "cells": cells,
    }


def rfm_cell(
    runtime: Runtime,
    r: int,
    f: int,
    limit: int = 50,
    offset: int = 0,
    as_of: date | None = None,
) -> dict[str, Any]:
    """The customers in one cell of the grid, largest monetary first (then profile id), with
    their userId, recency, frequency, monetary and all three scores. Not cached: a page is
    cheap and rarely asked twice."""
    check_cell(r, f, limit, offset)
    day = as_of or latest_order_day(runtime)
    profiles: list[dict[str, Any]] = []
    total = 0
    if day is not None:
        params = {**_as_of_params(day), "r": r, "f": f, "limit": limit, "offset": offset}
        with runtime.pool.connection() as conn:
            total = int(
                conn.execute(
                    f"SELECT count(*) FROM ({SCORED_SQL}) s WHERE r = %(r)s AND f = %(f)s", params
                ).fetchone()[0]
            )
            rows = conn.execute(
                f"SELECT s.*, ({_USER_ID_SQL}) FROM ({SCORED_SQL}) s"
                " WHERE r = %(r)s AND f = %(f)s ORDER BY monetary DESC, profile_id"
                " LIMIT %(limit)s OFFSET %(offset)s",
                params,
            ).fetchall()
        profiles = [_profile_row(row) for row in rows]
    return {
        "as_of": day.isoformat() if day else None,
        "r": r,
        "f": f,
        "customers": total,
        "limit": limit,
        "offset": offset,
        "profiles": profiles,
    }


def check_cell(r: int, f: int, limit: int, offset: int) -> None:
    """Refuse scores outside 1-5 and pages outside their bounds."""
    for name, score in (("r", r), ("f", f)):
        if score not in SCORES:
            raise InputError("invalid_score", f"{name} must be a score from 1 to 5; got {score}")
    if not 1 <= limit <= MAX_LIMIT or not 0 <= offset <= MAX_OFFSET:
        raise InputError(
            "invalid_page",
            f"limit must be from 1 to {MAX_LIMIT} and offset from 0 to {MAX_OFFSET:,}",
        )


def check_as_of(day: date | None) -> None:
    """Refuse an as_of day outside the range any data can have."""
    if day is not None and not EARLIEST <= day <= LATEST:
        raise InputError("invalid_date", f"as_of must be between {EARLIEST} and {LATEST}")


def latest_order_day(runtime: Runtime) -> date | None:
    """The UTC day of the latest order of any live profile; None when there is none."""
    with runtime.pool.connection() as conn:
        row = conn.execute(
            "SELECT max(last_order_at) FROM profiles WHERE merged_into IS NULL"
        ).fetchone()
    moment: datetime | None = row[0] if row else None
    return moment.astimezone(UTC).date() if moment else None


#: The profile's userId, when it has one (the first seen).
_USER_ID_SQL = (
    "SELECT i.id_value FROM identifiers i WHERE i.profile_id = s.profile_id"
    " AND i.id_type = 'user_id' ORDER BY i.first_seen, i.id_value LIMIT 1"
)


def _as_of_params(as_of: date) -> dict[str, Any]:
    end = datetime.combine(as_of + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    return {"as_of": as_of, "as_of_end": end}


def _cell(r: int, f: int, customers: int, total: Decimal) -> dict[str, Any]:
    mean = (total / customers).quantize(CENT, ROUND_HALF_EVEN) if customers else Decimal(0)
    return {
        "r": r,
        "f": f,
        "customers": customers,
        "monetary_total": total,
        "monetary_mean": mean,
    }


def _profile_row(row: tuple) -> dict[str, Any]:
    profile_id, recency, frequency, monetary, r, f, m, user_id = row
    return {
        "profile_id": str(profile_id),
        "user_id": user_id,
        "recency_days": int(recency),
        "frequency": int(frequency),
        "monetary": Decimal(monetary),
        "r": int(r),
        "f": int(f),
        "m": int(m),
    }
