"""Event time: parse Segment timestamps and correct the sender's clock skew.

corrected = timestamp + (receivedAt - sentAt), in exact datetime arithmetic. A corrected time
that is implausible falls back to the time as sent, then to receivedAt, with a warning.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from c360.events.text import shown


@dataclass(frozen=True, slots=True)
class EventTime:
    """The chosen event time and the warnings met on the way."""

    timestamp: datetime
    original: datetime | None
    sent_at: datetime | None
    warnings: tuple[str, ...]
    #: Times that could not be read, by field name, kept as sent so the value is not lost
    unreadable: dict[str, Any] = field(default_factory=dict)


def parse_time(value: Any) -> datetime | None:
    """An aware UTC datetime from an ISO 8601 string; None when absent or unreadable."""
    if isinstance(value, datetime):
        return _in_utc(value)
    if isinstance(value, str) and value:
        return _parse_text(value)
    return None


@lru_cache(maxsize=8192)
def _parse_text(value: str) -> datetime | None:
    """Parsing is cached: a batch's events often share a sentAt, or a timestamp."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return _in_utc(moment)


def _in_utc(moment: datetime) -> datetime | None:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # year 1 or 9999 with an offset leaves the calendar in UTC
        return None


def event_time(
    raw_timestamp: Any,
    raw_sent_at: Any,
    received_at: datetime,
    *,
    earliest: datetime,
    max_future: timedelta,
) -> EventTime:
    """Decide an event's time from what the client sent and when it arrived."""
    warnings: list[str] = []
    unreadable: dict[str, Any] = {}
    original = parse_time(raw_timestamp)
    sent_at = parse_time(raw_sent_at)
    if raw_timestamp not in (None, "") and original is None:
        unreadable["timestamp"] = raw_timestamp
        warnings.append(
            f"timestamp {shown(raw_timestamp)} is not an ISO 8601 time; receivedAt used"
        )
    if raw_sent_at not in (None, "") and sent_at is None:
        unreadable["sentAt"] = raw_sent_at
        warnings.append(
            f"sentAt {shown(raw_sent_at)} is not an ISO 8601 time; no clock-skew correction"
        )

    def plausible(moment: datetime) -> bool:
        return earliest <= moment <= received_at + max_future

    if original is None:
        return EventTime(received_at, None, sent_at, tuple(warnings), unreadable)

    corrected = _corrected(original, sent_at, received_at)
    if corrected is not None and plausible(corrected):
        return EventTime(corrected, original, sent_at, tuple(warnings), unreadable)
    if plausible(original):
        warnings.append("skew-corrected time is implausible; timestamp kept as sent")
        return EventTime(original, original, sent_at, tuple(warnings), unreadable)
    warnings.append("timestamp is implausible; receivedAt used")
    return EventTime(received_at, original, sent_at, tuple(warnings), unreadable)


def _corrected(
    original: datetime, sent_at: datetime | None, received_at: datetime
) -> datetime | None:
    """The skew-corrected time; None when the correction leaves the calendar (years 1-9999)."""
    if sent_at is None:
        return original
    try:
        return original + (received_at - sent_at)
    except OverflowError:
        return None
