"""F1 validate and enrich: one raw event in, an enriched Event or a Rejection out."""

from __future__ import annotations

import json
import unicodedata
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pluggy
import pytest

from c360.events.f1 import IngestContext, ParsedRequest, ingest, validate_and_enrich
from c360.events.model import Event, Rejection, decode_event, encode
from c360.plugins_manager import default_manager
from c360.settings import Settings, load_settings

RECEIVED = datetime(2026, 3, 4, 5, 6, 7, 890_000, tzinfo=UTC)

PLACEHOLDERS = (
    "undefined",
    "null",
    "[object Object]",
    "0",
    "",
    "   ",
    "anonymous",
    "guest",
    "Guest",
    "NULL",
    "00000000-0000-0000-0000-000000000000",
)


@pytest.fixture(scope="module")
def plain_settings() -> Settings:
    return load_settings({}, environ={})


@pytest.fixture(scope="module")
def hooks() -> pluggy.HookRelay:
    return default_manager().hook


def _ctx(**changes: Any) -> IngestContext:
    return IngestContext(**{"source": "web", "received_at": RECEIVED, **changes})


def _run(
    settings: Settings, hooks: pluggy.HookRelay, raw: bytes | dict[str, Any], **ctx: Any
) -> Event | Rejection:
    body = raw if isinstance(raw, bytes) else json.dumps(raw).encode()
    return validate_and_enrich(body, _ctx(**ctx), settings, hooks)


def _track(**fields: Any) -> dict[str, Any]:
    return {"type": "track", "event": "Viewed", "userId": "u-1", "messageId": "m-1", **fields}


def _accepted(outcome: Event | Rejection) -> Event:
    assert isinstance(outcome, Event), outcome
    return outcome


def _rejected(outcome: Event | Rejection, code: str) -> Rejection:
    assert isinstance(outcome, Rejection), outcome
    assert outcome.code == code, outcome
    return outcome


# Identity fields


def test_an_event_with_neither_user_id_nor_anonymous_id_is_rejected(plain_settings, hooks):
    raw = {"type": "track", "event": "Viewed", "messageId": "m-1"}

    rejection = _rejected(_run(plain_settings, hooks, raw), "missing_identity")

    assert rejection.message_id == "m-1"
    assert rejection.source == "web"
    assert json.loads(rejection.payload) == raw


def test_a_user_id_that_is_an_object_is_rejected_naming_the_field(plain_settings, hooks):
    rejection = _rejected(_run(plain_settings, hooks, _track(userId={"id": 1})), "invalid_userId")

    assert "userId" in rejection.reason


def test_a_user_id_that_is_a_list_or_a_boolean_or_a_fraction_is_rejected(plain_settings, hooks):
    for value in (["u-1"], True, 1.5):
        _rejected(_run(plain_settings, hooks, _track(userId=value)), "invalid_userId")


def test_an_anonymous_id_that_is_an_object_is_rejected(plain_settings, hooks):
    raw = _track(userId=None, anonymousId={"a": 1})

    _rejected(_run(plain_settings, hooks, raw), "invalid_anonymousId")


def test_an_integer_user_id_is_accepted_as_text(plain_settings, hooks):
    event = _accepted(_run(plain_settings, hooks, _track(userId=12345)))

    assert event.user_id == "12345"
    assert event.customer_key == "12345"


def test_a_user_id_is_trimmed(plain_settings, hooks):
    assert _accepted(_run(plain_settings, hooks, _track(userId="  u-7 "))).user_id == "u-7"


@pytest.mark.parametrize("placeholder", PLACEHOLDERS)
def test_a_placeholder_user_id_alone_does_not_identify_anyone(plain_settings, hooks, placeholder):
    _rejected(_run(plain_settings, hooks, _track(userId=placeholder)), "missing_identity")


@pytest.mark.parametrize("placeholder", PLACEHOLDERS)
def test_a_placeholder_user_id_with_an_anonymous_id_is_keyed_by_the_anonymous_id(
    plain_settings, hooks, placeholder
):
    event = _accepted(_run(plain_settings, hooks, _track(userId=placeholder, anonymousId="anon-1")))

    assert event.customer_key == "anon-1"


@pytest.mark.parametrize("placeholder", PLACEHOLDERS)
def test_a_placeholder_anonymous_id_alone_does_not_identify_anyone(
    plain_settings, hooks, placeholder
):
    raw = _track(userId=None, anonymousId=placeholder)

    _rejected(_run(plain_settings, hooks, raw), "missing_identity")


def test_a_placeholder_is_whatever_the_settings_list_says(hooks):
    settings = load_settings({"placeholder_identifiers": ("nobody",)}, environ={})

    _rejected(_run(settings, hooks, _track(userId="Nobody")), "missing_identity")
    assert _accepted(_run(settings, hooks, _track(userId="guest"))).customer_key == "guest"


def test_the_user_id_is_the_customer_key_when_both_ids_are_sent(plain_settings, hooks):
    event = _accepted(_run(plain_settings, hooks, _track(anonymousId="anon-1")))

    assert event.customer_key == "u-1"
    assert event.anonymous_id == "anon-1"


# Types and shapes


def test_properties_sent_as_a_list_are_rejected(plain_settings, hooks):
    rejection = _rejected(
        _run(plain_settings, hooks, _track(properties=[1, 2])), "invalid_properties"
    )

    assert "properties" in rejection.reason


@pytest.mark.parametrize("name", ["traits", "context", "integrations"])
def test_other_object_fields_sent_as_text_are_rejected(plain_settings, hooks, name):
    _rejected(_run(plain_settings, hooks, _track(**{name: "x"})), f"invalid_{name}")


def test_null_object_fields_are_read_as_empty(plain_settings, hooks):
    event = _accepted(_run(plain_settings, hooks, _track(properties=None, traits=None)))

    assert event.properties == {}
    assert event.traits == {}


def test_an_event_that_is_not_an_object_is_rejected(plain_settings, hooks):
    _rejected(_run(plain_settings, hooks, b"[1, 2]"), "not_an_object")
    _rejected(_run(plain_settings, hooks, b'"track"'), "not_an_object")


def test_an_unknown_type_is_rejected_naming_the_known_ones(plain_settings, hooks):
    rejection = _rejected(_run(plain_settings, hooks, _track(type="click")), "invalid_type")

    assert "identify" in rejection.reason


def test_a_missing_type_is_rejected(plain_settings, hooks):
    raw = _track()
    del raw["type"]

    _rejected(_run(plain_settings, hooks, raw), "invalid_type")


def test_the_endpoint_decides_the_type_of_a_single_event(plain_settings, hooks):
    raw = {"userId": "u-1", "messageId": "m-1", "name": "Home"}

    assert _accepted(_run(plain_settings, hooks, raw, endpoint_type="page")).type == "page"


def test_a_track_without_event_is_rejected(plain_settings, hooks):
    raw = _track()
    del raw["event"]

    rejection = _rejected(_run(plain_settings, hooks, raw), "missing_event")

    assert "`event`" in rejection.reason


def test_a_track_with_a_blank_event_is_rejected(plain_settings, hooks):
    _rejected(_run(plain_settings, hooks, _track(event="   ")), "missing_event")


def test_an_integer_event_name_is_kept_as_text(plain_settings, hooks):
    assert _accepted(_run(plain_settings, hooks, _track(event=123))).event == "123"


def test_an_alias_without_previous_id_is_rejected(plain_settings, hooks):
    raw = {"type": "alias", "userId": "u-1", "messageId": "m-1"}

    _rejected(_run(plain_settings, hooks, raw), "missing_previousId")


def test_an_alias_with_previous_id_is_accepted(plain_settings, hooks):
    raw = {"type": "alias", "userId": "u-1", "previousId": " anon-1 ", "messageId": "m-1"}

    assert _accepted(_run(plain_settings, hooks, raw)).previous_id == "anon-1"


def test_a_group_without_group_id_is_rejected(plain_settings, hooks):
    _rejected(_run(plain_settings, hooks, {"type": "group", "userId": "u-1"}), "missing_groupId")


def test_an_identify_needs_no_event_name(plain_settings, hooks):
    raw = {"type": "identify", "userId": "u-1", "traits": {"plan": "pro"}}

    assert _accepted(_run(plain_settings, hooks, raw)).traits == {"plan": "pro"}


# messageId


def test_a_missing_message_id_is_generated_with_a_warning(plain_settings, hooks):
    raw = _track()
    del raw["messageId"]

    first = _accepted(_run(plain_settings, hooks, raw))
    second = _accepted(_run(plain_settings, hooks, raw))

    assert first.message_id and second.message_id
    assert first.message_id != second.message_id
    assert any("messageId" in warning for warning in first.warnings)


def test_a_sent_message_id_is_kept_without_a_warning(plain_settings, hooks):
    event = _accepted(_run(plain_settings, hooks, _track(messageId=" m-42 ")))

    assert event.message_id == "m-42"
    assert not any("messageId" in warning for warning in event.warnings)


def test_an_integer_message_id_is_kept_as_text(plain_settings, hooks):
    assert _accepted(_run(plain_settings, hooks, _track(messageId=42))).message_id == "42"


@pytest.mark.parametrize("value", ["", "  ", True, {"id": 1}, [1]])
def test_a_message_id_that_is_blank_or_not_text_is_rejected(plain_settings, hooks, value):
    _rejected(_run(plain_settings, hooks, _track(messageId=value)), "invalid_messageId")


# Text


def test_a_lone_surrogate_is_replaced_not_rejected(plain_settings, hooks):
    raw = (
        b'{"type": "track", "event": "x\\ud800", "userId": "u-1", "messageId": "m-1",'
        b' "properties": {"note": "a\\udc00b", "\\ud83d": 1}}'
    )

    event = _accepted(_run(plain_settings, hooks, raw))

    assert event.event == "x\ufffd"
    assert event.properties == {"note": "a\ufffdb", "\ufffd": 1}


def test_a_lone_surrogate_in_a_user_id_is_replaced(plain_settings, hooks):
    raw = b'{"type": "track", "event": "x", "userId": "u-\\ud800", "messageId": "m-1"}'

    assert _accepted(_run(plain_settings, hooks, raw)).user_id == "u-\ufffd"


def test_an_escaped_surrogate_pair_becomes_one_character(plain_settings, hooks):
    raw = b'{"type": "track", "event": "\\ud83d\\ude00", "userId": "u-1", "messageId": "m-1"}'

    assert _accepted(_run(plain_settings, hooks, raw)).event == "\U0001f600"


def test_invalid_utf8_bytes_are_replaced_not_rejected(plain_settings, hooks):
    raw = b'{"type": "track", "event": "x", "userId": "u-1", "properties": {"n": "a\xffb\xc3"}}'

    event = _accepted(_run(plain_settings, hooks, raw))

    assert event.properties == {"n": "a\ufffdb\ufffd"}


def test_every_string_of_an_accepted_event_encodes_as_valid_utf8(plain_settings, hooks):
    raw = (
        b'{"type": "track", "event": "x\\udfff", "userId": "u\xfe",'
        b' "properties": {"a": ["\\ud800"]}}'
    )

    event = _accepted(_run(plain_settings, hooks, raw))

    encoded = encode(event)
    encoded.decode("utf-8")
    assert decode_event(encoded).properties == {"a": ["\ufffd"]}


def test_vietnamese_with_combining_diacritics_is_nfc_normalised(plain_settings, hooks):
    # "Nguyễn Thị Hương" typed as base letters plus combining marks (NFD).
    decomposed = "Nguye\u0302\u0303n Thi\u0323 Hu\u031bo\u031bng"
    composed = "Nguy\u1ec5n Th\u1ecb H\u01b0\u01a1ng"
    assert decomposed != composed
    raw = {"type": "identify", "userId": decomposed, "traits": {decomposed: decomposed}}

    event = _accepted(_run(plain_settings, hooks, json.dumps(raw, ensure_ascii=False).encode()))

    assert event.user_id == composed
    assert event.traits == {composed: composed}


def test_vietnamese_sent_as_json_escapes_is_nfc_normalised_too(plain_settings, hooks):
    city = "Ha\u0300 No\u0302\u0323i"  # "Hà Nội" with combining marks
    raw = {"type": "track", "event": "Mua h\u00e0ng", "userId": "u-1", "properties": {"city": city}}

    event = _accepted(_run(plain_settings, hooks, json.dumps(raw, ensure_ascii=True).encode()))

    assert event.properties["city"] == "H\u00e0 N\u1ed9i"
    assert unicodedata.is_normalized("NFC", event.properties["city"])


def test_bare_nan_in_an_event_is_rejected_as_invalid_json(plain_settings, hooks):
    raw = b'{"type": "track", "event": "x", "userId": "u-1", "properties": {"v": NaN}}'

    _rejected(_run(plain_settings, hooks, raw), "invalid_json")


def test_an_event_that_is_not_json_is_rejected_not_raised(plain_settings, hooks):
    _rejected(_run(plain_settings, hooks, b'{"type": "track",'), "invalid_json")


# Size


def test_an_event_over_32_kb_in_a_batch_is_rejected_naming_the_limit(plain_settings, hooks):
    raw = json.dumps(_track(properties={"pad": "x" * (32 * 1024)})).encode()

    rejection = _rejected(_run(plain_settings, hooks, raw), "event_too_large")

    assert "32 KB" in rejection.reason


# Batch-level fields


def test_batch_level_context_is_merged_into_each_event(plain_settings, hooks):
    batch_context = {"library": {"name": "analytics-python"}, "locale": "vi-VN"}
    raw = _track(context={"locale": "en-US", "page": {"path": "/"}})

    event = _accepted(_run(plain_settings, hooks, raw, batch_context=batch_context))

    assert event.context["library"] == {"name": "analytics-python"}
    assert event.context["locale"] == "en-US"
    assert event.context["page"] == {"path": "/"}


def test_batch_level_integrations_are_merged_into_each_event(plain_settings, hooks):
    raw = _track(integrations={"Mixpanel": False})

    event = _accepted(_run(plain_settings, hooks, raw, batch_integrations={"All": True}))

    assert event.integrations == {"All": True, "Mixpanel": False}


def test_enriching_one_event_does_not_change_the_batch_context(plain_settings, hooks):
    batch_context = {"ip": "10.0.0.1", "userAgent": "curl/8.0"}

    _accepted(_run(plain_settings, hooks, _track(), batch_context=batch_context))

    assert batch_context == {"ip": "10.0.0.1", "userAgent": "curl/8.0"}


def test_batch_sent_at_corrects_the_clock_skew(plain_settings, hooks):
    # The device clock is 2 h 0.123 s behind: sentAt reads 03:06:07.767 when it is 05:06:07.890.
    raw = _track(timestamp="2026-03-04T03:00:00.000Z")

    event = _accepted(_run(plain_settings, hooks, raw, batch_sent_at="2026-03-04T03:06:07.767Z"))

    assert event.timestamp == datetime(2026, 3, 4, 5, 0, 0, 123_000, tzinfo=UTC)
    assert event.original_timestamp == datetime(2026, 3, 4, 3, 0, tzinfo=UTC)


def test_an_event_sent_at_wins_over_the_batch_sent_at(plain_settings, hooks):
    raw = _track(timestamp="2026-03-04T05:00:00.000Z", sentAt="2026-03-04T05:06:07.890Z")

    event = _accepted(_run(plain_settings, hooks, raw, batch_sent_at="2026-03-04T01:00:00.000Z"))

    assert event.timestamp == datetime(2026, 3, 4, 5, 0, tzinfo=UTC)


def test_without_a_timestamp_the_event_time_is_the_receipt(plain_settings, hooks):
    assert _accepted(_run(plain_settings, hooks, _track())).timestamp == RECEIVED


def test_an_original_timestamp_stands_in_for_a_missing_timestamp(plain_settings, hooks):
    raw = _track(originalTimestamp="2026-03-04T05:00:00Z", sentAt="2026-03-04T05:00:01Z")

    event = _accepted(_run(plain_settings, hooks, raw))

    assert event.timestamp == datetime(2026, 3, 4, 5, 6, 6, 890_000, tzinfo=UTC)


def test_an_absurd_timestamp_is_not_fatal(plain_settings, hooks):
    raw = _track(timestamp="9999-12-31T23:59:59Z", sentAt="0001-01-01T00:00:00Z")

    event = _accepted(_run(plain_settings, hooks, raw))

    assert event.timestamp == RECEIVED
    assert event.warnings


def test_a_timestamp_that_is_not_iso_is_replaced_by_the_receipt_with_a_warning(
    plain_settings, hooks
):
    event = _accepted(_run(plain_settings, hooks, _track(timestamp="yesterday")))

    assert event.timestamp == RECEIVED
    assert any("timestamp" in warning for warning in event.warnings)


# Money


def test_an_unreadable_revenue_is_accepted_with_a_warning(plain_settings, hooks):
    raw = _track(event="Order Completed", properties={"revenue": "12,50"})

    event = _accepted(_run(plain_settings, hooks, raw))

    assert event.properties["revenue"] == "12,50"
    assert any("revenue" in warning for warning in event.warnings)


def test_a_revenue_with_a_fraction_stays_an_exact_decimal(plain_settings, hooks):
    raw = (
        b'{"type": "track", "event": "Order Completed", "userId": "u", "messageId": "m",'
        b' "properties": {"revenue": 19.99}}'
    )

    event = _accepted(_run(plain_settings, hooks, raw))

    assert event.properties["revenue"] == Decimal("19.99")
    assert event.warnings == []


def test_an_overflowing_revenue_is_flagged(plain_settings, hooks):
    raw = (
        b'{"type": "track", "event": "Order Completed", "userId": "u", "messageId": "m",'
        b' "properties": {"revenue": 1e400}}'
    )

    event = _accepted(_run(plain_settings, hooks, raw))

    assert any("revenue" in warning for warning in event.warnings)


# Enrichment


def test_a_public_ip_is_enriched_with_its_country_and_still_encodes(plain_settings, hooks):
    raw = _track(context={"ip": "8.8.8.8"})

    event = _accepted(_run(plain_settings, hooks, raw))

    assert event.context["geo"]["country"] == "US"
    assert decode_event(encode(event)).context["geo"]["country"] == "US"


def test_the_client_address_is_used_when_the_event_has_no_ip(plain_settings, hooks):
    event = _accepted(_run(plain_settings, hooks, _track(), client_ip="10.1.2.3"))

    assert event.context["geo"] == {"private": True}


def test_a_user_agent_is_parsed_into_the_context(plain_settings, hooks):
    agent = (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
    )

    event = _accepted(_run(plain_settings, hooks, _track(context={"userAgent": agent})))

    assert event.context["userAgentParsed"]["browser"] == "Chrome"
    assert event.context["userAgentParsed"]["browserVersion"] == "120"
    assert event.context["userAgentParsed"]["os"] == "Windows"


def test_a_failing_enricher_does_not_reject_or_drop_the_event(plain_settings):
    from c360.hookspecs import hookimpl
    from c360.plugins_manager import make_plugin_manager

    class Broken:
        @hookimpl
        def c360_enrich_event(self, event: Event) -> None:
            raise RuntimeError("boom")

    manager = make_plugin_manager(entry_points=False, extra=[Broken()])
    raw = _track(context={"ip": "10.0.0.1"})

    event = _accepted(_run(plain_settings, manager.hook, raw))

    assert event.context["geo"] == {"private": True}


# ingest


def test_ingest_keeps_accepted_and_rejected_events_in_order(plain_settings, hooks):
    raws = [
        json.dumps(_track(messageId="m-1")).encode(),
        json.dumps(_track(messageId="m-2", userId=None)).encode(),
        json.dumps(_track(messageId="m-3")).encode(),
    ]

    result = ingest(ParsedRequest(events=raws), _ctx(), plain_settings, hooks)

    assert [event.message_id for event in result.accepted] == ["m-1", "m-3"]
    assert [rejection.message_id for rejection in result.rejected] == ["m-2"]
