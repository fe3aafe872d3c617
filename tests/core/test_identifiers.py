"""Identifiers: normalised for matching, placeholders never identify, and which ones an event
carries (the built-in identity-rules plugin)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from c360.events.identifiers import (
    Identifier,
    is_placeholder,
    normalise_email,
    normalise_id,
    normalise_phone,
    unique,
)
from c360.events.model import Event
from c360.plugins import identity_rules
from c360.settings import DEFAULT_PLACEHOLDERS, Settings, load_settings

PLACEHOLDERS = frozenset(DEFAULT_PLACEHOLDERS)
NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def plain_settings() -> Settings:
    return load_settings({}, environ={})


def _event(**fields: Any) -> Event:
    values: dict[str, Any] = {
        "message_id": "m-1",
        "type": "track",
        "source": "web",
        "customer_key": "k",
        "received_at": NOW,
        "timestamp": NOW,
        **fields,
    }
    return Event(**values)


def _pairs(identifiers: list[Identifier]) -> list[tuple[str, str]]:
    return [(identifier.type, identifier.value) for identifier in identifiers]


# Phones


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("0912 345 678", "VN", "+84912345678"),
        ("0912345678", "VN", "+84912345678"),
        ("+84 912 345 678", "VN", "+84912345678"),
        ("(+84) 91-234-5678", "US", "+84912345678"),
        ("+1 415 555 2671", "VN", "+14155552671"),
        ("(415) 555-2671", "US", "+14155552671"),
        ("020 7946 0018", "GB", "+442079460018"),
        (84912345678, "VN", "+84912345678"),
    ],
)
def test_phones_are_normalised_to_e164(raw, region, expected):
    assert normalise_phone(raw, region) == expected


def test_a_vietnamese_local_number_needs_the_vietnamese_region():
    assert normalise_phone("0912 345 678", "US") is None


def test_a_lower_case_region_reads_local_numbers_too():
    assert normalise_phone("0912 345 678", "vn") == "+84912345678"


@pytest.mark.parametrize(
    "raw", ["garbage", "", "   ", "12", "+", "0000000000", "+84 000 000 000", "1111111111"]
)
def test_what_is_not_a_real_phone_number_is_not_a_phone(raw):
    assert normalise_phone(raw, "VN") is None


@pytest.mark.parametrize("raw", [None, True, 4.15, ["0912345678"], {"n": "0912345678"}])
def test_a_phone_that_is_not_text_or_an_integer_is_not_a_phone(raw):
    assert normalise_phone(raw, "VN") is None


# Emails


def test_an_email_is_trimmed_and_lower_cased():
    assert normalise_email("  Lan.Nguyen@Example.VN ") == "lan.nguyen@example.vn"


@pytest.mark.parametrize("raw", ["not-an-email", "a@b", "@example.com", "a b@example.com", "", 5])
def test_what_does_not_look_like_an_address_is_not_an_email(raw):
    assert normalise_email(raw) is None


# Ids and placeholders


def test_an_integer_id_becomes_its_digits():
    assert normalise_id(12345) == "12345"


def test_an_id_is_trimmed_and_composed():
    assert normalise_id("  Hu\u031bo\u031bng ") == "H\u01b0\u01a1ng"


@pytest.mark.parametrize("raw", [None, True, False, 1.5, {"id": 1}, ["u"], "", "   "])
def test_what_is_not_text_or_an_integer_is_not_an_id(raw):
    assert normalise_id(raw) is None


@pytest.mark.parametrize(
    "value",
    [
        "undefined",
        "null",
        "NULL",
        "[object Object]",
        "0",
        "",
        "anonymous",
        " Guest ",
        "00000000-0000-0000-0000-000000000000",
        "0000",
        "---",
    ],
)
def test_placeholders_are_recognised_whatever_their_case(value):
    assert is_placeholder(value, PLACEHOLDERS)


@pytest.mark.parametrize("value", ["u-1", "lan@example.vn", "+84912345678", "10", "guest-7"])
def test_real_values_are_not_placeholders(value):
    assert not is_placeholder(value, PLACEHOLDERS)


def test_unique_keeps_the_first_of_each_type_and_value():
    first = Identifier("email", "a@b.vn", "A@b.vn")
    again = Identifier("email", "a@b.vn", "a@b.vn ")
    other = Identifier("user_id", "a@b.vn", "a@b.vn")

    assert unique([first, again, other]) == [first, other]


def test_an_identifier_knows_its_trust():
    email = Identifier("email", "a@b.vn", "a@b.vn")
    device = Identifier("anonymous_id", "x", "x")

    assert email.trust > device.trust


# Which identifiers an event carries


def test_an_event_carries_its_user_and_anonymous_ids(plain_settings):
    event = _event(user_id="u-1", anonymous_id="a-1")

    found = identity_rules.c360_event_identifiers(event=event, settings=plain_settings)

    assert _pairs(found) == [("user_id", "u-1"), ("anonymous_id", "a-1")]


def test_the_raw_value_is_kept_beside_the_normalised_one(plain_settings):
    event = _event(user_id="u-1", traits={"email": " Lan@Example.VN "})

    found = identity_rules.c360_event_identifiers(event=event, settings=plain_settings)

    assert Identifier("email", "lan@example.vn", " Lan@Example.VN ") in found


def test_email_and_phone_come_from_traits_context_traits_and_properties(plain_settings):
    event = _event(
        user_id="u-1",
        traits={"email": "a@example.vn"},
        context={"traits": {"phone": "0912 345 678"}},
        properties={"phone_number": "+1 415 555 2671"},
    )

    found = identity_rules.c360_event_identifiers(event=event, settings=plain_settings)

    assert _pairs(found) == [
        ("user_id", "u-1"),
        ("email", "a@example.vn"),
        ("phone", "+84912345678"),
        ("phone", "+14155552671"),
    ]


def test_an_identify_does_not_read_identifiers_from_properties(plain_settings):
    event = _event(type="identify", user_id="u-1", properties={"email": "other@example.vn"})

    found = identity_rules.c360_event_identifiers(event=event, settings=plain_settings)

    assert _pairs(found) == [("user_id", "u-1")]


def test_the_device_id_counts_as_an_anonymous_id(plain_settings):
    event = _event(user_id="u-1", context={"device": {"id": "dev-9"}})

    found = identity_rules.c360_event_identifiers(event=event, settings=plain_settings)

    assert ("anonymous_id", "dev-9") in _pairs(found)


def test_crm_ids_come_from_traits_and_external_ids(plain_settings):
    event = _event(
        user_id="u-1",
        traits={"crm_id": 501},
        context={"externalIds": [{"id": "hs-7", "type": "hubspot"}, {"id": "z-1", "type": "zalo"}]},
    )

    found = identity_rules.c360_event_identifiers(event=event, settings=plain_settings)

    assert _pairs(found) == [
        ("user_id", "u-1"),
        ("crm_id", "501"),
        ("crm_id", "hs-7"),
        ("zalo", "z-1"),
    ]


@pytest.mark.parametrize(
    "placeholder", ["undefined", "null", "[object Object]", "0", "anonymous", "guest"]
)
def test_placeholder_ids_are_never_identifiers(plain_settings, placeholder):
    event = _event(
        user_id=placeholder,
        anonymous_id="a-1",
        context={"device": {"id": placeholder}},
        traits={"crm_id": placeholder},
    )

    found = identity_rules.c360_event_identifiers(event=event, settings=plain_settings)

    assert _pairs(found) == [("anonymous_id", "a-1")]


def test_placeholder_phones_and_garbage_emails_are_never_identifiers(plain_settings):
    event = _event(
        anonymous_id="a-1",
        traits={"phone": "0000000000", "email": "null"},
        properties={"phone": "n/a", "email": "undefined"},
    )

    found = identity_rules.c360_event_identifiers(event=event, settings=plain_settings)

    assert _pairs(found) == [("anonymous_id", "a-1")]


def test_the_same_identifier_twice_is_listed_once(plain_settings):
    event = _event(
        user_id="u-1",
        traits={"email": "a@example.vn"},
        properties={"email": "A@Example.vn"},
    )

    found = identity_rules.c360_event_identifiers(event=event, settings=plain_settings)

    assert _pairs(found) == [("user_id", "u-1"), ("email", "a@example.vn")]


def test_the_default_region_reads_local_phone_numbers():
    settings = load_settings({"default_region": "US"}, environ={})
    event = _event(user_id="u-1", traits={"phone": "(415) 555-2671"})

    found = identity_rules.c360_event_identifiers(event=event, settings=settings)

    assert ("phone", "+14155552671") in _pairs(found)


def test_an_alias_ties_its_previous_id_to_the_user_as_a_weak_identifier(plain_settings):
    event = _event(type="alias", user_id="u-1", previous_id="anon-7")

    found = identity_rules.c360_event_identifiers(event=event, settings=plain_settings)

    assert _pairs(found) == [("user_id", "u-1"), ("anonymous_id", "anon-7")]


def test_an_alias_with_a_placeholder_previous_id_links_nothing_more(plain_settings):
    event = _event(type="alias", user_id="u-1", previous_id="undefined")

    found = identity_rules.c360_event_identifiers(event=event, settings=plain_settings)

    assert _pairs(found) == [("user_id", "u-1")]


def test_an_email_over_254_characters_is_not_an_identifier():
    from c360.events.identifiers import normalise_email

    local = "a" * 64
    fits = local + "@" + "b" * (254 - 64 - 1 - 3) + ".vn"
    assert len(fits) == 254
    assert normalise_email(fits) == fits
    assert normalise_email("c" + fits) is None


def test_an_id_over_256_characters_is_not_an_identifier():
    from c360.events.identifiers import identifier_id

    assert identifier_id("x" * 256) == "x" * 256
    assert identifier_id("x" * 257) is None
