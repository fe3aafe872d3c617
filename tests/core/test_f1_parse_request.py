"""F1's request parsing: a Segment HTTP body split into raw events and batch-level fields."""

from __future__ import annotations

import json

import pytest

from c360.errors import InputError, PayloadTooLarge
from c360.events.f1 import parse_request

# Segment's limits, written out here rather than read from the code under test.
EVENT_LIMIT = 32 * 1024
BATCH_LIMIT = 500 * 1024


def _event(**fields: object) -> dict[str, object]:
    return {"type": "track", "event": "Viewed", "userId": "u-1", **fields}


def _body(value: object) -> bytes:
    return json.dumps(value).encode()


def _padded_event(size: int) -> bytes:
    """A single-event body of exactly `size` bytes."""
    empty = _body(_event(properties={"pad": ""}))
    padded = _body(_event(properties={"pad": "x" * (size - len(empty))}))
    assert len(padded) == size
    return padded


def _padded_batch(size: int) -> bytes:
    """A batch body of exactly `size` bytes, every event well under the event limit."""
    events = [_event(messageId=f"m-{i}", properties={"pad": "x" * 20_000}) for i in range(25)]
    empty = _body({"batch": events, "pad": ""})
    padded = _body({"batch": events, "pad": "y" * (size - len(empty))})
    assert len(padded) == size
    return padded


def test_a_batch_is_split_into_one_raw_event_per_item():
    body = _body({"batch": [_event(messageId="m-1"), _event(messageId="m-2")]})

    parsed = parse_request(body, None)

    assert [json.loads(raw)["messageId"] for raw in parsed.events] == ["m-1", "m-2"]


def test_batch_level_write_key_sent_at_context_and_integrations_are_kept():
    body = _body(
        {
            "batch": [_event()],
            "writeKey": " key-12345 ",
            "sentAt": "2026-01-02T03:04:05.000Z",
            "context": {"library": {"name": "analytics-python"}},
            "integrations": {"All": False},
        }
    )

    parsed = parse_request(body, None)

    assert parsed.write_key == "key-12345"
    assert parsed.sent_at == "2026-01-02T03:04:05.000Z"
    assert parsed.context == {"library": {"name": "analytics-python"}}
    assert parsed.integrations == {"All": False}


def test_a_batch_context_that_is_not_an_object_is_ignored():
    parsed = parse_request(_body({"batch": [_event()], "context": ["x"], "integrations": 3}), None)

    assert parsed.context == {}
    assert parsed.integrations == {}


def test_a_batch_without_a_batch_array_is_refused():
    with pytest.raises(InputError) as caught:
        parse_request(_body({"events": [_event()]}), None)

    assert caught.value.code == "invalid_batch"
    assert caught.value.status_code == 400


def test_a_batch_whose_batch_field_is_an_object_is_refused():
    with pytest.raises(InputError) as caught:
        parse_request(_body({"batch": _event()}), None)

    assert caught.value.code == "invalid_batch"


def test_a_batch_body_that_is_not_json_is_refused():
    with pytest.raises(InputError) as caught:
        parse_request(b"{not json", None)

    assert caught.value.status_code == 400


def test_a_single_event_body_is_one_raw_event_as_sent():
    body = _body(_event(writeKey="key-12345"))

    parsed = parse_request(body, "track")

    assert parsed.events == [body]
    assert parsed.write_key == "key-12345"


def test_a_single_event_body_that_is_an_array_is_refused():
    with pytest.raises(InputError) as caught:
        parse_request(_body([_event()]), "track")

    assert caught.value.code == "invalid_json"


@pytest.mark.parametrize(
    ("body", "endpoint", "got"),
    [
        (_body(_event(writeKey=12345678)), "track", "int"),
        (_body({"batch": [], "writeKey": ["k"]}), None, "list"),
    ],
)
def test_a_write_key_that_is_not_text_is_refused_saying_it_must_be_a_string(body, endpoint, got):
    with pytest.raises(InputError) as caught:
        parse_request(body, endpoint)

    assert caught.value.code == "invalid_writeKey"
    assert caught.value.status_code == 400
    assert "must be a string" in caught.value.message and got in caught.value.message


def test_bare_nan_in_a_single_event_is_refused_with_a_400():
    body = b'{"type": "track", "event": "x", "userId": "u", "properties": {"v": NaN}}'

    with pytest.raises(InputError) as caught:
        parse_request(body, "track")

    assert caught.value.code == "invalid_json"
    assert caught.value.status_code == 400


def test_bare_nan_in_a_batch_is_refused_with_a_400():
    body = b'{"batch": [{"type": "track", "event": "x", "userId": "u", "properties": {"v": NaN}}]}'

    with pytest.raises(InputError) as caught:
        parse_request(body, None)

    assert caught.value.status_code == 400


def test_bare_infinity_is_refused_too():
    with pytest.raises(InputError):
        parse_request(b'{"batch": [{"type": "track", "properties": {"v": -Infinity}}]}', None)


def test_a_lone_surrogate_in_a_batch_is_not_fatal():
    body = b'{"batch": [{"type": "track", "event": "x", "userId": "u-\\ud800"}]}'

    parsed = parse_request(body, None)

    assert len(parsed.events) == 1


def test_invalid_utf8_in_a_single_event_is_not_fatal():
    body = b'{"type": "track", "event": "x", "userId": "u", "writeKey": "key-\xff\xfe"}'

    parsed = parse_request(body, "track")

    assert parsed.events == [body]
    assert parsed.write_key == "key-\ufffd\ufffd"


def test_an_event_of_exactly_32_kb_is_accepted():
    assert len(parse_request(_padded_event(EVENT_LIMIT), "track").events) == 1


def test_an_event_over_32_kb_is_refused_with_a_message_naming_the_limit():
    with pytest.raises(PayloadTooLarge) as caught:
        parse_request(_padded_event(EVENT_LIMIT + 1), "track")

    assert caught.value.code == "event_too_large"
    assert "32 KB" in caught.value.message
    assert f"{EVENT_LIMIT:,}" in caught.value.message
    assert caught.value.status_code == 400


def test_a_batch_of_exactly_500_kb_is_accepted():
    assert len(parse_request(_padded_batch(BATCH_LIMIT), None).events) == 25


def test_a_batch_over_500_kb_is_refused_with_a_message_naming_the_limit():
    with pytest.raises(PayloadTooLarge) as caught:
        parse_request(_padded_batch(BATCH_LIMIT + 1), None)

    assert caught.value.code == "batch_too_large"
    assert "500 KB" in caught.value.message
    assert f"{BATCH_LIMIT:,}" in caught.value.message


def test_a_too_large_error_is_an_input_error_so_it_becomes_a_400():
    assert issubclass(PayloadTooLarge, InputError)


def test_batch_level_text_is_made_nfc_like_the_events():
    decomposed = "Nguye\u0302\u0303n"  # e + circumflex + tilde, not composed
    body = json.dumps(
        {
            "batch": [{"type": "track", "event": "x", "userId": "u"}],
            "context": {"city": decomposed},
        },
        ensure_ascii=False,
    ).encode()

    parsed = parse_request(body, None)

    assert parsed.context == {"city": "Nguy\u1ec5n"}
    assert parsed.known_clean is False


def test_a_clean_batch_is_marked_so_its_events_skip_the_text_check():
    body = json.dumps(
        {"batch": [{"type": "track", "event": "Mua hàng", "userId": "u"}]}, ensure_ascii=False
    ).encode()

    assert parse_request(body, None).known_clean is True
