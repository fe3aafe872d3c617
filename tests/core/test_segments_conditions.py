"""Each kind of segment condition, and nesting, against profiles made here: the members
c360 finds equal the ones a plain Python reading of the same rule picks."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from psycopg.types.json import Jsonb

from c360.segments import service

NOW = datetime.now(UTC)
#: Times made here sit half a day off whole days, so a window measured from a moment a few
#: seconds later than NOW picks the same profiles.
HALF = timedelta(hours=12)
PLANS = ["gold", "silver", "Gold Plus", None]
DOMAINS = ["example.vn", "mail.com"]


def _profiles(rng: random.Random, n: int = 60) -> list[dict]:
    """Profiles with every kind of data a condition can read, random but reproducible."""
    people = []
    for i in range(n):
        ordered = rng.random() < 0.6
        first = NOW - timedelta(days=rng.randint(10, 400)) + HALF
        age = rng.choice([None, 17, 25, 40, "41", "n/a"])
        traits = {"name": f"Khách {i}", "vip": rng.random() < 0.3}
        if (plan := rng.choice(PLANS)) is not None:
            traits["plan"] = plan
        if age is not None:
            traits["age"] = age
        people.append(
            {
                "profile_id": uuid.UUID(int=i + 1),
                "first_seen": first,
                "last_seen": NOW - timedelta(days=rng.randint(1, 9)) + HALF,
                "event_count": rng.randint(1, 30),
                "order_count": rng.randint(1, 5) if ordered else 0,
                "revenue": Decimal(rng.randint(0, 50000)) / 100 if ordered else Decimal(0),
                "first_order_at": first + timedelta(days=1) if ordered else None,
                "traits": traits,
                "attributes": {"tier": rng.choice(["a", "b"])} if rng.random() < 0.5 else {},
                "email": f"p{i}@{rng.choice(DOMAINS)}" if rng.random() < 0.7 else None,
                "phone": f"+8491234{i:04d}" if i % 3 != 2 else None,
                "orders": [
                    NOW - timedelta(days=rng.randint(1, 200)) + HALF
                    for _ in range(rng.randint(0, 4))
                ],
                "merged": i % 13 == 12,  # a few merged-away profiles, never members
            }
        )
    return people


def _insert(conn, people: list[dict]) -> None:
    for p in people:
        conn.execute(
            "INSERT INTO profiles (profile_id, first_seen, last_seen, event_count, order_count,"
            " revenue, first_order_at, traits, attributes) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)",
            (
                p["profile_id"], p["first_seen"], p["last_seen"], p["event_count"],
                p["order_count"], p["revenue"], p["first_order_at"], Jsonb(p["traits"]),
                Jsonb(p["attributes"]),
            ),
        )  # fmt: skip
        for id_type in ("email", "phone"):
            if p[id_type]:
                conn.execute(
                    "INSERT INTO identifiers (id_type, id_value, raw_value, trust, profile_id,"
                    " first_seen, last_seen, origin_profile) VALUES (%s,%s,%s,2,%s,%s,%s,%s)",
                    (id_type, p[id_type], p[id_type], p["profile_id"], NOW, NOW, p["profile_id"]),
                )
        for n, at in enumerate(p["orders"]):
            conn.execute(
                "INSERT INTO events (source, message_id, type, event, customer_key, event_time,"
                " received_at, payload, profile_id) VALUES ('web', %s, 'track',"
                " 'Order Completed', 'k', %s, %s, '{}', %s)",
                (f"{p['profile_id']}-{n}", at, at, p["profile_id"]),
            )
    survivor = people[0]["profile_id"]
    for p in people:
        if p["merged"]:
            conn.execute(
                "UPDATE profiles SET merged_into = %s WHERE profile_id = %s",
                (survivor, p["profile_id"]),
            )


@pytest.fixture
def people(runtime):
    people = _profiles(random.Random(6))
    with runtime.pool.connection() as conn:
        _insert(conn, people)
    return people


def _found(runtime, spec) -> set[uuid.UUID]:
    answer = service.preview(runtime, spec, limit=1000)
    ids = {uuid.UUID(doc["profile_id"]) for doc in answer["profiles"]}
    assert answer["count"] == len(ids) == service.count(runtime, spec)
    return ids


def _expected(people, rule) -> set[uuid.UUID]:
    return {p["profile_id"] for p in people if not p["merged"] and rule(p)}


def _num(value):
    """A trait as a number the way the rule reads it: numbers and numeric text."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, str) and value.strip().lstrip("-").replace(".", "", 1).isdigit():
        return Decimal(value)
    return None


def _trait_text(p, name):
    value = p["traits"].get(name)
    if isinstance(value, bool):
        return "true" if value else "false"
    return None if value is None else str(value)


CASES = [
    (
        {"field": "revenue", "op": ">=", "value": Decimal("250.00")},
        lambda p: p["revenue"] >= Decimal("250.00"),
    ),
    ({"field": "order_count", "op": "=", "value": 0}, lambda p: p["order_count"] == 0),
    ({"field": "order_count", "op": "in", "value": [1, 3]}, lambda p: p["order_count"] in (1, 3)),
    ({"field": "event_count", "op": "!=", "value": 5}, lambda p: p["event_count"] != 5),
    ({"field": "event_count", "op": "<", "value": 10}, lambda p: p["event_count"] < 10),
    ({"field": "first_order_at", "op": "exists"}, lambda p: p["first_order_at"] is not None),
    (
        {"field": "first_seen", "op": "<", "value": (NOW - timedelta(days=200)).isoformat()},
        lambda p: p["first_seen"] < NOW - timedelta(days=200),
    ),
    (
        {"field": "last_seen", "within_days": 4},
        lambda p: p["last_seen"] >= NOW - timedelta(days=4),
    ),
    ({"trait": "plan", "op": "=", "value": "gold"}, lambda p: p["traits"].get("plan") == "gold"),
    ({"trait": "plan", "op": "!=", "value": "gold"}, lambda p: p["traits"].get("plan") != "gold"),
    ({"trait": "plan", "op": "exists"}, lambda p: "plan" in p["traits"]),
    (
        {"trait": "plan", "op": "contains", "value": "GOLD"},
        lambda p: "gold" in p["traits"].get("plan", "").lower(),
    ),
    (
        {"trait": "plan", "op": "in", "value": ["silver", "Gold Plus"]},
        lambda p: p["traits"].get("plan") in ("silver", "Gold Plus"),
    ),
    (
        {"trait": "age", "op": ">", "value": 30},
        lambda p: (n := _num(p["traits"].get("age"))) is not None and n > 30,
    ),
    (
        {"trait": "age", "op": "=", "value": 41},
        lambda p: _num(p["traits"].get("age")) == 41,
    ),
    (
        {"trait": "age", "op": "in", "value": [17, 25]},
        lambda p: _num(p["traits"].get("age")) in (17, 25),
    ),
    (
        {"trait": "plan", "op": "<", "value": "h"},
        lambda p: (t := _trait_text(p, "plan")) is not None and t.encode() < b"h",
    ),
    ({"trait": "vip", "op": "=", "value": True}, lambda p: p["traits"]["vip"] is True),
    (
        {"trait": "name", "op": "contains", "value": "khách 1"},
        lambda p: "Khách 1" in p["traits"]["name"],
    ),
    ({"attribute": "tier", "op": "=", "value": "a"}, lambda p: p["attributes"].get("tier") == "a"),
    ({"attribute": "tier", "op": "exists"}, lambda p: "tier" in p["attributes"]),
    ({"identifier": "email", "op": "exists"}, lambda p: p["email"] is not None),
    ({"identifier": "phone", "op": "exists"}, lambda p: p["phone"] is not None),
    (
        {"identifier": "email", "op": "=", "value": "  P3@Example.VN "},
        lambda p: p["email"] == "p3@example.vn",
    ),
    (
        {"identifier": "email", "op": "!=", "value": "p3@example.vn"},
        lambda p: p["email"] != "p3@example.vn",
    ),
    (
        {"identifier": "phone", "op": "in", "value": ["0912340001", "+84 91 234 0002"]},
        lambda p: p["phone"] in ("+84912340001", "+84912340002"),
    ),
    (
        {"identifier": "email", "op": "contains", "value": "@EXAMPLE.vn"},
        lambda p: p["email"] is not None and "@example.vn" in p["email"],
    ),
    ({"event": "Order Completed"}, lambda p: len(p["orders"]) >= 1),
    (
        {"event": "Order Completed", "count": {"op": ">=", "value": 2}, "within_days": 90},
        lambda p: sum(at >= NOW - timedelta(days=90) for at in p["orders"]) >= 2,
    ),
    (
        {"event": "Order Completed", "count": {"op": "=", "value": 0}, "within_days": 30},
        lambda p: sum(at >= NOW - timedelta(days=30) for at in p["orders"]) == 0,
    ),
    (
        {
            "event": "Order Completed",
            "count": {"op": "<", "value": 2},
            "between": [
                (NOW - timedelta(days=150)).isoformat(),
                (NOW - timedelta(days=50)).isoformat(),
            ],
        },
        lambda p: (
            sum(NOW - timedelta(days=150) <= at < NOW - timedelta(days=50) for at in p["orders"])
            < 2
        ),
    ),
    ({"event": "Page Viewed", "count": {"op": ">", "value": 0}}, lambda p: False),
]


def test_each_condition_finds_the_profiles_a_plain_reading_picks(runtime, people):
    # one test over every case: each would otherwise pay for a fresh database of its own
    wrong = [spec for spec, rule in CASES if _found(runtime, spec) != _expected(people, rule)]
    assert wrong == []


def test_every_case_is_a_real_test_neither_empty_nor_everyone(runtime, people):
    live = _expected(people, lambda p: True)
    trivial = [spec for spec, rule in CASES[:-1] if _expected(people, rule) in (set(), live)]
    assert trivial == []


GOLD = {"trait": "plan", "op": "=", "value": "gold"}
VIP = {"trait": "vip", "op": "=", "value": True}


def test_all_any_and_not_nest_like_and_or_and_not(runtime, people):
    spec = {
        "all": [
            {"any": [GOLD, {"field": "order_count", "op": ">=", "value": 3}]},
            {"not": {"identifier": "email", "op": "contains", "value": "mail.com"}},
            {"not": {"all": [{"attribute": "tier", "op": "=", "value": "b"}, VIP]}},
        ]
    }

    def rule(p):
        either = p["traits"].get("plan") == "gold" or p["order_count"] >= 3
        not_mail = not (p["email"] and "mail.com" in p["email"])
        not_both = not (p["attributes"].get("tier") == "b" and p["traits"]["vip"] is True)
        return either and not_mail and not_both

    assert _found(runtime, spec) == _expected(people, rule)


def test_an_empty_all_is_every_live_profile(runtime, people):
    assert _found(runtime, {"all": []}) == _expected(people, lambda p: True)


def test_a_page_is_ordered_by_revenue_and_pages_do_not_overlap(runtime, people):
    spec = {"field": "order_count", "op": ">", "value": 0}
    first = service.preview(runtime, spec, limit=5, offset=0)["profiles"]
    second = service.preview(runtime, spec, limit=5, offset=5)["profiles"]
    revenues = [Decimal(str(doc["revenue"])) for doc in first + second]
    assert revenues == sorted(revenues, reverse=True)
    assert not {d["profile_id"] for d in first} & {d["profile_id"] for d in second}


def test_an_injection_attempt_in_names_and_values_is_inert(runtime, people):
    evil = "plan') OR 1=1; DROP TABLE profiles; --"
    people[1]["traits"][evil] = evil
    with runtime.pool.connection() as conn:
        conn.execute(
            "UPDATE profiles SET traits = traits || %s WHERE profile_id = %s",
            (Jsonb({evil: evil}), people[1]["profile_id"]),
        )
    assert _found(runtime, {"trait": evil, "op": "=", "value": evil}) == {people[1]["profile_id"]}
    assert _found(runtime, {"trait": "plan", "op": "=", "value": evil}) == set()
    assert _found(runtime, {"event": evil}) == set()
    with runtime.pool.connection() as conn:
        assert conn.execute("SELECT count(*) FROM profiles").fetchone()[0] == len(people)


def test_a_bad_page_is_refused(runtime):
    with pytest.raises(Exception) as caught:
        service.preview(runtime, {"all": []}, limit=0)
    assert caught.value.code == "invalid_page"


def test_text_typed_in_another_unicode_form_finds_what_was_stored(runtime, people):
    # F1 stores NFC; a filter typed with combining marks (as some keyboards send) must match
    import unicodedata

    stored = "Nguyễn Thị Ánh"
    with runtime.pool.connection() as conn:
        conn.execute(
            "UPDATE profiles SET traits = traits || %s WHERE profile_id = %s",
            (Jsonb({"name": stored}), people[0]["profile_id"]),
        )
    decomposed = unicodedata.normalize("NFD", stored)
    assert decomposed != stored

    found = _found(runtime, {"trait": "name", "op": "=", "value": decomposed})

    assert found == {people[0]["profile_id"]}
