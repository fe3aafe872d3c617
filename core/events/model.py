"""The enriched event that flows through c360, in Segment's field names.

The seed's names map onto Segment's: event_type -> `type` (and `event` for track), user_id ->
`userId`, device_id -> `anonymousId` (and `context.device.id`), session_id ->
`context.sessionId`, event_properties -> `properties` or `traits`, timestamp -> `timestamp`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any

import msgspec

EVENT_TYPES = ("track", "identify", "page", "screen", "group", "alias")

#: Segment's limits: an event over 32 KB or a batch over 500 KB is refused.
MAX_EVENT_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024

#: Deepest nesting of objects and arrays an event may have. Real events nest a few levels;
#: thousands of levels would exhaust the decoders' recursion (a 6 KB body can do it).
MAX_DEPTH = 64

#: Longest messageId: it is half of the events table's primary key, and a btree row is limited.
MAX_MESSAGE_ID_CHARS = 200

#: Longest `event` name: names are few and short; longer ones are a client bug.
MAX_EVENT_NAME_CHARS = 200

# A JSON string (escapes included) or one bracket: what a nesting scan needs to see.
_STRING_OR_BRACKET = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')


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
    #: Fields that could not be read, kept as sent so nothing is lost (e.g. a `timestamp` of
    #: "yesterday", which F1 replaced by receivedAt).
    unreadable: dict[str, Any] = {}

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


def too_deep(raw: bytes) -> bool:
    """True when objects and arrays in JSON `raw` nest more than MAX_DEPTH levels."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_DEPTH:
        return False  # the common case: too few brackets to go that deep, no scan needed
    return next(deep_spans(raw, 0), None) is not None


def deep_spans(raw: bytes, outer: int) -> Iterator[tuple[int, int]]:
    """(start, end) of each object or array opening at nesting level `outer` whose content
    nests more than MAX_DEPTH levels. Found by a scan, not recursion, so no input can exhaust
    the stack; brackets inside strings do not count. An unclosed value ends at the end."""
    depth, start, deepest = 0, -1, 0
    for match in _STRING_OR_BRACKET.finditer(raw):
        token = match.group()
        if token in (b"[", b"{"):
            depth += 1
            if depth == outer + 1:
                start, deepest = match.start(), depth
            deepest = max(deepest, depth)
        elif token in (b"]", b"}") and depth > 0:
            if depth == outer + 1 and deepest - outer > MAX_DEPTH:
                yield start, match.end()
            depth -= 1
    if depth > outer and start >= 0 and deepest - outer > MAX_DEPTH:
        yield start, len(raw)


def first_copies(events: list[Event]) -> list[Event]:
    """Events without repeats of a (source, messageId): the first copy wins."""
    seen: set[tuple[str, str]] = set()
    kept = []
    for event in events:
        if event.key not in seen:
            seen.add(event.key)
            kept.append(event)
    return kept
