"""F1: validate and enrich events. One plain function, called inline by the gateway (so a client
learns at once what was rejected) and by the F1 actor for events from connectors.

`parse_request` splits an HTTP body into raw events; `validate_and_enrich` turns one raw event
into an `Event` or a `Rejection` bound for the dead-letter topic.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import msgspec
import pluggy

from c360.errors import InputError, PayloadTooLarge
from c360.events import text
from c360.events.identifiers import is_placeholder, normalise_id
from c360.events.model import (
    EVENT_TYPES,
    MAX_BATCH_BYTES,
    MAX_EVENT_BYTES,
    Event,
    Rejection,
    decode_any,
    encode,
)
from c360.events.money import order_value
from c360.events.timestamps import event_time
from c360.settings import Settings

log = logging.getLogger(__name__)

_OBJECT_FIELDS = ("properties", "traits", "context", "integrations")


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


class _BatchEnvelope(msgspec.Struct):
    batch: list[msgspec.Raw]
    writeKey: Any = None
    sentAt: Any = None
    context: Any = None
    integrations: Any = None


class _SingleEnvelope(msgspec.Struct):
    writeKey: Any = None


def parse_request(body: bytes, endpoint_type: str | None) -> ParsedRequest:
    """Split a Segment request body (`/v1/batch` when `endpoint_type` is None) into events."""
    if len(body) > MAX_BATCH_BYTES:
        raise PayloadTooLarge(
            "batch_too_large",
            f"the request is {len(body):,} bytes; a batch may be at most 500 KB "
            f"({MAX_BATCH_BYTES:,} bytes): send fewer events per request",
        )
    if endpoint_type is None:
        return _parse_batch(body)
    if len(body) > MAX_EVENT_BYTES:
        raise PayloadTooLarge(
            "event_too_large",
            f"the event is {len(body):,} bytes; an event may be at most 32 KB "
            f"({MAX_EVENT_BYTES:,} bytes): trim its properties or traits",
        )
    try:
        envelope = msgspec.json.decode(body, type=_SingleEnvelope)
        write_key = envelope.writeKey
    except msgspec.ValidationError as exc:
        raise InputError("invalid_json", f"the body must be a JSON object: {exc}") from exc
    except msgspec.DecodeError:
        loose = text.lenient_json(body)
        if not isinstance(loose, dict):
            raise InputError("invalid_json", "the body must be a JSON object") from None
        write_key = loose.get("writeKey")
    return ParsedRequest(events=[body], write_key=_text_or_none(write_key))


def validate_and_enrich(
    raw: bytes, ctx: IngestContext, settings: Settings, hooks: pluggy.HookRelay
) -> Event | Rejection:
    """One raw event in; an enriched Event or a Rejection (with the reason) out."""
    return _one(raw, ctx, settings, _enrichers(hooks), known_clean=False)


def ingest(
    parsed: ParsedRequest,
    ctx: IngestContext,
    settings: Settings,
    hooks: pluggy.HookRelay,
) -> IngestResult:
    """Run F1 over every event of a parsed request."""
    result = IngestResult()
    enrichers = _enrichers(hooks)
    for raw in parsed.events:
        outcome = _one(raw, ctx, settings, enrichers, parsed.known_clean)
        if isinstance(outcome, Event):
            result.accepted.append(outcome)
        else:
            result.rejected.append(outcome)
    return result


def _one(
    raw: bytes,
    ctx: IngestContext,
    settings: Settings,
    enrichers: list[pluggy.HookImpl],
    known_clean: bool,
) -> Event | Rejection:
    try:
        event = _validate(raw, ctx, settings, known_clean)
    except InputError as exc:
        return _reject(raw, ctx, exc.code, exc.message)
    _enrich(event, ctx.client_ip, settings, enrichers)
    return event


def _enrichers(hooks: pluggy.HookRelay) -> list[pluggy.HookImpl]:
    """Enricher implementations in pluggy's calling order (wrappers are not run here)."""
    impls = reversed(hooks.c360_enrich_event.get_hookimpls())
    return [impl for impl in impls if not (impl.hookwrapper or impl.wrapper)]


def _parse_batch(body: bytes) -> ParsedRequest:
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
        write_key=_text_or_none(write_key),
        sent_at=sent_at,
        context=context if isinstance(context, dict) else {},
        integrations=integrations if isinstance(integrations, dict) else {},
        known_clean=known_clean,
    )


def _validate(raw: bytes, ctx: IngestContext, settings: Settings, known_clean: bool) -> Event:
    if len(raw) > MAX_EVENT_BYTES:
        raise InputError(
            "event_too_large",
            f"the event is {len(raw):,} bytes; an event may be at most 32 KB "
            f"({MAX_EVENT_BYTES:,} bytes): trim its properties or traits",
        )
    data = _decode(raw, known_clean)
    event_type = _event_type(data, ctx.endpoint_type)
    user_id = _id_field(data, "userId")
    anonymous_id = _id_field(data, "anonymousId")
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
        event=normalise_id(data.get("event")),
        name=_text_or_none(data.get("name")),
        previous_id=normalise_id(data.get("previousId")),
        group_id=normalise_id(data.get("groupId")),
        properties=properties,
        traits=objects["traits"],
        context=context,
        integrations=integrations,
        warnings=warnings,
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
    return normalised


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
        return str(value).strip()[:200]
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
    raise InputError(f"missing_{needs}", f"a {event_type} event needs a non-empty `{needs}`")


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
            message_id = data["messageId"][:200]
    except msgspec.DecodeError:
        pass
    return Rejection(
        reason=reason,
        code=code,
        source=ctx.source,
        received_at=ctx.received_at,
        payload=raw.decode("utf-8", errors="replace"),
        message_id=message_id,
    )


def _text_or_none(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return text.clean_text(value.strip())
    return None
