"""F3 on the real PostgreSQL and Valkey: identity resolution, merges, traits and aggregates."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from psycopg.rows import dict_row

from c360.events.f1 import IngestContext, ParsedRequest, ingest
from c360.events.model import encode
from c360.stages import f2_persist, f3_resolve

RECEIVED = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def store(runtime, *events: dict, source: str = "web") -> list[bytes]:
    """Events through F1 and F2; returns the id-resolution references F3 reads."""
    ctx = IngestContext(source=source, received_at=RECEIVED)
    raws = [encode(event) for event in events]
    result = ingest(ParsedRequest(events=raws), ctx, runtime.settings, runtime.hooks)
    assert not result.rejected, result.rejected
    f2_persist.persist(runtime, [encode(event) for event in result.accepted])
    return [encode([source, event.message_id]) for event in result.accepted]


def run(runtime, *events: dict, source: str = "web") -> int:
    """Store and resolve events in one F3 batch."""
    return f3_resolve.resolve(runtime, store(runtime, *events, source=source))


def rows(runtime, sql: str, *params) -> list[dict]:
    with runtime.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(sql, params).fetchall()


def live_profiles(runtime) -> list[dict]:
    return rows(runtime, "SELECT * FROM profiles WHERE merged_into IS NULL ORDER BY profile_id")


def profile_of(runtime, message_id: str):
    (row,) = rows(runtime, "SELECT profile_id FROM events WHERE message_id = %s", message_id)
    return row["profile_id"]


def owner(runtime, id_type: str, id_value: str):
    found = rows(
        runtime,
        "SELECT profile_id FROM identifiers WHERE id_type = %s AND id_value = %s",
        id_type,
        id_value,
    )
    return found[0]["profile_id"] if found else None


def track(message_id: str, *, user=None, anon=None, ts="2026-02-01T10:00:00Z", **extra) -> dict:
    event = {"type": "track", "event": "Viewed", "messageId": message_id, "timestamp": ts, **extra}
    if user:
        event["userId"] = user
    if anon:
        event["anonymousId"] = anon
    return event


def identify(message_id: str, *, user=None, anon=None, ts="2026-02-01T10:00:00Z", **traits) -> dict:
    event = {"type": "identify", "messageId": message_id, "timestamp": ts, "traits": traits}
    if user:
        event["userId"] = user
    if anon:
        event["anonymousId"] = anon
    return event


def order(message_id: str, user: str, revenue: str, ts="2026-02-01T10:00:00Z") -> dict:
    return track(
        message_id, user=user, ts=ts, event="Order Completed", properties={"revenue": revenue}
    )


def test_two_events_with_the_same_user_id_make_one_profile(runtime):
    run(runtime, track("m-1", user="u-1"), track("m-2", user="u-1"))
    run(runtime, track("m-3", user="u-1"))

    (profile,) = live_profiles(runtime)
    assert profile["event_count"] == 3
    assert {profile_of(runtime, m) for m in ("m-1", "m-2", "m-3")} == {profile["profile_id"]}


def test_anonymous_events_later_identified_by_a_new_user_id_stay_one_profile(runtime):
    run(runtime, track("m-1", anon="a-1"), track("m-2", anon="a-1"))
    anonymous = profile_of(runtime, "m-1")

    run(runtime, identify("m-3", user="u-1", anon="a-1", email="lan@example.vn"))

    (profile,) = live_profiles(runtime)
    assert profile["profile_id"] == anonymous
    assert profile["event_count"] == 3
    assert owner(runtime, "user_id", "u-1") == anonymous
    assert owner(runtime, "email", "lan@example.vn") == anonymous


def test_an_anonymous_profile_identified_as_a_known_customer_merges_with_evidence(runtime):
    run(runtime, order("m-1", "u-1", "40"), track("m-2", user="u-1", anon="phone-1"))
    known = profile_of(runtime, "m-1")
    run(runtime, track("m-3", anon="laptop-1"), track("m-4", anon="laptop-1"))
    anonymous = profile_of(runtime, "m-3")
    assert anonymous != known

    run(runtime, identify("m-5", user="u-1", anon="laptop-1", name="Lan"))

    (profile,) = live_profiles(runtime)
    assert profile["profile_id"] == known
    assert profile["event_count"] == 5
    assert profile["order_count"] == 1 and profile["revenue"] == Decimal("40")
    assert profile["traits"] == {"name": "Lan"}
    assert {profile_of(runtime, f"m-{n}") for n in range(1, 6)} == {known}
    assert owner(runtime, "anonymous_id", "laptop-1") == known
    (merge,) = rows(runtime, "SELECT * FROM merges")
    assert (merge["surviving_id"], merge["merged_id"]) == (known, anonymous)
    assert merge["evidence"]["matched"] == {"type": "anonymous_id", "value": "laptop-1"}
    assert merge["rule"] and (merge["source"], merge["message_id"]) == ("web", "m-5")
    (merged,) = rows(runtime, "SELECT merged_into FROM profiles WHERE profile_id = %s", anonymous)
    assert merged["merged_into"] == known


def test_two_profiles_sharing_an_email_merge_when_one_is_anonymous(runtime):
    run(runtime, identify("m-1", user="u-1", email="Lan@Example.vn"))
    run(runtime, identify("m-2", anon="a-9", email=" lan@example.VN "))

    (profile,) = live_profiles(runtime)
    assert profile["event_count"] == 2
    assert owner(runtime, "anonymous_id", "a-9") == profile["profile_id"]


def test_two_user_ids_sharing_an_anonymous_id_are_not_merged(runtime):
    run(runtime, identify("m-1", user="u-1", anon="shared-tablet"))
    run(runtime, identify("m-2", user="u-2", anon="shared-tablet"))

    assert len(live_profiles(runtime)) == 2
    assert profile_of(runtime, "m-1") != profile_of(runtime, "m-2")
    assert rows(runtime, "SELECT * FROM merges") == []


def test_two_user_ids_sharing_an_anonymous_id_write_an_identity_conflict(runtime):
    run(runtime, identify("m-1", user="u-1", anon="shared-tablet"))
    run(runtime, identify("m-2", user="u-2", anon="shared-tablet"))

    (conflict,) = rows(runtime, "SELECT * FROM identity_conflicts")
    assert (conflict["id_type"], conflict["id_value"]) == ("anonymous_id", "shared-tablet")
    assert conflict["message_id"] == "m-2"


def test_two_customers_with_different_user_ids_never_merge_through_a_shared_email(runtime):
    run(runtime, identify("m-1", user="u-1", email="one@example.vn"))
    run(runtime, identify("m-2", user="u-2", email="two@example.vn"))

    run(runtime, identify("m-3", user="u-1", email="two@example.vn"))

    assert len(live_profiles(runtime)) == 2
    (conflict,) = rows(runtime, "SELECT * FROM identity_conflicts")
    assert (conflict["id_type"], conflict["id_value"]) == ("email", "two@example.vn")
    assert conflict["profile_id"] == owner(runtime, "user_id", "u-1")
    assert conflict["other_id"] == owner(runtime, "user_id", "u-2")


def test_two_user_ids_in_one_batch_sharing_an_anonymous_id_are_not_merged(runtime):
    run(
        runtime,
        identify("m-1", user="u-1", anon="kiosk"),
        identify("m-2", user="u-2", anon="kiosk"),
    )

    assert len(live_profiles(runtime)) == 2


@pytest.mark.parametrize("placeholder", ["undefined", "null", "guest", "0000", "Anonymous"])
def test_placeholders_never_link_two_people(runtime, placeholder):
    run(runtime, identify("m-1", user="u-1", anon=placeholder, email="none"))
    run(
        runtime,
        track("m-2", user="u-2", anon=placeholder, context={"device": {"id": placeholder}}),
    )

    assert len(live_profiles(runtime)) == 2
    stored = rows(runtime, "SELECT id_type, id_value FROM identifiers ORDER BY 1, 2")
    assert stored == [
        {"id_type": "user_id", "id_value": "u-1"},
        {"id_type": "user_id", "id_value": "u-2"},
    ]


OLDER = identify("m-old", user="u-1", ts="2026-01-01T08:00:00Z", name="Old Name", plan="free")
NEWER = identify("m-new", user="u-1", ts="2026-01-05T08:00:00Z", name="New Name", city="Huế")


@pytest.mark.parametrize("order_", [(OLDER, NEWER), (NEWER, OLDER)], ids=["in-order", "reversed"])
def test_an_older_trait_never_overwrites_a_newer_one_whatever_the_processing_order(runtime, order_):
    first, second = order_
    refs = {event["messageId"]: store(runtime, event) for event in (OLDER, NEWER)}

    f3_resolve.resolve(runtime, refs[first["messageId"]])
    f3_resolve.resolve(runtime, refs[second["messageId"]])

    (profile,) = live_profiles(runtime)
    assert profile["traits"] == {"name": "New Name", "plan": "free", "city": "Huế"}


def test_an_older_trait_never_overwrites_a_newer_one_across_a_merge(runtime):
    run(runtime, identify("m-1", user="u-1", ts="2026-01-05T00:00:00Z", name="New"))
    run(runtime, identify("m-2", anon="a-1", ts="2026-01-01T00:00:00Z", name="Old"))

    run(runtime, identify("m-3", user="u-1", anon="a-1", ts="2026-01-03T00:00:00Z"))

    (profile,) = live_profiles(runtime)
    assert profile["traits"] == {"name": "New"}


def test_resolving_the_same_references_twice_changes_no_aggregate(runtime):
    refs = store(
        runtime,
        order("m-1", "u-1", "10.25"),
        track("m-2", anon="a-1"),
        identify("m-3", user="u-1", anon="a-1", email="x@example.vn"),
    )
    assert f3_resolve.resolve(runtime, refs) == 3
    before = rows(runtime, "SELECT * FROM profiles ORDER BY profile_id")
    idents_before = rows(runtime, "SELECT * FROM identifiers ORDER BY 1, 2")

    again = f3_resolve.resolve(runtime, refs + refs)

    assert again == 0
    assert rows(runtime, "SELECT * FROM profiles ORDER BY profile_id") == before
    assert rows(runtime, "SELECT * FROM identifiers ORDER BY 1, 2") == idents_before


def test_order_count_and_revenue_equal_independent_sums(runtime):
    rng = random.Random(360)
    users = [f"u-{n}" for n in range(6)]
    events, expected_orders, expected_revenue = [], defaultdict(int), defaultdict(Decimal)
    for n in range(60):
        user = rng.choice(users)
        if rng.random() < 0.3:
            events.append(track(f"view-{n}", user=user))
            continue
        cents = rng.randrange(1, 100_000)
        amount = f"{cents // 100}.{cents % 100:02d}"
        day = rng.randrange(1, 28)
        events.append(order(f"order-{n}", user, amount, ts=f"2026-02-{day:02d}T10:00:00Z"))
        expected_orders[user] += 1
        expected_revenue[user] += Decimal(amount)
    replayed = rng.sample(events, 10)

    for start in range(0, len(events), 7):
        run(runtime, *events[start : start + 7])
    run(runtime, *replayed)

    for user in users:
        (profile,) = rows(
            runtime,
            "SELECT p.* FROM profiles p JOIN identifiers i USING (profile_id)"
            " WHERE i.id_type = 'user_id' AND i.id_value = %s",
            user,
        )
        assert profile["order_count"] == expected_orders[user], user
        assert profile["revenue"] == expected_revenue[user], user
    totals = rows(runtime, "SELECT sum(order_count) AS n, sum(revenue) AS r FROM profiles")[0]
    assert totals["n"] == sum(expected_orders.values())
    assert totals["r"] == sum(expected_revenue.values())


def test_orders_before_and_after_a_merge_add_up_on_the_surviving_profile(runtime):
    run(runtime, order("m-1", "u-1", "10.10"))
    run(
        runtime,
        track("m-2", anon="a-1"),
        track("m-3", anon="a-1", event="Order Completed", properties={"revenue": "5.05"}),
    )
    run(runtime, identify("m-4", user="u-1", anon="a-1"))
    run(runtime, order("m-5", "u-1", "0.85"))

    (profile,) = live_profiles(runtime)
    assert profile["order_count"] == 3
    assert profile["revenue"] == Decimal("16.00")


def test_the_cache_holds_the_profile_after_resolve(runtime):
    run(runtime, identify("m-1", user="u-1", email="Lan@Example.VN", phone="0912345678"))
    (profile,) = live_profiles(runtime)
    profile_id = str(profile["profile_id"])

    cached = runtime.cache.get(profile_id)

    assert cached is not None and cached["profile_id"] == profile_id
    assert cached["event_count"] == 1
    assert runtime.cache.lookup("user_id", "u-1") == profile_id
    assert runtime.cache.lookup("email", "lan@example.vn") == profile_id
    assert runtime.cache.lookup("phone", "+84912345678") == profile_id
    assert runtime.valkey.exists(f"c360:profile:{profile_id}") == 1


def test_the_cache_follows_a_merge(runtime):
    run(runtime, identify("m-1", user="u-1"))
    run(runtime, track("m-2", anon="a-1"))
    anonymous = str(profile_of(runtime, "m-2"))

    run(runtime, identify("m-3", user="u-1", anon="a-1"))

    (profile,) = live_profiles(runtime)
    survivor = str(profile["profile_id"])
    assert runtime.cache.lookup("anonymous_id", "a-1") == survivor
    stale = runtime.cache.get(anonymous)
    assert stale is None or stale["profile_id"] == survivor


def test_two_customers_known_by_email_sharing_a_device_stay_apart(runtime):
    for message_id, email in (("m-1", "lan@example.vn"), ("m-2", "minh@example.vn")):
        event = identify(message_id, anon=f"browser-{message_id}", email=email)
        run(runtime, {**event, "context": {"device": {"id": "family-ipad"}}})

    assert len(live_profiles(runtime)) == 2
    assert rows(runtime, "SELECT * FROM merges") == []
    assert profile_of(runtime, "m-1") != profile_of(runtime, "m-2")


def test_each_event_and_identifier_keeps_the_profile_it_first_joined(runtime):
    run(runtime, identify("m-1", user="u-1"))
    run(runtime, identify("m-2", anon="a-1"))
    known, anonymous = profile_of(runtime, "m-1"), profile_of(runtime, "m-2")

    run(runtime, identify("m-3", user="u-1", anon="a-1"))

    origins = rows(runtime, "SELECT message_id, profile_id, origin_profile FROM events ORDER BY 1")
    assert [(r["profile_id"], r["origin_profile"]) for r in origins] == [
        (known, known),
        (known, anonymous),
        (known, known),
    ]
    assert owner(runtime, "anonymous_id", "a-1") == known
    (device,) = rows(runtime, "SELECT origin_profile FROM identifiers WHERE id_value = 'a-1'")
    assert device["origin_profile"] == anonymous


def test_a_profile_made_and_merged_in_one_batch_keeps_its_events_origin(runtime):
    run(runtime, identify("m-1", user="u-1"))

    run(runtime, track("m-2", anon="a-1"), identify("m-3", user="u-1", anon="a-1"))

    (merge,) = rows(runtime, "SELECT * FROM merges")
    (event,) = rows(runtime, "SELECT origin_profile FROM events WHERE message_id = 'm-2'")
    assert event["origin_profile"] == merge["merged_id"] != merge["surviving_id"]


def test_a_merge_in_f3_keeps_the_losing_trait_values(runtime):
    run(runtime, identify("m-1", user="u-1", ts="2026-01-05T00:00:00Z", name="New"))
    run(runtime, identify("m-2", anon="a-1", ts="2026-01-01T00:00:00Z", name="Old", city="Huế"))

    run(runtime, identify("m-3", user="u-1", anon="a-1", ts="2026-01-03T00:00:00Z"))

    (profile,) = live_profiles(runtime)
    assert profile["traits"] == {"name": "New", "city": "Huế"}
    (old,) = profile["trait_others"]["name"]
    assert old["value"] == "Old" and old["at"][2] == "m-2"
    cached = runtime.cache.get(str(profile["profile_id"]))
    assert cached["trait_others"] == profile["trait_others"]
