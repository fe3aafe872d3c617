"""The filters every analytics chart takes (date range, sources, event types, granularity),
read from query parameters with errors that say what to change, and turned into SQL for the
profile store (PostgreSQL) and for the lake (ClickHouse / chdb).

Touches nothing: pure parsing and SQL text. Values reach PostgreSQL as bound parameters; the
lake's SQL has no parameters, so its literals are quoted with `c360.adapters.lake.sql_string`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from c360.adapters.lake import sql_string
from c360.errors import InputError

#: Query parameters the filters understand.
FILTER_PARAMETERS = ("date_from", "date_to", "source", "event_type", "granularity")

GRANULARITIES = ("day", "week")

#: More values than this in one list is a client bug, not a chart anyone reads.
MAX_VALUES = 100

#: Most periods a series is filled with zeros for (ten years of days); a wider range would
#: answer mostly zeros, so it lists only the periods with data.
MAX_FILLED = 3660

#: Earliest and latest day worth asking for; beyond them a date is a typo.
EARLIEST = date(1970, 1, 1)
LATEST = date(2199, 12, 31)


@dataclass(frozen=True, slots=True)
class Filters:
    """What a chart shows: inclusive UTC days (None: unbounded), sources and event types
    (empty: all), and the period of a series point.

    An event type matches an event's Segment `type` (track, identify, page...) or, for a
    track event, its name (`Order Completed`), so both kinds of question can be asked."""

    date_from: date | None = None
    date_to: date | None = None
    sources: tuple[str, ...] = ()
    event_types: tuple[str, ...] = ()
    granularity: str = "day"

    def canonical(self) -> dict[str, Any]:
        """The filters as plain JSON values in a fixed form (sorted lists), for cache keys
        and for answers, so two spellings of the same question share one cache entry."""
        return {
            "date_from": self.date_from.isoformat() if self.date_from else None,
            "date_to": self.date_to.isoformat() if self.date_to else None,
            "sources": sorted(set(self.sources)),
            "event_types": sorted(set(self.event_types)),
            "granularity": self.granularity,
        }

    def start(self) -> datetime | None:
        """The first instant in range (midnight UTC of date_from)."""
        return _midnight(self.date_from) if self.date_from else None

    def end(self) -> datetime | None:
        """The first instant after the range (midnight UTC after date_to)."""
        return _midnight(self.date_to + timedelta(days=1)) if self.date_to else None


def parse_filters(params: Any, extra: tuple[str, ...] = ()) -> Filters:
    """Filters from query parameters (a Litestar MultiDict or a plain mapping of str or list).
    `extra` names further parameters the caller reads itself; any other is refused."""
    known = FILTER_PARAMETERS + extra
    unknown = sorted(set(params.keys()) - set(known))
    if unknown:
        raise InputError(
            "unknown_parameter",
            f"unknown query parameter {', '.join(unknown)}; the known ones are {', '.join(known)}",
        )
    date_from = parse_day(_one(params, "date_from"), "date_from")
    date_to = parse_day(_one(params, "date_to"), "date_to")
    if date_from and date_to and date_from > date_to:
        raise InputError(
            "invalid_date_range",
            f"date_from ({date_from}) is after date_to ({date_to}); swap them or widen the range",
        )
    granularity = _one(params, "granularity") or "day"
    if granularity not in GRANULARITIES:
        raise InputError(
            "invalid_granularity", f"granularity must be day or week; got {granularity[:20]!r}"
        )
    return Filters(
        date_from=date_from,
        date_to=date_to,
        sources=_many(params, "source"),
        event_types=_many(params, "event_type"),
        granularity=granularity,
    )


def parse_day(text: str | None, name: str) -> date | None:
    """A day written YYYY-MM-DD, or None when not given."""
    if text is None or text == "":
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError:
        day = None
    if day is None or len(text) != 10 or not EARLIEST <= day <= LATEST:
        raise InputError(
            "invalid_date",
            f"{name} must be a day written YYYY-MM-DD between {EARLIEST} and {LATEST}; "
            f"got {text[:30]!r}",
        )
    return day


def period_start(day: date, granularity: str) -> date:
    """The first day of the period holding `day`: itself, or the Monday of its ISO week."""
    return day if granularity == "day" else day - timedelta(days=day.weekday())


def periods(filters: Filters, seen: list[str]) -> list[str]:
    """Every period of the series, oldest first, as ISO days: from date_from to date_to when
    both are given (so days without events show as zero), else the periods that had data.
    A range of more than MAX_FILLED periods lists only the periods that had data."""
    if not (filters.date_from and filters.date_to):
        return sorted(set(seen))
    step = timedelta(days=1 if filters.granularity == "day" else 7)
    if (filters.date_to - filters.date_from) / step > MAX_FILLED:
        return sorted(set(seen))
    current = period_start(filters.date_from, filters.granularity)
    found = []
    while current <= filters.date_to:
        found.append(current.isoformat())
        current += step
    return found


# --- PostgreSQL ------------------------------------------------------------------------


def pg_period(column: str, granularity: str) -> str:
    """SQL for the UTC day or ISO week (its Monday) of a timestamptz column, as a date."""
    unit = "day" if granularity == "day" else "week"
    return f"date_trunc('{unit}', {column} AT TIME ZONE 'UTC')::date"


def pg_event_conditions(filters: Filters, alias: str = "e") -> tuple[str, dict[str, Any]]:
    """A WHERE clause over the `events` table (named `alias`) and its bound parameters."""
    clauses = ["TRUE"]
    values: dict[str, Any] = {}
    if filters.start():
        clauses.append(f"{alias}.event_time >= %(f_start)s")
        values["f_start"] = filters.start()
    if filters.end():
        clauses.append(f"{alias}.event_time < %(f_end)s")
        values["f_end"] = filters.end()
    if filters.sources:
        clauses.append(f"{alias}.source = ANY(%(f_sources)s)")
        values["f_sources"] = list(filters.sources)
    if filters.event_types:
        clauses.append(
            f"({alias}.type = ANY(%(f_types)s)"
            f" OR ({alias}.type = 'track' AND {alias}.event = ANY(%(f_types)s)))"
        )
        values["f_types"] = list(filters.event_types)
    return " AND ".join(clauses), values


def pg_time_conditions(
    filters: Filters, column: str, prefix: str = "t"
) -> tuple[str, dict[str, Any]]:
    """A WHERE clause keeping `column` (a timestamptz) within the date range."""
    clauses = ["TRUE"]
    values: dict[str, Any] = {}
    if filters.start():
        clauses.append(f"{column} >= %({prefix}_start)s")
        values[f"{prefix}_start"] = filters.start()
    if filters.end():
        clauses.append(f"{column} < %({prefix}_end)s")
        values[f"{prefix}_end"] = filters.end()
    return " AND ".join(clauses), values


# --- the lake (ClickHouse SQL, the same on chdb and a server) --------------------------


def lake_period(granularity: str) -> str:
    """ClickHouse SQL for the UTC day or ISO week (its Monday) of an event's time."""
    day = "toDate(timestamp, 'UTC')"
    return day if granularity == "day" else f"toMonday({day})"


def lake_conditions(filters: Filters) -> str:
    """A WHERE clause over the lake's columns, literals quoted.

    Besides the event time, it keeps `dt` (the day c360 received the event, the lake's
    partition) from the day before date_from on: F1 refuses event times over an hour ahead of
    receipt, so no event in range was received earlier, and partitions before it are skipped."""
    clauses = ["1 = 1"]
    if filters.start():
        clauses.append(f"timestamp >= {_lake_time(filters.start())}")
        clauses.append(f"dt >= toDate({sql_string(_day_before(filters.date_from))})")
    if filters.end():
        clauses.append(f"timestamp < {_lake_time(filters.end())}")
    if filters.sources:
        clauses.append(f"source IN ({_lake_list(filters.sources)})")
    if filters.event_types:
        types = _lake_list(filters.event_types)
        clauses.append(f"(type IN ({types}) OR (type = 'track' AND event IN ({types})))")
    return " AND ".join(clauses)


def _lake_time(moment: datetime | None) -> str:
    assert moment is not None
    text = moment.strftime("%Y-%m-%d %H:%M:%S")
    return f"toDateTime64({sql_string(text)}, 6, 'UTC')"


def _lake_list(values: tuple[str, ...]) -> str:
    return ", ".join(sql_string(value) for value in sorted(set(values)))


def _day_before(day: date | None) -> str:
    assert day is not None
    return (day - timedelta(days=1)).isoformat()


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _one(params: Any, name: str) -> str | None:
    """A parameter that may be given once; the last copy wins, as in most web frameworks."""
    values = _all(params, name)
    return values[-1] if values else None


def _many(params: Any, name: str) -> tuple[str, ...]:
    """A list parameter: repeated (`source=a&source=b`) or comma-separated (`source=a,b`)."""
    found = [part.strip() for value in _all(params, name) for part in value.split(",")]
    found = [value for value in found if value]
    if len(found) > MAX_VALUES:
        raise InputError(
            f"too_many_{name}s", f"at most {MAX_VALUES} values of {name} may be given at once"
        )
    return tuple(sorted(set(found)))


def _all(params: Any, name: str) -> list[str]:
    if hasattr(params, "getall"):
        return [str(value) for value in params.getall(name, [])]
    value = params.get(name) if isinstance(params, Mapping) else None
    if value is None:
        return []
    return [str(item) for item in value] if isinstance(value, list | tuple) else [str(value)]
