"""F2: persist each event's key facts and identifiers, idempotent on (source, messageId).

The first accepted copy of an event wins; a replay inserts nothing. Every event of the batch
(new or already stored) is passed on to `c360-id-resolution`, so a crash between the insert
and the publish loses nothing; F3 skips events it has already resolved.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from c360.adapters.bus import ID_RESOLUTION
from c360.events.model import Event, decode_any, decode_event, encode, first_copies
from c360.events.money import order_value
from c360.profiles import ORDER_EVENTS
from c360.runtime import Runtime

log = logging.getLogger(__name__)

#: The columns go as arrays in binary (%b): in text, psycopg escapes every quote of every JSON
#: payload in Python, which cost more than the insert itself.
_INSERT = """
INSERT INTO events (source, message_id, type, event, customer_key, user_id, anonymous_id,
                    event_time, received_at, revenue, identifiers, payload, warnings)
SELECT s, m, t, e, k, u, a, et, ra, r, i::jsonb, p::jsonb, w::jsonb
FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[],
            %b::text[], %b::timestamptz[], %b::timestamptz[], %b::numeric[], %b::text[],
            %b::text[], %b::text[])
     AS x(s, m, t, e, k, u, a, et, ra, r, i, p, w)
ON CONFLICT (source, message_id) DO NOTHING
"""


def persist(runtime: Runtime, payloads: Sequence[bytes]) -> int:
    """Store a batch of enriched events; returns how many were new."""
    events = first_copies([_storable(payload) for payload in payloads])
    columns = _columns(runtime, events)
    with runtime.pool.connection() as conn:
        inserted = conn.execute(_INSERT, columns).rowcount
    runtime.bus.publish(
        ID_RESOLUTION,
        [(event.customer_key, encode([event.source, event.message_id])) for event in events],
    )
    log.debug("Persisted %d new of %d events.", inserted, len(events))
    return inserted


def _storable(payload: bytes) -> Event:
    """The event, with U+0000 (which PostgreSQL text and jsonb refuse) replaced by U+FFFD."""
    if b"\\u0000" not in payload:  # JSON escapes every NUL, so this finds them all
        return decode_event(payload)
    return decode_event(encode(_without_nul(decode_any(payload))))


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_without_nul(key): _without_nul(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_nul(item) for item in value]
    return value


def _columns(runtime: Runtime, events: list[Event]) -> list[list]:
    hook = runtime.hooks.c360_event_identifiers
    columns: list[list] = [[] for _ in range(13)]
    for event in events:
        identifiers = [
            ident for found in hook(event=event, settings=runtime.settings) for ident in found
        ]
        revenue = None
        if event.type == "track" and (event.event or "").strip().lower() in ORDER_EVENTS:
            revenue, _warning = order_value(event.properties)
        row = (
            event.source,
            event.message_id,
            event.type,
            event.event,
            event.customer_key,
            event.user_id,
            event.anonymous_id,
            event.timestamp,
            event.received_at,
            revenue,
            encode(identifiers).decode(),
            encode(event).decode(),
            encode(event.warnings).decode(),
        )
        for column, value in zip(columns, row, strict=True):
            column.append(value)
    return columns
