"""Whether and when a due notification goes out: consent for its purpose (public.consent),
the customer's word on the channel (notify.preferences), quiet hours in the customer's time
zone (held until they end, not dropped), frequency caps per customer per rolling day and week
(over a cap: suppressed), and a global throttle per minute kept in Valkey (over it: held until
the next minute).

Reads public.consent, notify.preferences and notify.sends; counts in Valkey. Called by the
scheduler inside the transaction that holds the send.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any, Literal

import psycopg
import redis

from c360.notifications import preferences
from c360.settings import Settings

#: Traits a profile may give its IANA time zone in (Segment puts it in context.timezone,
#: which sources often copy into traits under one of these names).
TIMEZONE_TRAITS = ("timezone", "timeZone", "time_zone", "tz")
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
    quiet_end = quiet_until(now, settings.quiet_hours, timezone_of(profile, settings))
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


def timezone_of(profile: dict[str, Any], settings: Settings) -> zoneinfo.ZoneInfo:
    """The customer's time zone from their traits, else `default_timezone`."""
    traits = profile.get("traits") or {}
    for name in TIMEZONE_TRAITS:
        value = traits.get(name)
        if isinstance(value, str) and value.strip():
            try:
                return zoneinfo.ZoneInfo(value.strip())
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                continue  # a typo in a trait must not stop the send; the default applies
    return zoneinfo.ZoneInfo(settings.default_timezone)


def quiet_until(now: datetime, quiet_hours: str, zone: zoneinfo.ZoneInfo) -> datetime | None:
    """When quiet hours ('21:00-08:00', local to `zone`) end, if `now` falls inside them."""
    if not quiet_hours:
        return None
    start, end = (time.fromisoformat(part) for part in quiet_hours.split("-"))
    local = now.astimezone(zone)
    clock = local.time().replace(tzinfo=None)
    if start == end:
        return None
    if start < end:
        inside, end_day = start <= clock < end, local.date()
    elif clock >= start:  # the span crosses midnight: the evening half
        inside, end_day = True, local.date() + timedelta(days=1)
    else:  # the morning half
        inside, end_day = clock < end, local.date()
    if not inside:
        return None
    return datetime.combine(end_day, end, tzinfo=zone)


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
