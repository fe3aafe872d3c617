"""F1: validate and enrich events. One plain function, called inline by the gateway (so a client
learns at once what was rejected) and by the F1 actor for events from connectors.

`parse_request` splits an HTTP body into raw events; `validate_and_enrich` turns one raw event
into an `Event` or a `Rejection` bound for the dead-letter topic. An optional `EventCheck` (the
source's tracking plans, see `c360.governance.tracking_plans`) runs after validation: it may
add a warning to the event or send it to the dead-letter topic.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

import msgspec
import pluggy

from c360.errors import InputError, PayloadTooLarge
from c360.events import text
from c360.events.identifiers import MAX_ID_CHARS, is_placeholder, normalise_id
from c360.events.model import (
    EVENT_TYPES,
    MAX_BATCH_BYTES,
    MAX_DEPTH,
    MAX_EVENT_BYTES,
    MAX_EVENT_NAME_CHARS,
    MAX_MESSAGE_ID_CHARS,
    Event,
    Rejection,
    decode_any,
    deep_spans,
    encode,
    too_deep,
)
from c360.events.money import order_value
from c360.events.timestamps import event_time
from c360.governance.consent import unreadable_choices
from c360.settings import Settings

log = logging.getLogger(__name__)

_OBJECT_FIELDS = ("properties", "traits", "context", "integrations")

#: Fields that hold an id, each checked against MAX_ID_CHARS: ids end up in btree keys.
_ID_FIELDS = ("userId", "anonymousId", "previousId", "groupId")

#: Longest source name: it is the other half of the events table's primary key.
_MAX_SOURCE_CHARS = 200

#: Nesting level at which a batch's events open: the body object, then the `batch` array.
_EVENT_LEVEL = 2


@dataclass(frozen=True, slots=True)
class ParsedRequest:
    """An HTTP body split into its raw events and the batch-level fields."""

    events: list[bytes]
    write_key: str | None = None
    sent_at: Any = None
    context: dict[str, Any] = field(default_factory=dict)
    integrations: dict[str, Any] = field(default_factory=dict)
    #: True when the whole body is known to hold only valid NFC text, so events skip the check
    known_clean: bool = False


@dataclass(frozen=True, slots=True)
class IngestContext:
    """What F1 knows about where a batch came from."""

    source: str
    received_at: datetime
    client_ip: str | None = None
    endpoint_type: str | None = None
    batch_sent_at: Any = None
    batch_context: dict[str, Any] = field(default_factory=dict)
    batch_integrations: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class IngestResult:
    """Accepted events and rejections of one batch, in the order they came."""

    accepted: list[Event] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    #: Position in the request of each accepted event, so a client can match warnings to it
    accepted_at: list[int] = field(default_factory=list)
    #: Position in the request of each rejected event (one without a messageId has no other name)
    rejected_at: list[int] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a check says of a valid event: `flag` keeps it with `message` as a warning, `dlq`
    rejects it to the dead-letter topic with `code` and `message`."""

    action: Literal["flag", "dlq"]
    code: str
    message: str


class EventCheck(Protocol):
    """A check run on each event that passed validation; None when the event is fine."""

    def __call__(self, event: Event) -> Verdict | None:
        """The verdict on one event."""


class _BatchEnvelope(msgspec.Struct):
    batch: list[msgspec.Raw]
    writeKey: Any = None
    sentAt: Any = None
    context: Any = None
    integrations: Any = None


class _SingleEnvelope(msgspec.Struct):
    writeKey: Any = None
    batch: Any = msgspec.UNSET


def parse_request(body: bytes, endpoint_type: str | None) -> ParsedRequest:
    """Split a Segment request body (`/v1/batch` when `endpoint_type` is None) into events."""
    if endpoint_type is None:
        _check_size(body, MAX_BATCH_BYTES, "batch_too_large", _BATCH_TOO_LARGE)
        return _parse_batch(body)
    return _parse_single(body)


def _parse_single(body: bytes) -> ParsedRequest:
    """A single-event body: one event, whose writeKey may authenticate the request."""
    _check_size(body, MAX_EVENT_BYTES, "event_too_large", _EVENT_TOO_LARGE)
    if too_deep(body):
        raise _too_deep_error()
    try:
        envelope = msgspec.json.decode(body, type=_SingleEnvelope)
        write_key, batch = envelope.writeKey, envelope.batch
    except msgspec.ValidationError as exc:
        raise InputError("invalid_json", f"the body must be a JSON object: {exc}") from exc
    except msgspec.DecodeError:
        loose = text.lenient_json(body)
        if not isinstance(loose, dict):
            raise InputError("invalid_json", "the body must be a JSON object") from None
        write_key, batch = loose.get("writeKey"), loose.get("batch", msgspec.UNSET)
    if batch is not msgspec.UNSET:
        raise InputError(
            "unexpected_batch",
            "this endpoint takes one event, but the body has a `batch` of events: "
            "did you mean /v1/batch?",
        )
    return ParsedRequest(events=[body], write_key=_write_key(write_key))


#: What an oversized batch or event is told, with what to do about it.
_BATCH_TOO_LARGE = (
    "the request is {size:,} bytes; a batch may be at most 500 KB ({limit:,} bytes): "
    "send fewer events per request"
)
_EVENT_TOO_LARGE = (
    "the event is {size:,} bytes; an event may be at most 32 KB ({limit:,} bytes): "
    "trim its properties or traits"
)


def _check_size(body: bytes, limit: int, code: str, message: str) -> None:
    if len(body) > limit:
        raise PayloadTooLarge(code, message.format(size=len(body), limit=limit))


def _too_deep_error() -> InputError:
    return InputError(
        "too_deeply_nested",
        f"the event nests objects or arrays more than {MAX_DEPTH} levels deep: "
        "flatten its properties, traits or context",
    )


def validate_and_enrich(
    raw: bytes,
    ctx: IngestContext,
    settings: Settings,
    hooks: pluggy.HookRelay,
    check: EventCheck | None = None,
) -> Event | Rejection:
    """One raw event in; an enriched Event or a Rejection (with the reason) out."""
    return _one(raw, ctx, settings, _enrichers(hooks), known_clean=False, check=check)


def ingest(
    parsed: ParsedRequest,
    ctx: IngestContext,
    settings: Settings,
    hooks: pluggy.HookRelay,
    check: EventCheck | None = None,
) -> IngestResult:
    """Run F1 over every event of a parsed request; `check` (if any) runs on each valid one."""
    result = IngestResult()
    enrichers = _enrichers(hooks)
    for index, raw in enumerate(parsed.events):
        outcome = _one(raw, ctx, settings, enrichers, parsed.known_clean, check)
        if isinstance(outcome, Event):
            result.accepted.append(outcome)
            result.accepted_at.append(index)
        else:
            result.rejected.append(outcome)
            result.rejected_at.append(index)
    return result


def _one(
    raw: bytes,
    ctx: IngestContext,
    settings: Settings,
    enrichers: list[pluggy.HookImpl],
    known_clean: bool,
    check: EventCheck | None = None,
) -> Event | Rejection:
    try:
        event = _validate(raw, ctx, settings, known_clean)
    except InputError as exc:
        return _reject(raw, ctx, exc.code, exc.message)
    # checked as the client sent it, before enrichers add their facts
    verdict = check(event) if check is not None else None
    if verdict is not None:
        if verdict.action == "dlq":
            return _reject(raw, ctx, verdict.code, verdict.message)
        event.warnings.append(verdict.message)
    _enrich(event, ctx.client_ip, settings, enrichers)
    return event


def _enrichers(hooks: pluggy.HookRelay) -> list[pluggy.HookImpl]:
    """Enricher implementations in pluggy's calling order (wrappers are not run here)."""
    impls = reversed(hooks.c360_enrich_event.get_hookimpls())
    return [impl for impl in impls if not (impl.hookwrapper or impl.wrapper)]


def _parse_batch(body: bytes) -> ParsedRequest:
    try:
        return _split_batch(body)
    except RecursionError:
        # an event nests deeper than the decoders can recurse: set it aside, parse the rest
        return _split_batch_setting_aside(body)


def _split_batch_setting_aside(body: bytes) -> ParsedRequest:
    """Parse a batch with every too deeply nested value swapped for a marker string, then put
    each event's own bytes back, so F1 rejects that event alone and the rest go on."""
    tag = uuid.uuid4().hex
    set_aside: dict[bytes, bytes] = {}
    pieces, last = [], 0
    for n, (start, end) in enumerate(deep_spans(body, _EVENT_LEVEL)):
        marker = f'"c360-set-aside-{tag}-{n}"'.encode()
        set_aside[marker] = body[start:end]
        pieces += [body[last:start], marker]
        last = end
    pieces.append(body[last:])
    try:
        parsed = _split_batch(b"".join(pieces))
    except RecursionError:
        raise _too_deep_error() from None
    events = [set_aside.pop(raw, raw) for raw in parsed.events]
    if set_aside:  # a marker outside the events: a batch-level field itself nests too deep
        raise _too_deep_error()
    return dataclasses.replace(parsed, events=events)


def _split_batch(body: bytes) -> ParsedRequest:
    try:
        envelope = msgspec.json.decode(body, type=_BatchEnvelope)
        raws = [bytes(item) for item in envelope.batch]
        # one check of the whole body spares a check per event (the common case: clean text)
        known_clean = not text.needs_cleaning(body)
        batch_fields = envelope.writeKey, envelope.sentAt, envelope.context, envelope.integrations
        if not known_clean:
            batch_fields = tuple(text.clean(value) for value in batch_fields)
    except msgspec.ValidationError as exc:
        raise InputError(
            "invalid_batch", f"a batch body is an object with a `batch` array of events: {exc}"
        ) from exc
    except msgspec.DecodeError:
        loose = text.lenient_json(body)
        if not isinstance(loose, dict) or not isinstance(loose.get("batch"), list):
            raise InputError(
                "invalid_batch", "a batch body is an object with a `batch` array of events"
            ) from None
        raws = [encode(item) for item in loose["batch"]]
        known_clean = True  # lenient_json cleaned every string already
        batch_fields = (
            loose.get("writeKey"),
            loose.get("sentAt"),
            loose.get("context"),
            loose.get("integrations"),
        )
    write_key, sent_at, context, integrations = batch_fields
    return ParsedRequest(
        events=raws,
        write_key=_write_key(write_key),
        sent_at=sent_at,
        context=context if isinstance(context, dict) else {},
        integrations=integrations if isinstance(integrations, dict) else {},
        known_clean=known_clean,
    )


def _validate(raw: bytes, ctx: IngestContext, settings: Settings, known_clean: bool) -> Event:
    if len(raw) > MAX_EVENT_BYTES:
        raise InputError(
            "event_too_large", _EVENT_TOO_LARGE.format(size=len(raw), limit=MAX_EVENT_BYTES)
        )
    if too_deep(raw):
        raise _too_deep_error()
    data = _decode(raw, known_clean)
    event_type = _event_type(data, ctx.endpoint_type)
    user_id, anonymous_id, previous_id, group_id = (_id_field(data, n) for n in _ID_FIELDS)
    _capped("source", ctx.source, _MAX_SOURCE_CHARS, "rename the source in the write_keys setting")
    customer_key = _customer_key(user_id, anonymous_id, settings)
    objects = {name: _object_field(data, name) for name in _OBJECT_FIELDS}
    context = {**ctx.batch_context, **objects["context"]}
    integrations = {**ctx.batch_integrations, **objects["integrations"]}
    warnings: list[str] = []
    message_id = _message_id(data, warnings)
    _required_for_type(data, event_type)

    when = event_time(
        data.get("timestamp") or data.get("originalTimestamp"),
        data.get("sentAt") or ctx.batch_sent_at,
        ctx.received_at,
        earliest=settings.earliest_event_time,
        max_future=timedelta(seconds=settings.max_future_skew_s),
    )
    warnings.extend(when.warnings)
    properties = objects["properties"]
    if event_type == "track":
        _amount, money_warning = order_value(properties)
        if money_warning:
            warnings.append(money_warning)
    consent = context.get("consent")
    if isinstance(consent, dict):
        warnings.extend(unreadable_choices(consent.get("categoryPreferences")))

    return Event(
        message_id=message_id,
        type=event_type,
        source=ctx.source,
        customer_key=customer_key,
        received_at=ctx.received_at,
        timestamp=when.timestamp,
        original_timestamp=when.original,
        sent_at=when.sent_at,
        user_id=user_id,
        anonymous_id=anonymous_id,
        event=_event_name(data),
        name=_text_or_none(data.get("name")),
        previous_id=previous_id,
        group_id=group_id,
        properties=properties,
        traits=objects["traits"],
        context=context,
        integrations=integrations,
        warnings=warnings,
        unreadable=when.unreadable,
    )


def _decode(raw: bytes, known_clean: bool) -> dict[str, Any]:
    try:
        data = decode_any(raw)
        if not known_clean and text.needs_cleaning(raw):
            data = text.clean(data)
    except msgspec.DecodeError:
        data = text.lenient_json(raw)
    if not isinstance(data, dict):
        raise InputError("not_an_object", "an event must be a JSON object")
    return data


def _event_type(data: dict[str, Any], endpoint_type: str | None) -> str:
    event_type = endpoint_type or data.get("type")
    if not isinstance(event_type, str) or event_type not in EVENT_TYPES:
        raise InputError(
            "invalid_type", f"`type` must be one of {', '.join(EVENT_TYPES)}; got {event_type!r}"
        )
    return event_type


def _id_field(data: dict[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    normalised = normalise_id(value)
    if normalised is None and not (isinstance(value, str) and not value.strip()):
        raise InputError(
            f"invalid_{name}",
            f"`{name}` must be a string or an integer; got {type(value).__name__}",
        )
    return _capped(name, normalised, MAX_ID_CHARS, f"send a shorter `{name}`")


def _event_name(data: dict[str, Any]) -> str | None:
    name = normalise_id(data.get("event"))
    return _capped("event", name, MAX_EVENT_NAME_CHARS, "name the event in fewer characters")


def _capped(name: str, value: str | None, limit: int, fix: str) -> str | None:
    """`value` unchanged, or an error when it is longer than `limit`: a longer id or name
    cannot be stored as a key, and cutting it could make two different values equal."""
    if value is not None and len(value) > limit:
        raise InputError(
            "value_too_long",
            f"`{name}` is {len(value):,} characters; at most {limit:,} are allowed: {fix}",
        )
    return value


def _customer_key(user_id: str | None, anonymous_id: str | None, settings: Settings) -> str:
    placeholders = settings.placeholder_set
    for value in (user_id, anonymous_id):
        if value and not is_placeholder(value, placeholders):
            return value
    raise InputError(
        "missing_identity",
        "an event needs a userId or an anonymousId; placeholder values such as "
        "'undefined', 'null', '0' or 'anonymous' do not count",
    )


def _object_field(data: dict[str, Any], name: str) -> dict[str, Any]:
    value = data.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InputError(
            f"invalid_{name}", f"`{name}` must be a JSON object; got {type(value).__name__}"
        )
    return value


def _message_id(data: dict[str, Any], warnings: list[str]) -> str:
    value = data.get("messageId")
    if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip():
        message_id = str(value).strip()
        _capped("messageId", message_id, MAX_MESSAGE_ID_CHARS, "send a shorter `messageId`")
        return message_id
    if value is not None:
        raise InputError("invalid_messageId", "`messageId` must be a non-empty string")
    warnings.append("messageId missing; one was generated, so a resend cannot be de-duplicated")
    return f"c360-{uuid.uuid4()}"


def _required_for_type(data: dict[str, Any], event_type: str) -> None:
    needs = {"track": "event", "alias": "previousId", "group": "groupId"}.get(event_type)
    if needs is None:
        return
    value = data.get(needs)
    if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip():
        return
    article = "an" if event_type[0] in "aeiou" else "a"
    raise InputError(
        f"missing_{needs}", f"{article} {event_type} event needs a non-empty `{needs}`"
    )


def _enrich(
    event: Event, client_ip: str | None, settings: Settings, enrichers: list[pluggy.HookImpl]
) -> None:
    """Run each enricher on its own: one that fails is logged and skipped, so a plugin bug
    costs an enrichment, never the event."""
    given = {"event": event, "client_ip": client_ip, "settings": settings}
    for impl in enrichers:
        try:
            impl.function(*(given[name] for name in impl.argnames))
        except Exception:  # any plugin bug: the event is still good without this enrichment
            log.exception(
                "Enricher %r failed on event %r; the event goes on without it.",
                impl.plugin_name,
                event.message_id,
            )
            event.warnings.append(f"enricher {impl.plugin_name!r} failed; its facts are missing")


def _reject(raw: bytes, ctx: IngestContext, code: str, reason: str) -> Rejection:
    message_id = None
    try:
        data = decode_any(raw)
        if isinstance(data, dict) and isinstance(data.get("messageId"), str):
            # only names the rejection in reports; the full value is in the payload
            message_id = data["messageId"][:MAX_MESSAGE_ID_CHARS]
    except (msgspec.DecodeError, RecursionError):  # unreadable events are named by position
        pass
    return Rejection(
        reason=reason,
        code=code,
        source=ctx.source,
        received_at=ctx.received_at,
        payload=raw.decode("utf-8", errors="replace"),
        message_id=message_id,
    )


def _write_key(value: Any) -> str | None:
    """The body's writeKey as text; any other JSON type is a client bug worth naming."""
    if value is None or isinstance(value, str):
        return _text_or_none(value)
    raise InputError(
        "invalid_writeKey",
        f"`writeKey` must be a string (the source's write key); got {type(value).__name__}",
    )


def _text_or_none(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return text.clean_text(value.strip())
    return None
