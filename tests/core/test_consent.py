"""Consent from Segment's context.consent.categoryPreferences, recorded by F3 on the real
store: the later event wins whatever order events arrive in, merges fold it, coverage counts."""

from __future__ import annotations

from datetime import UTC, datetime

from c360.events.f1 import IngestContext, ParsedRequest, ingest
from c360.events.model import encode
from c360.governance import consent
from c360.stages import f2_persist, f3_resolve


def run(runtime, *events: dict) -> None:
    ctx = IngestContext(source="web", received_at=datetime(2026, 3, 1, tzinfo=UTC))
    result = ingest(
        ParsedRequest(events=[encode(e) for e in events]), ctx, runtime.settings, runtime.hooks
    )
    assert not result.rejected, result.rejected
    f2_persist.persist(runtime, [encode(event) for event in result.accepted])
    f3_resolve.resolve(runtime, [encode(["web", e.message_id]) for e in result.accepted])


def track(mid: str, ts: str, prefs: dict, user: str = "u1", anon: str | None = None) -> dict:
    event = {
        "type": "track",
        "event": "Viewed",
        "messageId": mid,
        "timestamp": ts,
        "context": {"consent": {"categoryPreferences": prefs}},
    }
    if user:
        event["userId"] = user
    if anon:
        event["anonymousId"] = anon
    return event


def choices(runtime, user: str = "u1") -> dict[str, bool]:
    with runtime.pool.connection() as conn:
        (profile_id,) = conn.execute(
            "SELECT profile_id FROM identifiers WHERE id_type = 'user_id' AND id_value = %s",
            (user,),
        ).fetchone()
    return {row["purpose"]: row["granted"] for row in consent.consent_for(runtime, profile_id)}


def test_the_later_event_wins_across_batches_in_any_order(runtime):
    run(runtime, track("m2", "2026-02-02T00:00:00Z", {"Advertising": False}))
    run(runtime, track("m1", "2026-02-01T00:00:00Z", {"Advertising": True, "Analytics": True}))
    assert choices(runtime) == {"Advertising": False, "Analytics": True}
    run(runtime, track("m3", "2026-02-03T00:00:00Z", {"Advertising": True}))
    assert choices(runtime) == {"Advertising": True, "Analytics": True}


def test_the_later_event_wins_within_a_batch_and_a_replay_changes_nothing(runtime):
    events = [
        track("m3", "2026-02-01T00:00:00Z", {"Email": True}),
        track("m1", "2026-02-05T00:00:00Z", {"Email": False}),
        track("m2", "2026-02-01T00:00:00Z", {"Email": "maybe"}),  # not a choice
    ]
    run(runtime, *events)
    assert choices(runtime) == {"Email": False}
    run(runtime, *events)
    assert choices(runtime) == {"Email": False}


def test_a_merge_folds_consent_into_the_survivor_by_the_same_rule(runtime):
    run(runtime, track("a1", "2026-02-04T00:00:00Z", {"SMS": True}, user="", anon="dev-1"))
    run(runtime, track("b1", "2026-02-02T00:00:00Z", {"SMS": False, "Email": True}))
    run(runtime, track("c1", "2026-02-03T00:00:00Z", {}, user="u1", anon="dev-1"))  # merges
    assert choices(runtime) == {"SMS": True, "Email": True}
    with runtime.pool.connection() as conn:
        assert conn.execute("SELECT count(*) FROM consent").fetchone()[0] == 2


def test_coverage_counts_granted_denied_and_unknown_per_purpose(runtime):
    run(
        runtime,
        track("m1", "2026-02-01T00:00:00Z", {"Advertising": True}, user="u1"),
        track("m2", "2026-02-01T00:00:00Z", {"Advertising": False, "SMS": True}, user="u2"),
        track("m3", "2026-02-01T00:00:00Z", {"Advertising": True}, user="u3"),
        track("m4", "2026-02-01T00:00:00Z", {}, user="u4"),
    )
    assert consent.coverage(runtime) == [
        {"purpose": "Advertising", "granted": 2, "denied": 1, "unknown": 1, "profiles": 4},
        {"purpose": "SMS", "granted": 1, "denied": 0, "unknown": 3, "profiles": 4},
    ]


def test_rebuilding_from_stored_events_gives_what_f3_recorded(runtime):
    run(
        runtime,
        track("m2", "2026-02-02T00:00:00.5Z", {"Advertising": False, " SMS ": True}),
        track("m1", "2026-02-01T00:00:00Z", {"Advertising": True, "Email": True}),
        track("m3", "2026-02-01T00:00:00Z", {"Email": False}, user="u2"),
        {**track("m4", "2026-02-01T00:00:00Z", {}), "context": {"consent": "yes"}},
    )
    sql = "SELECT * FROM consent ORDER BY profile_id, purpose"
    with runtime.pool.connection() as conn, conn.cursor() as cur:
        recorded = cur.execute(sql).fetchall()
        ids = [row[0] for row in cur.execute("SELECT profile_id FROM profiles").fetchall()]
        consent.rebuild(cur, ids)
        assert cur.execute(sql).fetchall() == recorded
    assert choices(runtime) == {"Advertising": False, "Email": True, "SMS": True}


def test_a_choice_written_as_a_string_or_0_1_counts_and_rebuilds_the_same(runtime):
    # consent managers and form posts send strings: a withdrawal written "false" withdraws
    run(runtime, track("m1", "2026-02-01T00:00:00Z", {"marketing": True, "sms": True}))
    run(
        runtime,
        track(
            "m2",
            "2026-02-02T00:00:00Z",
            {"marketing": "false", "sms": 0, "email": " Yes ", "push": "maybe", "ads": 2},
        ),
    )

    assert choices(runtime) == {"marketing": False, "sms": False, "email": True}
    sql = "SELECT * FROM consent ORDER BY profile_id, purpose"
    with runtime.pool.connection() as conn, conn.cursor() as cur:
        recorded = cur.execute(sql).fetchall()
        ids = [row[0] for row in cur.execute("SELECT profile_id FROM profiles").fetchall()]
        consent.rebuild(cur, ids)
        assert cur.execute(sql).fetchall() == recorded


def test_a_value_that_is_no_choice_is_accepted_with_a_warning_naming_it(runtime):
    ctx = IngestContext(source="web", received_at=datetime(2026, 3, 1, tzinfo=UTC))
    events = [track("m1", "2026-02-01T00:00:00Z", {"marketing": "false", "push": "maybe"})]

    result = ingest(
        ParsedRequest(events=[encode(e) for e in events]), ctx, runtime.settings, runtime.hooks
    )

    [event] = result.accepted
    assert event.warnings == [
        "consent for 'push' is 'maybe', not true or false; that choice was not recorded"
    ]
