"""Whether and when a due notification goes out: consent for its purpose (public.consent),
the customer's word on the channel (notify.preferences), quiet hours in the customer's time
zone (held until they end, not dropped), frequency caps per customer per rolling day and week
(over a cap: suppressed), and a global throttle per minute kept in Valkey (over it: held until
the next minute).

Quiet hours follow the customer's wall clock through daylight-saving changes: they end at the
first moment after now that the clock reads a time outside them. So a send held at 01:15 on a
night whose clocks go back waits for the next 01:30 the clock reads (the second one when held
during the repeated hour), and one held before a 02:30 end that the clocks skip (02:00 ->
03:00) goes out when they jump.

Reads public.consent, notify.preferences, notify.sends and the customer's latest events (for
the time zone their browser reports); counts in Valkey. Called by the scheduler inside the
transaction that holds the send.
"""

from __future__ import annotations

import math
import zoneinfo
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any, Literal

import psycopg
import redis

from c360.notifications import preferences
from c360.settings import Settings

#: Traits a profile may give its IANA time zone in (Segment puts it in context.timezone,
#: which sources often copy into traits under one of these names).
TIMEZONE_TRAITS = ("timezone", "timeZone", "time_zone", "tz")
#: How many of a customer's latest events are read for the time zone their browser reported
#: (analytics.js sets context.timezone on each): enough to look past the server-side events
#: that come between visits, few enough to stay one quick indexed read per send.
RECENT_EVENTS_FOR_TIMEZONE = 200
#: Consent purposes that allow open tracking (compared case-insensitively).
TRACKING_PURPOSES = ("analytics", "tracking")

_RATE_KEY = "c360:notify:rate:{minute}"


@dataclass(frozen=True, slots=True)
class Decision:
    """Send now, hold until `until`, or suppress; `reason` says why not now."""

    action: Literal["send", "hold", "suppress"]
    reason: str | None = None
    until: datetime | None = None


SEND = Decision("send")


def decide(
    conn: psycopg.Connection,
    valkey: redis.Redis,
    settings: Settings,
    send: dict[str, Any],
    profile: dict[str, Any],
    now: datetime,
) -> Decision:
    """The decision for one due send to a live profile at `now` (the send's `address` is
    resolved). A send decided "send" has taken its place under the global throttle."""
    if not has_consent(conn, profile["profile_id"], send["purpose"]):
        return Decision("suppress", "no_consent")
    if not preferences.allows(
        conn,
        channel=send["channel"],
        purpose=send["purpose"],
        profile_id=profile["profile_id"],
        address=send["address"],
    ):
        return Decision("suppress", "unsubscribed")
    zone = timezone_of(profile, settings, conn)
    quiet_end = quiet_until(now, settings.quiet_hours, zone)
    if quiet_end is not None:
        return Decision("hold", "quiet_hours", quiet_end)
    over = over_cap(conn, settings, profile["profile_id"], now)
    if over:
        return Decision("suppress", over)
    if not take_throttle(valkey, settings.notify_rate_per_minute, now):
        return Decision("hold", "throttled", _next_minute(now))
    return SEND


def has_consent(conn: psycopg.Connection, profile_id: str, purpose: str) -> bool:
    """Whether the customer granted this purpose (their latest choice, by c360's consent
    rule); no choice recorded is no consent."""
    row = conn.execute(
        "SELECT bool_and(granted) FROM consent"
        " WHERE profile_id = %s AND lower(purpose) = lower(%s)",
        (profile_id, purpose),
    ).fetchone()
    return bool(row and row[0])


def allows_tracking(conn: psycopg.Connection, profile_id: str | None) -> bool:
    """Whether the customer lets us see that they opened a message."""
    if profile_id is None:
        return False
    return any(has_consent(conn, profile_id, purpose) for purpose in TRACKING_PURPOSES)


def timezone_of(
    profile: dict[str, Any], settings: Settings, conn: psycopg.Connection | None = None
) -> zoneinfo.ZoneInfo:
    """The customer's time zone: from their traits, else (given `conn`) the newest
    context.timezone of their latest events, else `default_timezone`. A name that is not an
    IANA zone is passed over: a typo in a source must not stop the send."""
    traits = profile.get("traits") or {}
    named = (traits.get(name) for name in TIMEZONE_TRAITS)
    zone = _first_zone(named)
    if zone is None and conn is not None:
        zone = _first_zone(_event_timezones(conn, profile["profile_id"]))
    return zone if zone is not None else zoneinfo.ZoneInfo(settings.default_timezone)


def quiet_until(now: datetime, quiet_hours: str, zone: zoneinfo.ZoneInfo) -> datetime | None:
    """When quiet hours ('21:00-08:00', local to `zone`) end, if `now` falls inside them: the
    first moment after `now` at which the customer's clock reads a time outside them."""
    span = _quiet_span(quiet_hours)
    if span is None:
        return None
    moment = now.astimezone(UTC)
    # each turn runs the clock to the end or to a change of offset; a zone changes it at
    # most twice in the day or so quiet hours last, and a change may land inside them again
    for _ in range(4):
        if not _is_quiet(moment.astimezone(zone), span):
            break
        reach = _clock_reads_end(moment, span[1], zone)
        moment = _next_change(moment, reach, zone) or reach
    return moment.astimezone(zone) if moment > now else None


def over_cap(
    conn: psycopg.Connection, settings: Settings, profile_id: str, now: datetime
) -> str | None:
    """'cap_per_day' or 'cap_per_week' when the customer already got that many notifications
    in the rolling day or week before `now`; None when under both. Sends to the profiles
    merged into this one count: they went to the same person."""
    # two workers deciding sends to one customer take turns, so both cannot slip under a cap
    conn.execute("SELECT pg_advisory_xact_lock(hashtext('c360:notify:cap:' || %s))", (profile_id,))
    row = conn.execute(
        "SELECT count(*) FILTER (WHERE enqueued_at > %(day)s), count(*) FROM notify.sends"
        " WHERE profile_id IN (SELECT profile_id FROM profiles WHERE profile_id = %(profile)s"
        " OR merged_into = %(profile)s) AND enqueued_at > %(week)s AND enqueued_at <= %(now)s",
        {
            "profile": profile_id,
            "day": now - timedelta(days=1),
            "week": now - timedelta(days=7),
            "now": now,
        },
    ).fetchone()
    day, week = (row[0], row[1]) if row else (0, 0)
    if day >= settings.notify_cap_per_day:
        return "cap_per_day"
    if week >= settings.notify_cap_per_week:
        return "cap_per_week"
    return None


def take_throttle(valkey: redis.Redis, per_minute: int, now: datetime) -> bool:
    """Take one of this minute's places under the global throttle; False when none is left."""
    key = _RATE_KEY.format(minute=int(now.timestamp()) // 60)
    with valkey.pipeline() as pipe:
        pipe.incr(key)
        pipe.expire(key, 120)
        taken, _ = pipe.execute()
    return int(taken) <= per_minute


def _next_minute(now: datetime) -> datetime:
    return now.replace(second=0, microsecond=0) + timedelta(minutes=1)


def _first_zone(names: Any) -> zoneinfo.ZoneInfo | None:
    for value in names:
        if isinstance(value, str) and value.strip():
            try:
                return zoneinfo.ZoneInfo(value.strip())
            except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
                continue  # not a zone (a typo, a path): the next source, else the default
    return None


def _event_timezones(conn: psycopg.Connection, profile_id: str) -> list[str]:
    """The context.timezone of the customer's latest events, newest first (merged profiles'
    events are theirs: F3 moves them to the surviving profile)."""
    rows = conn.execute(
        "SELECT zone FROM (SELECT payload->'context'->>'timezone' AS zone, event_time,"
        " received_at FROM events WHERE profile_id = %s"
        " ORDER BY event_time DESC, received_at DESC LIMIT %s) recent"
        " WHERE zone IS NOT NULL ORDER BY event_time DESC, received_at DESC",
        (profile_id, RECENT_EVENTS_FOR_TIMEZONE),
    ).fetchall()
    return [row[0] for row in rows]


def _quiet_span(quiet_hours: str) -> tuple[time, time] | None:
    if not quiet_hours:
        return None
    start, end = (time.fromisoformat(part) for part in quiet_hours.split("-"))
    return None if start == end else (start, end)


def _is_quiet(local: datetime, span: tuple[time, time]) -> bool:
    start, end = span
    clock = local.time().replace(tzinfo=None)
    if start < end:
        return start <= clock < end
    return clock >= start or clock < end  # the span crosses midnight


def _clock_reads_end(moment: datetime, end: time, zone: zoneinfo.ZoneInfo) -> datetime:
    """When the clock next reads `end` if its offset stays as it is at `moment`."""
    wall = _wall(moment, zone)
    day = wall.date() if wall.time() < end else wall.date() + timedelta(days=1)
    return moment + (datetime.combine(day, end) - wall)


def _next_change(start: datetime, stop: datetime, zone: zoneinfo.ZoneInfo) -> datetime | None:
    """The first second after `start` at which `zone` changes its offset (clocks jump), if
    it does by `stop`."""
    offset = start.astimezone(zone).utcoffset()
    if stop.astimezone(zone).utcoffset() == offset:
        return None
    low, high = int(start.timestamp()), math.ceil(stop.timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, zone).utcoffset() == offset:
            low = middle
        else:
            high = middle
    return datetime.fromtimestamp(high, UTC)


def _wall(moment: datetime, zone: zoneinfo.ZoneInfo) -> datetime:
    return moment.astimezone(zone).replace(tzinfo=None)
