"""The enriched event that flows through c360, in Segment's field names.

The seed's names map onto Segment's: event_type -> `type` (and `event` for track), user_id ->
`userId`, device_id -> `anonymousId` (and `context.device.id`), session_id ->
`context.sessionId`, event_properties -> `properties` or `traits`, timestamp -> `timestamp`.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import msgspec

EVENT_TYPES = ("track", "identify", "page", "screen", "group", "alias")

#: Segment's limits: an event over 32 KB or a batch over 500 KB is refused.
MAX_EVENT_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024


class Event(msgspec.Struct, kw_only=True, omit_defaults=True, rename="camel"):
    """One accepted, enriched event. Encodes to Segment-shaped JSON."""

    message_id: str
    type: str
    source: str
    customer_key: str
    received_at: datetime
    timestamp: datetime
    user_id: str | None = None
    anonymous_id: str | None = None
    event: str | None = None
    name: str | None = None
    previous_id: str | None = None
    group_id: str | None = None
    original_timestamp: datetime | None = None
    sent_at: datetime | None = None
    properties: dict[str, Any] = {}
    traits: dict[str, Any] = {}
    context: dict[str, Any] = {}
    integrations: dict[str, Any] = {}
    warnings: list[str] = []

    @property
    def key(self) -> tuple[str, str]:
        """The event's identity: a messageId is unique within its source."""
        return (self.source, self.message_id)


class Rejection(msgspec.Struct, kw_only=True, rename="camel"):
    """An event that F1 refused, bound for the dead-letter topic with its raw bytes."""

    reason: str
    code: str
    source: str
    received_at: datetime
    payload: str
    message_id: str | None = None


_ENCODER = msgspec.json.Encoder(decimal_format="number")
_EVENT_DECODER = msgspec.json.Decoder(Event, float_hook=Decimal)
_ANY_DECODER = msgspec.json.Decoder(float_hook=Decimal)


def encode(value: Any) -> bytes:
    """JSON bytes for an event, rejection or plain value; decimals stay JSON numbers."""
    return _ENCODER.encode(value)


def decode_event(data: bytes | str) -> Event:
    """An Event from its JSON; JSON numbers with a fraction come back as Decimal."""
    return _EVENT_DECODER.decode(data)


def decode_any(data: bytes | str) -> Any:
    """Plain JSON values, with fractional numbers as Decimal so money stays exact."""
    return _ANY_DECODER.decode(data)


def first_copies(events: list[Event]) -> list[Event]:
    """Events without repeats of a (source, messageId): the first copy wins."""
    seen: set[tuple[str, str]] = set()
    kept = []
    for event in events:
        if event.key not in seen:
            seen.add(event.key)
            kept.append(event)
    return kept
