"""Deterministic identity resolution: which profile an event joins and which profiles merge.

Never two userIds in one profile, even through a shared anonymousId; a weak id never merges two
known customers; placeholders never identify anyone.
"""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from c360.events.model import Event
from c360.identity import Resolver
from c360.plugins import identity_rules
from c360.profiles import EventFact, ProfileState
from c360.settings import load_settings

T0 = datetime(2026, 2, 1, 8, 0, tzinfo=UTC)
_counter = itertools.count()


def _fact(*identifiers: tuple[str, str], traits: dict[str, Any] | None = None) -> EventFact:
    n = next(_counter)
    return EventFact(
        source="web",
        message_id=f"m-{n:06d}",
        type="identify",
        event=None,
        event_time=T0 + timedelta(seconds=n),
        received_at=T0 + timedelta(seconds=n),
        revenue=None,
        identifiers=[[kind, value, value] for kind, value in identifiers],
        traits=traits,
    )


def _resolver() -> Resolver:
    return Resolver(owners={}, profiles={})


def _live(resolver: Resolver) -> set[uuid.UUID]:
    return {resolver.current(profile_id) for profile_id in resolver.profiles}


def _owner(resolver: Resolver, kind: str, value: str) -> uuid.UUID:
    return resolver.current(resolver.owners[(kind, value)])


def _user_ids_of(resolver: Resolver, profile_id: uuid.UUID) -> set[str]:
    return {
        value
        for (kind, value), owner in resolver.owners.items()
        if kind == "user_id" and resolver.current(owner) == profile_id
    }


USER_1 = ("user_id", "u-1")
USER_2 = ("user_id", "u-2")
DEVICE_1 = ("anonymous_id", "dev-1")
DEVICE_2 = ("anonymous_id", "dev-2")
EMAIL_1 = ("email", "lan@example.vn")
EMAIL_2 = ("email", "minh@example.vn")
PHONE_1 = ("phone", "+84912345678")


def test_an_event_with_new_identifiers_creates_a_profile_owning_them():
    resolver = _resolver()

    profile = resolver.resolve(_fact(USER_1, DEVICE_1))

    assert profile.is_new
    assert _owner(resolver, *USER_1) == profile.profile_id
    assert _owner(resolver, *DEVICE_1) == profile.profile_id
    assert profile.unique_ids == {"user_id": "u-1"}
    assert profile.has_strong_id


def test_the_same_user_id_twice_joins_the_same_profile():
    resolver = _resolver()

    first = resolver.resolve(_fact(USER_1))
    second = resolver.resolve(_fact(USER_1, EMAIL_1))

    assert second.profile_id == first.profile_id
    assert first.event_count == 2


def test_an_anonymous_visitor_who_logs_in_keeps_one_profile():
    resolver = _resolver()

    visitor = resolver.resolve(_fact(DEVICE_1))
    customer = resolver.resolve(_fact(USER_1, DEVICE_1))

    assert customer.profile_id == visitor.profile_id
    assert customer.unique_ids == {"user_id": "u-1"}


def test_two_user_ids_sharing_a_device_stay_two_profiles():
    resolver = _resolver()

    lan = resolver.resolve(_fact(USER_1, DEVICE_1))
    minh = resolver.resolve(_fact(USER_2, DEVICE_1))

    assert lan.profile_id != minh.profile_id
    assert _owner(resolver, *DEVICE_1) == lan.profile_id
    assert resolver.merges == []
    conflict = resolver.conflicts[0]
    assert (conflict.profile, conflict.other, conflict.identifier) == (
        minh.profile_id,
        lan.profile_id,
        DEVICE_1,
    )


@pytest.mark.parametrize("shared", [DEVICE_1, EMAIL_1, PHONE_1])
def test_two_known_users_are_never_merged_through_a_shared_identifier(shared):
    resolver = _resolver()
    lan = resolver.resolve(_fact(USER_1, shared))
    minh = resolver.resolve(_fact(USER_2))

    resolver.resolve(_fact(USER_2, shared))

    assert resolver.merges == []
    assert len(_live(resolver)) == 2
    assert _user_ids_of(resolver, lan.profile_id) == {"u-1"}
    assert _user_ids_of(resolver, minh.profile_id) == {"u-2"}
    assert [conflict.identifier for conflict in resolver.conflicts] == [shared]


def test_an_event_never_lands_on_a_profile_with_another_user_id():
    resolver = _resolver()
    resolver.resolve(_fact(DEVICE_1))
    minh = resolver.resolve(_fact(USER_2, DEVICE_2))

    # dev-1's profile is anonymous; dev-2 belongs to u-2. u-1's event must not join u-2.
    profile = resolver.resolve(_fact(USER_1, DEVICE_1, DEVICE_2))

    assert profile.profile_id != minh.profile_id
    assert _owner(resolver, *USER_1) == profile.profile_id
    assert _user_ids_of(resolver, profile.profile_id) == {"u-1"}
    assert profile.unique_ids == {"user_id": "u-1"}


def test_a_shared_device_never_merges_two_customers_known_by_email():
    resolver = _resolver()
    lan = resolver.resolve(_fact(EMAIL_1, DEVICE_1))
    minh = resolver.resolve(_fact(EMAIL_2))

    resolver.resolve(_fact(EMAIL_2, DEVICE_1))

    assert resolver.merges == []
    assert _owner(resolver, *EMAIL_1) == lan.profile_id
    assert _owner(resolver, *EMAIL_2) == minh.profile_id
    assert resolver.conflicts[0].reason.startswith("anonymous_id is too weak")


def test_a_device_never_joins_a_known_customer_to_an_event_from_another_known_customer():
    resolver = _resolver()
    resolver.resolve(_fact(DEVICE_2))
    lan = resolver.resolve(_fact(EMAIL_1, DEVICE_1))

    # A new email arrives with an anonymous device and with lan's device.
    profile = resolver.resolve(_fact(EMAIL_2, DEVICE_2, DEVICE_1))

    assert profile.profile_id != lan.profile_id
    assert _owner(resolver, *EMAIL_1) == lan.profile_id
    assert _owner(resolver, *EMAIL_2) == profile.profile_id


def test_a_weak_identifier_merges_an_anonymous_profile_into_a_known_one():
    resolver = _resolver()
    visitor = resolver.resolve(_fact(DEVICE_1, traits={"theme": "dark"}))
    lan = resolver.resolve(_fact(USER_1, DEVICE_2))

    merged = resolver.resolve(_fact(USER_1, DEVICE_1))

    assert merged.profile_id == lan.profile_id
    assert resolver.current(visitor.profile_id) == lan.profile_id
    assert merged.traits == {"theme": "dark"}
    assert merged.event_count == 3
    assert [merge.rule for merge in resolver.merges] == ["shared_anonymous_id"]


def test_a_strong_identifier_merges_two_profiles_of_the_same_customer():
    resolver = _resolver()
    by_email = resolver.resolve(_fact(EMAIL_1))
    by_phone = resolver.resolve(_fact(PHONE_1))

    merged = resolver.resolve(_fact(EMAIL_1, PHONE_1))

    assert merged.profile_id == by_email.profile_id
    assert resolver.current(by_phone.profile_id) == by_email.profile_id
    assert _owner(resolver, *PHONE_1) == by_email.profile_id
    assert merged.event_count == 3
    assert resolver.merges[0].evidence["matched"] == {"type": "phone", "value": "+84912345678"}


def test_every_event_is_assigned_to_its_profile():
    resolver = _resolver()
    fact = _fact(USER_1)

    profile = resolver.resolve(fact)

    assert resolver.assignments[("web", fact.message_id)] == profile.profile_id


def test_profiles_loaded_from_the_store_are_found_by_their_identifiers():
    known = ProfileState(profile_id=uuid.uuid4(), unique_ids={"user_id": "u-1"}, has_strong_id=True)
    resolver = Resolver(owners={USER_1: known.profile_id}, profiles={known.profile_id: known})

    profile = resolver.resolve(_fact(USER_1, EMAIL_1))

    assert profile is known
    assert _owner(resolver, *EMAIL_1) == known.profile_id


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_two_user_ids_never_share_a_profile_whatever_the_arrival_order(order):
    facts = [_fact(USER_1, DEVICE_1), _fact(USER_2, DEVICE_1), _fact(DEVICE_1, EMAIL_1)]
    resolver = _resolver()

    for index in order:
        resolver.resolve(facts[index])

    assert _owner(resolver, *USER_1) != _owner(resolver, *USER_2)
    for profile_id in _live(resolver):
        assert len(_user_ids_of(resolver, profile_id)) <= 1


# Placeholders, through the identity rules


def _event(**fields: Any) -> Event:
    return Event(
        message_id=str(uuid.uuid4()),
        type="identify",
        source="web",
        customer_key="k",
        received_at=T0,
        timestamp=T0,
        **fields,
    )


@pytest.mark.parametrize(
    "placeholder", ["undefined", "null", "[object Object]", "0", "anonymous", "guest"]
)
def test_two_visitors_sending_a_placeholder_user_id_stay_apart(placeholder):
    settings = load_settings({}, environ={})
    resolver = _resolver()
    profiles = []

    for device in ("dev-1", "dev-2"):
        event = _event(user_id=placeholder, anonymous_id=device)
        found = identity_rules.c360_event_identifiers(event=event, settings=settings)
        fact = _fact(*[(identifier.type, identifier.value) for identifier in found])
        profiles.append(resolver.resolve(fact).profile_id)

    assert profiles[0] != profiles[1]
    assert ("user_id", placeholder) not in resolver.owners


def test_two_profiles_kept_apart_are_never_merged_and_the_refusal_is_a_conflict():
    first = _resolver()
    first.resolve(_fact(("user_id", "u-1")))
    first.resolve(_fact(("anonymous_id", "laptop")))
    known, anonymous = _owner(first, "user_id", "u-1"), _owner(first, "anonymous_id", "laptop")
    resolver = Resolver(first.owners, first.profiles, [(known, anonymous)])

    resolver.resolve(_fact(("user_id", "u-1"), ("anonymous_id", "laptop")))

    assert resolver.merges == []
    (conflict,) = resolver.conflicts
    assert (conflict.profile, conflict.other) == (known, anonymous)
    assert "kept apart" in conflict.reason


def test_a_separation_follows_a_profile_merged_within_the_batch():
    first = _resolver()
    first.resolve(_fact(("user_id", "u-1")))
    first.resolve(_fact(("anonymous_id", "laptop")))
    first.resolve(_fact(("anonymous_id", "phone")))
    known = _owner(first, "user_id", "u-1")
    laptop, phone = _owner(first, "anonymous_id", "laptop"), _owner(first, "anonymous_id", "phone")
    resolver = Resolver(first.owners, first.profiles, [(known, phone)])

    resolver.resolve(_fact(("anonymous_id", "laptop"), ("anonymous_id", "phone")))  # joins
    resolver.resolve(_fact(("user_id", "u-1"), ("anonymous_id", "laptop")))

    assert [(m.surviving, m.merged) for m in resolver.merges] == [(laptop, phone)]
    assert "kept apart" in resolver.conflicts[-1].reason


def test_a_new_customer_on_a_known_customers_device_gets_a_profile_of_their_own():
    resolver = _resolver()
    lan = resolver.resolve(_fact(("email", "lan@example.vn"), ("anonymous_id", "family-ipad")))

    minh = resolver.resolve(_fact(("email", "minh@example.vn"), ("anonymous_id", "family-ipad")))

    assert minh.profile_id != lan.profile_id
    assert _owner(resolver, "anonymous_id", "family-ipad") == lan.profile_id
    assert _owner(resolver, "email", "minh@example.vn") == minh.profile_id
    assert "too weak" in resolver.conflicts[-1].reason
