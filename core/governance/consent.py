"""Consent per profile and purpose, from Segment's `context.consent.categoryPreferences`
(`{"Advertising": true, "Analytics": false}`), as F3 records it; and the reads the customer
page and the compliance report make.

Reads and writes `public.consent`. The event with the later order key (event time, then
receivedAt, then messageId: the rule traits follow) wins, whatever order events arrive in; a
merge folds the merged profile's consent into the survivor by the same rule.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from typing import Any

import psycopg
from psycopg.rows import dict_row

from c360.profiles import EventFact
from c360.runtime import Runtime

#: Longest purpose name kept; a longer one is not a category but a mistake.
MAX_PURPOSE = 100

#: Spellings of a choice besides JSON true / false: consent managers and form posts send
#: strings and 0 / 1, and a withdrawal written "false" must withdraw, not be dropped.
GRANTED_WORDS = ("true", "yes", "1", "granted", "opt-in", "optin")
DENIED_WORDS = ("false", "no", "0", "denied", "opt-out", "optout")


def choice_of(value: Any) -> bool | None:
    """A consent value as granted (True) or denied (False); None when it is no choice."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in GRANTED_WORDS:
            return True
        if word in DENIED_WORDS:
            return False
    return None


_NOT_AN_OBJECT = (
    "context.consent.categoryPreferences is not an object of purposes; no consent was read"
)


def unreadable_choices(preferences: Any) -> list[str]:
    """Warnings for the purposes in a categoryPreferences object whose value is no choice."""
    if preferences is None:
        return []
    if not isinstance(preferences, dict):
        return [_NOT_AN_OBJECT]
    return [
        f"consent for {purpose[:MAX_PURPOSE]!r} is {str(value)[:40]!r}, not true or false; "
        "that choice was not recorded"
        for purpose, value in preferences.items()
        if choice_of(value) is None
    ]


# On conflict only a later order key replaces the stored choice (text[] compares element by
# element, and each element is an ISO time or a messageId, so it sorts as the rule says).
_UPSERT = """
INSERT INTO consent (profile_id, purpose, granted, updated_at, order_key, source, message_id)
VALUES (%s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (profile_id, purpose) DO UPDATE SET
    granted = EXCLUDED.granted, updated_at = EXCLUDED.updated_at,
    order_key = EXCLUDED.order_key, source = EXCLUDED.source, message_id = EXCLUDED.message_id
WHERE consent.order_key < EXCLUDED.order_key
"""

_FOLD = """
INSERT INTO consent (profile_id, purpose, granted, updated_at, order_key, source, message_id)
SELECT %(surviving)s, purpose, granted, updated_at, order_key, source, message_id
FROM consent WHERE profile_id = %(merged)s
ON CONFLICT (profile_id, purpose) DO UPDATE SET
    granted = EXCLUDED.granted, updated_at = EXCLUDED.updated_at,
    order_key = EXCLUDED.order_key, source = EXCLUDED.source, message_id = EXCLUDED.message_id
WHERE consent.order_key < EXCLUDED.order_key
"""


# The order key as EventFact.order_key writes it: UTC times with microseconds, then messageId.
_ISO = """to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""
_PREFERENCES = "e.payload -> 'context' -> 'consent' -> 'categoryPreferences'"
# choice_of in SQL, for a jsonb value `{0}`: NULL when it is no choice. Nested CASEs, because
# PostgreSQL may evaluate both sides of an AND (a cast of a string to numeric would raise).
_GRANTED_SQL = ", ".join(f"'{word}'" for word in GRANTED_WORDS)
_DENIED_SQL = ", ".join(f"'{word}'" for word in DENIED_WORDS)
_CHOICE = (
    "(CASE jsonb_typeof({0}) WHEN 'boolean' THEN ({0})::boolean"
    " WHEN 'number' THEN CASE ({0})::numeric WHEN 1 THEN true WHEN 0 THEN false END"
    " WHEN 'string' THEN CASE"
    f" WHEN lower(btrim({{0}} #>> '{{{{}}}}')) IN ({_GRANTED_SQL}) THEN true"
    f" WHEN lower(btrim({{0}} #>> '{{{{}}}}')) IN ({_DENIED_SQL}) THEN false END"
    " END)"
)
_REBUILD = f"""
INSERT INTO consent (profile_id, purpose, granted, updated_at, order_key, source, message_id)
SELECT DISTINCT ON (e.profile_id, left(btrim(k.key), %(max)s))
    e.profile_id, left(btrim(k.key), %(max)s), {_CHOICE.format("k.value")}, e.event_time,
    ARRAY[{_ISO.format("e.event_time")}, {_ISO.format("e.received_at")}, e.message_id],
    e.source, e.message_id
FROM events e, jsonb_each(CASE WHEN jsonb_typeof({_PREFERENCES}) = 'object'
                               THEN {_PREFERENCES} ELSE '{{}}'::jsonb END) k
WHERE e.profile_id = ANY(%(ids)s) AND {_CHOICE.format("k.value")} IS NOT NULL
    AND btrim(k.key) <> ''
ORDER BY e.profile_id, left(btrim(k.key), %(max)s),
    e.event_time DESC, e.received_at DESC, e.message_id DESC
"""


def choices(
    facts: Iterable[EventFact], profile_of: Callable[[EventFact], Any]
) -> list[tuple[Any, ...]]:
    """The latest choice per (profile, purpose) among these facts, as `_UPSERT` rows;
    `profile_of` gives the live profile a fact now belongs to. Values that are no choice
    (see choice_of) are skipped."""
    latest: dict[tuple[Any, str], tuple[Any, ...]] = {}
    for fact in facts:
        for purpose, value in (fact.consent or {}).items():
            granted = choice_of(value)
            if granted is None or not purpose.strip():
                continue
            purpose = purpose.strip()[:MAX_PURPOSE]
            key = (profile_of(fact), purpose)
            row = (*key, granted, fact.event_time, fact.order_key, fact.source, fact.message_id)
            if key not in latest or list(latest[key][4]) < fact.order_key:
                latest[key] = row
    return [latest[key] for key in sorted(latest, key=lambda k: (str(k[0]), k[1]))]


def write_choices(cur: psycopg.Cursor, rows: list[tuple[Any, ...]]) -> None:
    """Store choices; a stored later choice is kept."""
    if rows:
        cur.executemany(_UPSERT, rows)


def fold(cur: psycopg.Cursor, merged: uuid.UUID, surviving: uuid.UUID) -> None:
    """Move a merged profile's consent to the profile it joined, the later choice winning."""
    cur.execute(_FOLD, {"merged": merged, "surviving": surviving})
    cur.execute("DELETE FROM consent WHERE profile_id = %s", (merged,))


def rebuild(cur: psycopg.Cursor, profile_ids: list[uuid.UUID]) -> None:
    """Recompute these profiles' consent from their stored events, by the same rule F3
    applies (for an unmerge, which gives events back to another profile)."""
    cur.execute("DELETE FROM consent WHERE profile_id = ANY(%s)", (profile_ids,))
    cur.execute(_REBUILD, {"ids": profile_ids, "max": MAX_PURPOSE})


def consent_for(runtime: Runtime, profile_id: str | uuid.UUID) -> list[dict[str, Any]]:
    """A profile's choices by purpose: granted, when, and which event said so."""
    with runtime.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT purpose, granted, updated_at, source, message_id FROM consent"
            " WHERE profile_id = %s ORDER BY purpose",
            (str(profile_id),),
        ).fetchall()


def coverage(runtime: Runtime) -> list[dict[str, Any]]:
    """Per purpose ever seen: live profiles that granted it, denied it, and never said."""
    with runtime.pool.connection() as conn:
        return coverage_in(conn)


def coverage_in(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """`coverage` on a connection the caller holds."""
    with conn.cursor(row_factory=dict_row) as cur:
        live = cur.execute(
            "SELECT count(*) AS n FROM profiles WHERE merged_into IS NULL"
        ).fetchone()
        rows = cur.execute(
            "SELECT c.purpose, count(*) FILTER (WHERE c.granted) AS granted,"
            " count(*) FILTER (WHERE NOT c.granted) AS denied FROM consent c"
            " JOIN profiles p ON p.profile_id = c.profile_id AND p.merged_into IS NULL"
            " GROUP BY c.purpose ORDER BY c.purpose"
        ).fetchall()
    total = live["n"] if live else 0
    return [
        {**row, "unknown": total - row["granted"] - row["denied"], "profiles": total}
        for row in rows
    ]
