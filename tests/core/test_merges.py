"""Merges outside F3, their history, unmerge and the review queue, on the real PostgreSQL.

Expected values come from the events the tests send (sums over them, documents snapshotted
before a merge), never from the code under test.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import psycopg
import pytest
from psycopg.rows import dict_row

from c360 import merges, migrate
from c360.events.f1 import IngestContext, ParsedRequest, ingest
from c360.events.model import encode
from c360.stages import f2_persist, f3_resolve

RECEIVED = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def run(runtime, *events: dict) -> None:
    """Events through F1, F2 and F3 in one batch."""
    ctx = IngestContext(source="web", received_at=RECEIVED)
    result = ingest(
        ParsedRequest(events=[encode(e) for e in events]), ctx, runtime.settings, runtime.hooks
    )
    assert not result.rejected, result.rejected
    f2_persist.persist(runtime, [encode(e) for e in result.accepted])
    f3_resolve.resolve(runtime, [encode([e.source, e.message_id]) for e in result.accepted])


def rows(runtime, sql: str, *params) -> list[dict]:
    with runtime.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(sql, params).fetchall()


def owner(runtime, id_type: str, id_value: str):
    (row,) = rows(
        runtime,
        "SELECT profile_id FROM identifiers WHERE id_type = %s AND id_value = %s",
        id_type,
        id_value,
    )
    return row["profile_id"]


def snapshot(runtime, profile_id) -> dict:
    """The profile's document, less what changes with the clock."""
    with runtime.pool.connection() as conn:
        (doc,) = f3_resolve.load_documents(conn, [profile_id])
    return {key: value for key, value in doc.items() if key not in ("updated_at", "rfm")}


def live_count(runtime) -> int:
    return rows(runtime, "SELECT count(*) AS n FROM profiles WHERE merged_into IS NULL")[0]["n"]


def identify(message_id: str, *, user=None, anon=None, ts="2026-02-01T10:00:00Z", **traits):
    event = {"type": "identify", "messageId": message_id, "timestamp": ts, "traits": traits}
    if user:
        event["userId"] = user
    if anon:
        event["anonymousId"] = anon
    return event


def order(message_id: str, revenue: str, *, user=None, anon=None, day: int = 1) -> dict:
    event = {
        "type": "track",
        "event": "Order Completed",
        "messageId": message_id,
        "timestamp": f"2026-02-{day:02d}T10:00:00Z",
        "properties": {"revenue": revenue},
    }
    if user:
        event["userId"] = user
    if anon:
        event["anonymousId"] = anon
    return event


A_EVENTS = (
    identify("a-1", user="u-lan", email="lan@example.vn", name="Lan", city="Huế", plan="free"),
    order("a-2", "19.99", user="u-lan", day=2),
    order("a-3", "5.01", user="u-lan", day=9),
)
B_EVENTS = (
    identify("b-1", anon="laptop-1", ts="2026-02-05T10:00:00Z", name="Lan T.", city="Đà Nẵng"),
    order("b-2", "7.50", anon="laptop-1", day=3),
    identify("b-3", anon="laptop-1", ts="2026-02-04T10:00:00Z", plan="pro"),
)


@pytest.fixture
def pair(runtime):
    """Profile A (a known customer) and B (an anonymous one), built apart, with snapshots."""
    run(runtime, *A_EVENTS)
    a = owner(runtime, "user_id", "u-lan")
    before_a = snapshot(runtime, a)
    run(runtime, *B_EVENTS)
    b = owner(runtime, "anonymous_id", "laptop-1")
    return a, b, before_a, snapshot(runtime, b)


def test_merge_profiles_folds_aggregates_and_records_the_evidence(runtime, pair):
    a, b, _, _ = pair
    evidence = {"fields": ["name", "city"], "weights": {"name": 4.2}, "score": 0.93}

    with runtime.pool.connection() as conn:
        merge_id = merges.merge_profiles(conn, a, b, "fellegi_sunter", evidence, "matcher")

    merged = snapshot(runtime, b)
    assert merged["profile_id"] == str(a)
    assert merged["event_count"] == len(A_EVENTS) + len(B_EVENTS)
    assert merged["order_count"] == 3
    assert merged["revenue"] == Decimal("19.99") + Decimal("5.01") + Decimal("7.50")
    assert {i["value"] for i in merged["identifiers"]} == {"u-lan", "lan@example.vn", "laptop-1"}
    (row,) = rows(runtime, "SELECT * FROM merges")
    assert row["merge_id"] == merge_id
    assert (row["surviving_id"], row["merged_id"], row["rule"]) == (a, b, "fellegi_sunter")
    assert row["evidence"] == evidence and row["score"] == 0.93
    assert row["decided_by"] == "matcher" and row["undone_at"] is None
    events = rows(runtime, "SELECT DISTINCT profile_id FROM events")
    assert events == [{"profile_id": a}]


def test_unmerge_restores_both_profiles_exactly(runtime, pair):
    a, b, before_a, before_b = pair
    with runtime.pool.connection() as conn:
        merge_id = merges.merge_profiles(conn, a, b, "fellegi_sunter", {"score": 0.9})

    with runtime.pool.connection() as conn:
        assert merges.unmerge(conn, merge_id, "reviewer-1") == (a, b)

    after_a, after_b = snapshot(runtime, a), snapshot(runtime, b)
    for field in before_a:
        assert after_a[field] == before_a[field], field
        assert after_b[field] == before_b[field], field
    assert after_b["order_count"] == 1 and after_b["revenue"] == Decimal("7.50")
    assert after_a["revenue"] == Decimal("25.00") and after_a["event_count"] == 3
    assert {
        r["profile_id"] for r in rows(runtime, "SELECT * FROM events WHERE message_id LIKE 'b-%%'")
    } == {b}
    (row,) = rows(runtime, "SELECT * FROM merges")
    assert row["undone_by"] == "reviewer-1" and row["undone_at"] is not None


def test_an_f3_merge_undone_gives_each_side_its_events_and_the_merging_event_stays(runtime, pair):
    a, b, before_a, before_b = pair
    run(runtime, identify("m-join", user="u-lan", anon="laptop-1", ts="2026-02-20T00:00:00Z"))
    (merge,) = rows(runtime, "SELECT * FROM merges")
    assert (merge["surviving_id"], merge["merged_id"]) == (a, b)

    with runtime.pool.connection() as conn:
        merges.unmerge(conn, merge["merge_id"])

    after_a, after_b = snapshot(runtime, a), snapshot(runtime, b)
    (device,) = after_b.pop("identifiers")
    assert device["last_seen"] == datetime(2026, 2, 20, tzinfo=UTC)  # the joining event saw it
    assert {**device, "last_seen": None} == {**before_b.pop("identifiers")[0], "last_seen": None}
    assert after_b == before_b
    assert after_a["event_count"] == before_a["event_count"] + 1  # the joining event joined A
    assert after_a["revenue"] == before_a["revenue"]
    assert owner(runtime, "anonymous_id", "laptop-1") == b


def test_events_that_arrived_during_a_merge_follow_their_identifiers_when_it_is_undone(
    runtime, pair
):
    a, b, before_a, before_b = pair
    with runtime.pool.connection() as conn:
        merge_id = merges.merge_profiles(conn, a, b, "probabilistic", {"score": 0.95})
    # while merged: B's device orders (B only), A's user orders (A only), one event carries both
    run(
        runtime,
        order("during-b", "440.00", anon="laptop-1", day=20),
        order("during-a", "10.00", user="u-lan", day=21),
        identify("during-both", user="u-lan", anon="laptop-1", ts="2026-02-22T00:00:00Z"),
    )
    with runtime.pool.connection() as conn:
        merges.unmerge(conn, merge_id)

    after_a, after_b = snapshot(runtime, a), snapshot(runtime, b)
    assert after_b["revenue"] == before_b["revenue"] + Decimal("440.00")
    assert after_b["order_count"] == before_b["order_count"] + 1
    assert after_a["revenue"] == before_a["revenue"] + Decimal("10.00")
    assert after_a["event_count"] == before_a["event_count"] + 2  # its order and the bridge
    total = rows(runtime, "SELECT sum(revenue) AS r FROM events")[0]["r"]
    assert after_a["revenue"] + after_b["revenue"] == total  # nothing lost, nothing twice


def test_an_unmerged_pair_is_not_merged_again_by_an_event_carrying_both_identifiers(runtime, pair):
    a, b, _, before_b = pair
    run(runtime, identify("m-join", user="u-lan", anon="laptop-1"))
    (merge,) = rows(runtime, "SELECT * FROM merges")
    with runtime.pool.connection() as conn:
        merges.unmerge(conn, merge["merge_id"])

    run(runtime, identify("m-again", user="u-lan", anon="laptop-1", ts="2026-02-21T00:00:00Z"))

    assert live_count(runtime) == 2
    assert len(rows(runtime, "SELECT * FROM merges")) == 1
    after_b = snapshot(runtime, b)
    assert after_b.pop("identifiers")[0]["value"] == "laptop-1"
    before_b.pop("identifiers")
    assert after_b == before_b
    (conflict,) = rows(runtime, "SELECT * FROM identity_conflicts WHERE message_id = 'm-again'")
    assert (conflict["profile_id"], conflict["other_id"]) == (a, b)
    assert "kept apart" in conflict["reason"]


def test_an_unmerged_pair_is_refused_by_merge_profiles(runtime, pair):
    a, b, _, _ = pair
    with runtime.pool.connection() as conn:
        merge_id = merges.merge_profiles(conn, a, b, "manual", {})
        merges.unmerge(conn, merge_id)

        with pytest.raises(merges.MergeRefused, match="kept apart"):
            merges.merge_profiles(conn, b, a, "manual", {})


def test_a_separation_holds_for_every_member_of_both_clusters(runtime, pair):
    a, b, _, _ = pair
    run(runtime, identify("c-1", anon="tablet-9", name="C"))
    c = owner(runtime, "anonymous_id", "tablet-9")
    with runtime.pool.connection() as conn:
        merge_id = merges.merge_profiles(conn, a, b, "manual", {})
        merges.unmerge(conn, merge_id)
        merges.merge_profiles(conn, c, b, "manual", {})  # b now inside c's cluster

        with pytest.raises(merges.MergeRefused, match="kept apart"):
            merges.merge_profiles(conn, a, c, "manual", {})


def test_unmerge_keeps_nested_merges_in_their_shape(runtime):
    run(runtime, identify("x-1", user="u-x", name="X"), order("x-2", "10", user="u-x"))
    run(runtime, identify("y-1", anon="dev-y", name="Y"), order("y-2", "1.5", anon="dev-y"))
    run(runtime, identify("z-1", anon="dev-z", email="z@example.vn", name="Z"))
    run(runtime, order("z-2", "100", anon="dev-z"))
    x, y = owner(runtime, "user_id", "u-x"), owner(runtime, "anonymous_id", "dev-y")
    z = owner(runtime, "email", "z@example.vn")
    before = {p: snapshot(runtime, p) for p in (x, y, z)}
    with runtime.pool.connection() as conn:
        merges.merge_profiles(conn, x, y, "manual", {})  # y inside x
        outer = merges.merge_profiles(conn, z, x, "manual", {})  # x (with y) inside z

        assert merges.unmerge(conn, outer) == (z, x)

    assert snapshot(runtime, z) == before[z]
    restored = snapshot(runtime, x)
    assert restored["event_count"] == before[x]["event_count"] + before[y]["event_count"]
    assert restored["revenue"] == Decimal("11.5")
    assert owner(runtime, "anonymous_id", "dev-y") == x
    (merged,) = rows(runtime, "SELECT merged_into FROM profiles WHERE profile_id = %s", y)
    assert merged["merged_into"] == x


def test_undoing_an_inner_merge_leaves_the_outer_one(runtime):
    run(runtime, identify("x-1", user="u-x"), order("x-2", "10", user="u-x"))
    run(runtime, identify("y-1", anon="dev-y"), order("y-2", "1.5", anon="dev-y"))
    run(runtime, identify("z-1", anon="dev-z", email="z@example.vn"))
    run(runtime, order("z-2", "100", anon="dev-z"))
    x, y = owner(runtime, "user_id", "u-x"), owner(runtime, "anonymous_id", "dev-y")
    z = owner(runtime, "email", "z@example.vn")
    before_y = snapshot(runtime, y)
    with runtime.pool.connection() as conn:
        inner = merges.merge_profiles(conn, x, y, "manual", {})
        merges.merge_profiles(conn, z, x, "manual", {})

        assert merges.unmerge(conn, inner) == (z, y)

    assert snapshot(runtime, y) == before_y
    survivor = snapshot(runtime, z)
    assert survivor["revenue"] == Decimal("110") and survivor["event_count"] == 4


def test_merge_profiles_refuses_two_different_user_ids(runtime):
    run(runtime, identify("m-1", user="u-1", email="one@example.vn"))
    run(runtime, identify("m-2", user="u-2", email="two@example.vn"))
    one, two = owner(runtime, "user_id", "u-1"), owner(runtime, "user_id", "u-2")

    with runtime.pool.connection() as conn, pytest.raises(merges.MergeRefused, match="user_id"):
        merges.merge_profiles(conn, one, two, "fellegi_sunter", {"score": 0.99})

    assert live_count(runtime) == 2 and rows(runtime, "SELECT * FROM merges") == []


def test_merge_profiles_refuses_two_different_crm_ids(runtime):
    run(runtime, identify("m-1", anon="a-1", crm_id="crm-1"))
    run(runtime, identify("m-2", anon="a-2", crm_id="crm-2"))
    one, two = owner(runtime, "crm_id", "crm-1"), owner(runtime, "crm_id", "crm-2")

    with runtime.pool.connection() as conn, pytest.raises(merges.MergeRefused, match="crm_id"):
        merges.merge_profiles(conn, one, two, "fellegi_sunter", {})


def test_merge_profiles_refuses_a_profile_merged_with_itself(runtime, pair):
    a, b, _, _ = pair
    with runtime.pool.connection() as conn:
        merges.merge_profiles(conn, a, b, "manual", {})

        with pytest.raises(merges.MergeRefused, match="already one profile"):
            merges.merge_profiles(conn, b, a, "manual", {})


def test_merge_profiles_names_an_unknown_profile(runtime, pair):
    a, _, _, _ = pair
    unknown = "00000000-0000-4000-8000-000000000000"
    with runtime.pool.connection() as conn, pytest.raises(merges.ProfileNotFound, match=unknown):
        merges.merge_profiles(conn, a, unknown, "manual", {})


def test_unmerging_twice_or_an_unknown_merge_is_a_clear_error(runtime, pair):
    a, b, _, _ = pair
    with runtime.pool.connection() as conn:
        merge_id = merges.merge_profiles(conn, a, b, "manual", {})
        merges.unmerge(conn, merge_id, "ops")

        with pytest.raises(merges.AlreadyUndone, match=f"merge {merge_id} was undone"):
            merges.unmerge(conn, merge_id)
        with pytest.raises(merges.MergeNotFound, match="no merge has the id 999999"):
            merges.unmerge(conn, 999_999)


def test_merge_history_lists_every_merge_of_the_cluster_oldest_first_undone_included(runtime, pair):
    a, b, _, _ = pair
    run(runtime, identify("c-1", anon="tablet-9"))
    c = owner(runtime, "anonymous_id", "tablet-9")
    with runtime.pool.connection() as conn:
        first = merges.merge_profiles(conn, a, b, "manual", {"fields": ["name"]})
        merges.unmerge(conn, first)
        second = merges.merge_profiles(conn, a, c, "fellegi_sunter", {"score": 0.97})

        history = merges.merge_history(conn, c)
        of_b = merges.merge_history(conn, b)

    assert [m["merge_id"] for m in history] == [first, second]
    assert history[0]["undone_at"] is not None and history[1]["undone_at"] is None
    assert history[0]["evidence"] == {"fields": ["name"]} and history[1]["score"] == 0.97
    assert [m["merge_id"] for m in of_b] == [first]


def test_a_pending_review_is_queued_once_per_pair(runtime, pair):
    a, b, _, _ = pair
    with runtime.pool.connection() as conn:
        first = merges.enqueue_review(conn, a, b, 0.7, {"fields": ["name"]})
        again = merges.enqueue_review(conn, b, a, 0.71, {"fields": ["city"]})
        queue = merges.review_queue(conn)

    assert first == again
    (review,) = queue
    assert review["status"] == "pending" and review["score"] == 0.7
    assert {review["profile_a"], review["profile_b"]} == {a, b}


def test_an_accepted_review_merges_the_pair_with_its_evidence_and_the_decision(runtime, pair):
    a, b, _, _ = pair
    with runtime.pool.connection() as conn:
        review_id = merges.enqueue_review(conn, a, b, 0.72, {"fields": ["name"]})

        review = merges.decide_review(conn, review_id, True, "reviewer-1", "same phone")

    assert review["status"] == "accepted" and review["decided_by"] == "reviewer-1"
    assert live_count(runtime) == 1
    (merge,) = rows(runtime, "SELECT * FROM merges")
    assert merge["merge_id"] == review["merge_id"] and merge["rule"] == "review"
    assert merge["evidence"]["fields"] == ["name"] and merge["score"] == 0.72
    assert merge["evidence"]["review"]["note"] == "same phone"
    # three events each side: the tie keeps the review's first profile (the smaller id)
    assert merge["surviving_id"] == min(a, b)
    assert snapshot(runtime, b)["event_count"] == len(A_EVENTS) + len(B_EVENTS)


def test_a_rejected_review_keeps_the_pair_apart_and_is_not_queued_again(runtime, pair):
    a, b, _, _ = pair
    with runtime.pool.connection() as conn:
        review_id = merges.enqueue_review(conn, a, b, 0.6, {})

        review = merges.decide_review(conn, review_id, False, "reviewer-1", "twins")

        assert review["status"] == "rejected" and review["merge_id"] is None
        assert merges.enqueue_review(conn, a, b, 0.6, {}) is None
        with pytest.raises(merges.MergeRefused, match="kept apart"):
            merges.merge_profiles(conn, a, b, "fellegi_sunter", {})
    (separation,) = rows(runtime, "SELECT * FROM identity_separations")
    assert separation["review_id"] == review_id and separation["created_by"] == "reviewer-1"


def test_deciding_a_review_twice_or_an_unknown_review_is_a_clear_error(runtime, pair):
    a, b, _, _ = pair
    with runtime.pool.connection() as conn:
        review_id = merges.enqueue_review(conn, a, b, 0.6, {})
        merges.decide_review(conn, review_id, False, "reviewer-1")

        with pytest.raises(merges.AlreadyDecided, match="was rejected"):
            merges.decide_review(conn, review_id, True, "reviewer-2")
        with pytest.raises(merges.ReviewNotFound, match="no review has the id 424242"):
            merges.decide_review(conn, 424_242, True)


def test_an_accepted_review_the_guards_refuse_stays_pending(runtime):
    run(runtime, identify("m-1", user="u-1"))
    run(runtime, identify("m-2", user="u-2"))
    one, two = owner(runtime, "user_id", "u-1"), owner(runtime, "user_id", "u-2")
    with runtime.pool.connection() as conn:
        review_id = merges.enqueue_review(conn, one, two, 0.8, {})

        with pytest.raises(merges.MergeRefused, match="user_id"):
            merges.decide_review(conn, review_id, True, "reviewer-1")
        (review,) = merges.review_queue(conn, "pending")

    assert review["review_id"] == review_id and live_count(runtime) == 2


def test_a_merge_keeps_every_trait_value_from_both_sides(runtime, pair):
    a, b, _, _ = pair
    with runtime.pool.connection() as conn:
        merges.merge_profiles(conn, a, b, "manual", {})

    merged = snapshot(runtime, a)
    sent = {}  # every (trait, value) either side sent
    for event in A_EVENTS + B_EVENTS:
        for name, value in (event.get("traits") or {}).items():
            sent.setdefault(name, set()).add(value)
    kept = {name: {merged["traits"][name]} for name in merged["traits"]}
    for name, others in merged["trait_others"].items():
        kept[name] |= {entry["value"] for entry in others}
    assert kept == sent
    assert merged["traits"]["name"] == "Lan T." and merged["traits"]["city"] == "Đà Nẵng"
    assert merged["trait_others"]["city"] == [
        {"value": "Huế", "at": ["2026-02-01T10:00:00.000000Z", _received(), "a-1"]}
    ]


def _received() -> str:
    return RECEIVED.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_migration_0002_down_then_up_leaves_the_0001_schema_exactly(engines):
    dsn, _ = engines
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute("DROP DATABASE IF EXISTS c360_migrations")
        admin.execute("CREATE DATABASE c360_migrations")
    try:
        other = psycopg.conninfo.make_conninfo(dsn, dbname="c360_migrations")
        with psycopg.connect(other, autocommit=True) as conn:
            assert migrate.upgrade(conn, target=1) == [1]
            schema_0001 = _schema(conn)
            assert 2 in migrate.upgrade(conn)
            schema_0002 = _schema(conn)
            newer = sorted(migrate.applied(conn), reverse=True)[:-1]

            assert migrate.downgrade(conn, 1) == newer
            assert _schema(conn) == schema_0001
            migrate.upgrade(conn)
            assert _schema(conn) == schema_0002
    finally:
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute("DROP DATABASE IF EXISTS c360_migrations")


def _schema(conn: psycopg.Connection) -> dict[str, list]:
    """Columns, indexes and constraints of the public schema, in a comparable form."""
    columns = conn.execute(
        "SELECT table_name, column_name, data_type, is_nullable, column_default"
        " FROM information_schema.columns WHERE table_schema = 'public'"
        " AND table_name <> 'schema_migrations' ORDER BY 1, 2"
    ).fetchall()
    indexes = conn.execute(
        "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"
        " AND tablename <> 'schema_migrations' ORDER BY 1, 2"
    ).fetchall()
    constraints = conn.execute(
        "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2"
    ).fetchall()
    return {"columns": columns, "indexes": indexes, "constraints": constraints}
