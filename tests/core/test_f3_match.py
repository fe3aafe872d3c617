"""F3's probabilistic matching through the real pipeline (F1, F2, F3 on PostgreSQL): a CRM's
people arrive twice under different anonymous ids with a typo or a missing email, so no
identifier joins them; the trained model does, and never joins two different people."""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime

from psycopg.rows import dict_row

from c360.events.f1 import IngestContext, ParsedRequest, ingest
from c360.events.model import encode
from c360.matching.incremental import load_model, save_model
from c360.stages import f2_persist, f3_match, f3_resolve

GIVEN = ["Liam", "Olivia", "Noah", "Emma", "Minh", "Lan", "Jack", "Mia", "Hùng", "Ava", "Duc"]
SURNAMES = ["Brown", "Lee", "Wilson", "Trần", "Taylor", "Martin", "White", "Phạm", "King", "Ng"]


def run(runtime, *events: dict) -> int:
    """Events through F1, F2 and one F3 batch."""
    ctx = IngestContext(source="crm", received_at=datetime(2026, 3, 1, tzinfo=UTC))
    result = ingest(
        ParsedRequest(events=[encode(e) for e in events]), ctx, runtime.settings, runtime.hooks
    )
    assert not result.rejected, result.rejected
    f2_persist.persist(runtime, [encode(event) for event in result.accepted])
    return f3_resolve.resolve(runtime, [encode(["crm", e.message_id]) for e in result.accepted])


def identify(message_id: str, *, user=None, anon=None, **traits) -> dict:
    event = {
        "type": "identify",
        "messageId": message_id,
        "timestamp": "2026-02-01T10:00:00Z",
        "traits": traits,
    }
    if user:
        event["userId"] = user
    if anon:
        event["anonymousId"] = anon
    return event


def rows(runtime, sql: str, *params) -> list[dict]:
    with runtime.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(sql, params).fetchall()


def live_profiles(runtime) -> list[dict]:
    return rows(runtime, "SELECT * FROM profiles WHERE merged_into IS NULL")


def profile_of(runtime, message_id: str):
    (row,) = rows(runtime, "SELECT profile_id FROM events WHERE message_id = %s", message_id)
    return row["profile_id"]


def _person(number: int, rng: random.Random) -> dict:
    return {
        "firstName": rng.choice(GIVEN),
        "lastName": rng.choice(SURNAMES),
        "birthday": f"{1950 + number // 300}-{number % 12 + 1:02d}-{number % 28 + 1:02d}",
        "email": f"p{number}@mail.example",
        "phone": f"04{number:08d}",
        "address": {
            "street": f"{number % 90 + 1} {rng.choice(['High', 'Park', 'Main'])} St",
            "city": rng.choice(["Sydney", "Perth", "Hobart"]),
            "postalCode": "2000",
        },
    }


def _copy(person: dict, number: int) -> dict:
    """The same person as a second system holds them: one field off, email missing."""
    copy = {**person, "address": dict(person["address"])}
    del copy["email"]
    if number % 2:
        copy["lastName"] = copy["lastName"] + "e"
    else:
        copy["phone"] = "+61 4" + person["phone"][2:]
    return copy


def _load_crm(runtime, people: int = 600) -> dict[int, list[str]]:
    """Each person once, every third twice; returns person -> their messageIds."""
    rng = random.Random(9)
    events, messages = [], {}
    for number in range(people):
        person = _person(number, rng)
        events.append(identify(f"a{number}", anon=f"crm-a-{number}", **person))
        messages[number] = [f"a{number}"]
        if number % 3 == 0:
            events.append(identify(f"b{number}", anon=f"crm-b-{number}", **_copy(person, number)))
            messages[number].append(f"b{number}")
    run(runtime, *events)
    return messages


def test_without_a_model_nothing_is_merged_by_score(runtime) -> None:
    messages = _load_crm(runtime, 60)
    assert len(live_profiles(runtime)) == sum(len(ids) for ids in messages.values())


def test_batch_dedupe_merges_every_copy_and_no_strangers(runtime) -> None:
    messages = _load_crm(runtime)
    with runtime.pool.connection() as conn:
        trained = f3_match.train_profiles(conn, "AU")
        assert trained["records"] == sum(len(ids) for ids in messages.values())
        summary, changed = f3_match.dedupe_profiles(conn, apply=True)
    copies = sum(1 for ids in messages.values() if len(ids) == 2)
    assert summary["merged"] >= 0.95 * copies
    assert len(changed) == 2 * summary["merged"]
    assert summary["examples"] and all(e["fields"] for e in summary["examples"])
    profile_of_person = {}
    for number, ids in messages.items():
        owners = {profile_of(runtime, message_id) for message_id in ids}
        live = {
            row["coalesce"]
            for row in rows(
                runtime,
                "SELECT coalesce(merged_into, profile_id) FROM profiles WHERE profile_id = ANY(%s)",
                list(owners),
            )
        }
        profile_of_person[number] = live
    # no profile holds two people
    seen: dict = {}
    for number, live in profile_of_person.items():
        for profile in live:
            assert seen.setdefault(profile, number) == number
    merges = rows(runtime, "SELECT rule, evidence, score FROM merges")
    assert merges and all(m["rule"] == "probabilistic" and m["score"] >= 0.9 for m in merges)


def test_a_new_record_is_merged_as_it_arrives_with_evidence(runtime) -> None:
    _load_crm(runtime)
    with runtime.pool.connection() as conn:
        f3_match.train_profiles(conn, "AU")
    rng = random.Random(9)
    people = [_person(number, rng) for number in range(600)]
    number = 301  # has one record so far
    run(runtime, identify("late", anon="web-late", **_copy(people[number], number)))
    (row,) = rows(
        runtime,
        "SELECT coalesce(merged_into, profile_id) AS live FROM profiles WHERE profile_id = %s",
        profile_of(runtime, "late"),
    )
    assert row["live"] == profile_of(runtime, f"a{number}")
    (merge,) = rows(runtime, "SELECT rule, evidence FROM merges")
    assert merge["rule"] == "probabilistic"
    assert {"first_name", "last_name", "birthday"} <= set(merge["evidence"]["fields"])


def test_different_user_ids_are_never_merged_whatever_the_score(runtime) -> None:
    _load_crm(runtime)
    with runtime.pool.connection() as conn:
        f3_match.train_profiles(conn, "AU")
    rng = random.Random(9)
    twin = _person(5, rng)
    run(runtime, identify("u1", user="user-1", **twin))
    run(runtime, identify("u2", user="user-2", **{**twin, "email": "other@mail.example"}))
    assert profile_of(runtime, "u1") != profile_of(runtime, "u2")
    live = {row["profile_id"] for row in live_profiles(runtime)}
    assert profile_of(runtime, "u2") in live


def test_a_merge_past_the_cluster_limit_is_queued_for_review(runtime) -> None:
    _load_crm(runtime)
    with runtime.pool.connection() as conn:
        f3_match.train_profiles(conn, "AU")
        spec, model = load_model(conn, f3_match.PROFILE_MODEL)
        save_model(conn, f3_match.PROFILE_MODEL, dataclasses.replace(spec, max_cluster=1), model)
    rng = random.Random(9)
    people = [_person(number, rng) for number in range(600)]
    run(runtime, identify("late", anon="web-late", **_copy(people[301], 301)))
    assert profile_of(runtime, "late") != profile_of(runtime, "a301")
    assert rows(runtime, "SELECT * FROM merges") == []
    (review,) = rows(runtime, "SELECT profile_a, profile_b, status, evidence FROM match_reviews")
    assert review["status"] == "pending"
    assert {review["profile_a"], review["profile_b"]} == {
        profile_of(runtime, "late"),
        profile_of(runtime, "a301"),
    }
    assert "over 1" in review["evidence"]["review_reason"]


def test_twins_are_queued_for_review_not_merged(runtime) -> None:
    _load_crm(runtime)
    with runtime.pool.connection() as conn:
        f3_match.train_profiles(conn, "AU")
    twin = {
        "lastName": "Hồ Minh",
        "birthday": "2001-03-15",
        "phone": "0299998888",  # the family's landline
        "address": {"street": "31 Phố Huế", "city": "Hanoi", "postalCode": "2000"},
    }
    run(runtime, identify("q", anon="tw-quan", firstName="Quân", email="quan@x.vn", **twin))
    run(runtime, identify("k", anon="tw-khanh", firstName="Khánh", email="khanh@x.vn", **twin))
    assert profile_of(runtime, "q") != profile_of(runtime, "k")
    assert rows(runtime, "SELECT * FROM merges") == []
    (review,) = rows(runtime, "SELECT profile_a, profile_b, evidence FROM match_reviews")
    assert {review["profile_a"], review["profile_b"]} == {
        profile_of(runtime, "q"),
        profile_of(runtime, "k"),
    }
    assert "given names disagree" in review["evidence"]["review_reason"]


def test_two_known_customers_tied_by_an_anonymous_id_are_queued_for_review(runtime) -> None:
    run(runtime, identify("1", user="t1-u1", email="u1@x.example"))
    run(runtime, identify("2", anon="t1-a1", phone="+61 412 345 678"))
    run(runtime, identify("3", user="t1-u1", anon="t1-a1"))
    user, anonymous = profile_of(runtime, "1"), profile_of(runtime, "2")
    assert user != anonymous and len(live_profiles(runtime)) == 2
    (review,) = rows(runtime, "SELECT profile_a, profile_b, status, evidence FROM match_reviews")
    assert {review["profile_a"], review["profile_b"]} == {user, anonymous}
    assert review["status"] == "pending"
    assert review["evidence"]["identifier"] == {"type": "anonymous_id", "value": "t1-a1"}
    assert review["evidence"]["source_records"] == [["crm", "3"]]


def test_a_rule_merge_names_every_identifier_the_event_carried_and_its_owner(runtime) -> None:
    run(runtime, identify("1", anon="dev-1"))
    run(runtime, identify("2", anon="dev-2", email="lan@x.example"))
    first, second = profile_of(runtime, "1"), profile_of(runtime, "2")
    run(runtime, identify("3", anon="dev-1", email="lan@x.example"))
    (merge,) = rows(runtime, "SELECT rule, evidence FROM merges")
    carried = {(i["type"], i["value"]): i["owner"] for i in merge["evidence"]["event_identifiers"]}
    assert carried == {
        ("anonymous_id", "dev-1"): str(first),
        ("email", "lan@x.example"): str(second),
    }
    assert merge["evidence"]["event"] == ["crm", "3"]
