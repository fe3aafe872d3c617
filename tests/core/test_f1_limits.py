"""F1 limits: over-long ids and names, too deep nesting, unreadable times kept as sent."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from c360.events.f1 import IngestContext, ParsedRequest, ingest, parse_request
from c360.events.model import Event, Rejection
from c360.plugins_manager import default_manager
from c360.settings import Settings, load_settings

RECEIVED = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_settings({}, environ={})


def run(settings: Settings, *events: dict | bytes, endpoint: str | None = None) -> list:
    raws = [e if isinstance(e, bytes) else json.dumps(e).encode() for e in events]
    ctx = IngestContext(source="web", received_at=RECEIVED, endpoint_type=endpoint)
    result = ingest(ParsedRequest(events=raws), ctx, settings, default_manager().hook)
    outcomes: list[Event | Rejection] = [None] * len(raws)  # type: ignore[list-item]
    for index, outcome in zip(result.accepted_at, result.accepted, strict=True):
        outcomes[index] = outcome
    for index, outcome in zip(result.rejected_at, result.rejected, strict=True):
        outcomes[index] = outcome
    return outcomes


def track(**fields: object) -> dict:
    return {"type": "track", "userId": "u-1", "event": "Viewed", **fields}


@pytest.mark.parametrize("field", ["userId", "anonymousId", "previousId", "groupId"])
def test_an_id_over_256_characters_is_rejected_naming_the_field(settings, field):
    (outcome,) = run(settings, track(**{field: "x" * 257}))

    assert isinstance(outcome, Rejection)
    assert outcome.code == "value_too_long"
    assert f"`{field}` is 257 characters; at most 256" in outcome.reason


def test_an_id_of_exactly_256_characters_is_accepted(settings):
    (outcome,) = run(settings, track(userId="é" * 256))

    assert isinstance(outcome, Event)
    assert outcome.user_id == "é" * 256


def test_a_message_id_over_200_characters_is_rejected_not_cut(settings):
    shared = "m" * 200
    first, second, exact = run(
        settings,
        track(messageId=shared + "a"),
        track(messageId=shared + "b"),
        track(messageId=shared),
    )

    assert isinstance(first, Rejection) and isinstance(second, Rejection)
    assert first.code == second.code == "value_too_long"
    assert "`messageId` is 201 characters; at most 200" in first.reason
    assert isinstance(exact, Event) and exact.message_id == shared


def test_an_event_name_over_200_characters_is_rejected(settings):
    (outcome,) = run(settings, track(event="E" * 201))

    assert isinstance(outcome, Rejection)
    assert "`event` is 201 characters; at most 200" in outcome.reason


def test_an_over_long_source_name_is_rejected_saying_where_to_rename_it(settings):
    ctx = IngestContext(source="s" * 201, received_at=RECEIVED)
    parsed = ParsedRequest(events=[json.dumps(track()).encode()])

    (outcome,) = ingest(parsed, ctx, settings, default_manager().hook).rejected

    assert outcome.code == "value_too_long" and "write_keys" in outcome.reason


def nested(levels: int) -> dict:
    """A track event whose properties nest `levels` levels below the event object itself."""
    body = "[" * (levels - 2) + "]" * (levels - 2)
    return json.loads(
        '{"type": "track", "userId": "u", "event": "E", "properties": {"a": ' + body + "}}"
    )


def test_an_event_nested_64_levels_is_accepted_and_65_rejected(settings):
    ok, deep = run(settings, nested(64), nested(65))

    assert isinstance(ok, Event)
    assert isinstance(deep, Rejection) and deep.code == "too_deeply_nested"
    assert "64 levels" in deep.reason


def test_brackets_inside_strings_do_not_count_as_nesting(settings):
    (outcome,) = run(settings, track(properties={"note": "[" * 5000}))

    assert isinstance(outcome, Event)


@pytest.mark.parametrize("levels", [1_000, 10_000])
def test_a_thousands_deep_event_in_a_batch_is_rejected_alone(settings, levels):
    deep = b'{"type": "track", "userId": "u", "event": "E", "properties": ' + b"[" * levels
    deep += b"]" * levels + b"}"
    body = b'{"batch": [' + json.dumps(track(messageId="ok")).encode() + b"," + deep + b"]}"

    parsed = parse_request(body, None)
    first, second = run(settings, *parsed.events)

    assert isinstance(first, Event) and first.message_id == "ok"
    assert isinstance(second, Rejection) and second.code == "too_deeply_nested"
    assert second.payload.encode() == deep


def test_a_deep_event_in_a_batch_with_invalid_utf8_is_rejected_alone(settings):
    deep = b'{"type": "track", "userId": "u", "event": "E", "x": ' + b"[" * 3000 + b"]" * 3000
    body = b'{"batch": [{"type": "track", "userId": "u-\xff", "event": "E"}, ' + deep + b"}]}"

    first, second = run(settings, *parse_request(body, None).events)

    assert isinstance(first, Event) and first.user_id == "u-\ufffd"
    assert isinstance(second, Rejection) and second.code == "too_deeply_nested"


def test_a_batch_whose_own_context_nests_too_deep_gets_400(settings):
    from c360.errors import InputError

    body = b'{"context": {"a": ' + b"[" * 3000 + b"]" * 3000 + b'}, "batch": []}'

    with pytest.raises(InputError) as caught:
        parse_request(body, None)

    assert caught.value.code == "too_deeply_nested"


def test_a_deep_single_event_gets_400_too_deeply_nested(settings):
    from c360.errors import InputError

    body = b'{"userId": "u", "event": "E", "p": ' + b"[" * 3000 + b"]" * 3000 + b"}"

    with pytest.raises(InputError) as caught:
        parse_request(body, "track")

    assert caught.value.code == "too_deeply_nested"


def test_a_single_event_body_over_500_kb_says_event_too_large_32_kb():
    from c360.errors import PayloadTooLarge

    with pytest.raises(PayloadTooLarge) as caught:
        parse_request(b'{"p": "' + b"x" * 600_000 + b'"}', "track")

    assert caught.value.code == "event_too_large" and "32 KB" in caught.value.message


def test_a_batch_body_on_a_single_endpoint_hints_at_v1_batch():
    from c360.errors import InputError

    with pytest.raises(InputError) as caught:
        parse_request(json.dumps({"batch": [track()]}).encode(), "track")

    assert "did you mean /v1/batch?" in caught.value.message


def test_an_alias_without_previous_id_says_an_alias(settings):
    (outcome,) = run(settings, {"type": "alias", "userId": "u"})

    assert outcome.reason == "an alias event needs a non-empty `previousId`"


def test_an_unreadable_timestamp_is_kept_as_sent_and_shown_in_the_warning(settings):
    raw = "yesterday at " + "9" * 200
    (event,) = run(settings, track(timestamp=raw, sentAt="soon"))

    assert event.timestamp == RECEIVED
    assert event.unreadable == {"timestamp": raw, "sentAt": "soon"}
    (warning,) = [w for w in event.warnings if w.startswith("timestamp")]
    assert warning.startswith("timestamp " + repr(raw)[:100] + "...")
    assert "sentAt 'soon' is not an ISO 8601 time" in " ".join(event.warnings)


def test_a_time_two_hours_ahead_is_implausible_by_default(settings):
    ahead = "2026-03-04T07:06:07Z"  # RECEIVED + 2 h, beyond the 1 h default

    (event,) = run(settings, track(timestamp=ahead))

    assert settings.max_future_skew_s == 3600
    assert event.timestamp == RECEIVED
    assert "timestamp is implausible; receivedAt used" in event.warnings
