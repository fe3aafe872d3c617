"""Deletion requests on the real store: everything of one person is erased, nothing of anyone
else, the cache entry goes, the lake part is recorded as pending, and it is all audited."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from c360 import audit
from c360.errors import InputError
from c360.events.f1 import IngestContext, ParsedRequest, ingest
from c360.events.model import encode
from c360.governance import deletions
from c360.plugins import channel_webchat as webchat
from c360.profile_service import get_profile
from c360.stages import f2_persist, f3_resolve

TABLES = ("profiles", "identifiers", "events", "consent", "merges")


def run(runtime, *events: dict) -> None:
    ctx = IngestContext(source="web", received_at=datetime(2026, 3, 1, tzinfo=UTC))
    result = ingest(
        ParsedRequest(events=[encode(e) for e in events]), ctx, runtime.settings, runtime.hooks
    )
    assert not result.rejected, result.rejected
    f2_persist.persist(runtime, [encode(event) for event in result.accepted])
    f3_resolve.resolve(runtime, [encode(["web", e.message_id]) for e in result.accepted])


def track(mid: str, user: str | None = None, anon: str | None = None, **extra) -> dict:
    event = {"type": "track", "event": "Viewed", "messageId": mid, **extra}
    if user:
        event["userId"] = user
    if anon:
        event["anonymousId"] = anon
    return event


def counts(runtime) -> dict[str, int]:
    with runtime.pool.connection() as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}


def setup_two_people(runtime) -> None:
    consent = {"context": {"consent": {"categoryPreferences": {"Email": True}}}}
    run(runtime, track("a1", anon="dev-lan", **consent))
    identify = {"type": "identify", "messageId": "a0", "userId": "lan"}
    run(runtime, {**identify, "traits": {"email": "lan@example.vn"}})
    run(runtime, track("a2", user="lan", anon="dev-lan"))  # the device's profile merges
    run(runtime, track("b1", user="minh", **consent), track("b2", user="minh"))
    with runtime.pool.connection() as conn:
        conn.execute(
            "INSERT INTO lake_index VALUES ('web', 'a1', %s)",
            ("dt=2026-03-01/event_type=track/x.parquet",),
        )


def test_a_deletion_erases_the_person_and_nothing_else(runtime):
    setup_two_people(runtime)
    lan = get_profile(runtime, "email:lan@example.vn")
    assert runtime.cache.get(lan["profile_id"]) is not None
    before = counts(runtime)
    with runtime.pool.connection() as conn:
        request = deletions.request_deletion(conn, "user:dpo", "lan@example.vn")
    assert request["status"] == "received"

    done = deletions.run_deletion(runtime, request["request_id"], actor="user:dpo")

    # the database part is done, but lan's event a1 is still in a lake file
    assert done["status"] == "lake_pending" and done["finished_at"] is not None
    after = counts(runtime)
    # lan: two profiles (the device's and the user's, merged), 3 identifiers, 3 events,
    # 1 consent row, 1 merge; minh keeps 1 profile, 1 identifier, 2 events, 1 consent row
    assert before == {"profiles": 3, "identifiers": 4, "events": 5, "consent": 2, "merges": 1}
    assert after == {"profiles": 1, "identifiers": 1, "events": 2, "consent": 1, "merges": 0}
    assert done["counts"]["profiles"] == 2 and done["counts"]["events"] == 3
    assert done["counts"]["lake"] == {
        "status": "pending",
        "files": ["dt=2026-03-01/event_type=track/x.parquet"],
    }
    assert runtime.cache.get(lan["profile_id"]) is None
    assert get_profile(runtime, "lan@example.vn") is None
    assert get_profile(runtime, "minh") is not None
    with runtime.pool.connection() as conn:
        actions = [e.action for e in audit.entries(conn, action_prefix="deletion.")]
        assert actions == ["deletion.run", "deletion.request"]
        assert all("lan@" not in str(e.detail) for e in audit.entries(conn))
        (listed,) = deletions.deletion_requests(conn)
        fetched = deletions.get_request(conn, request["request_id"])
    assert listed["request_id"] == request["request_id"]
    assert listed["status"] == fetched["status"] == "lake_pending"
    # the finished request no longer names her in full (the audit log never did)
    assert listed["reference"] == "l***@example.vn"


def test_a_deletion_whose_events_never_reached_the_lake_is_done(runtime):
    setup_two_people(runtime)
    with runtime.pool.connection() as conn:
        request = deletions.request_deletion(conn, "user:dpo", "minh")  # no lake_index rows

    done = deletions.run_deletion(runtime, request["request_id"])

    assert done["status"] == "done"
    assert done["counts"]["lake"] == {"status": "done", "files": []}
    with pytest.raises(InputError) as again:
        deletions.run_deletion(runtime, request["request_id"])
    assert again.value.code == "deletion_not_runnable"


def test_a_saved_segment_loses_the_erased_person_from_its_count(runtime):
    from c360.segments import service

    setup_two_people(runtime)
    everyone = {"field": "event_count", "op": ">=", "value": 1}
    with runtime.pool.connection() as conn:
        segment_id = service.save(conn, "user:lan", "Everyone", everyone)["segment_id"]
        before = _member_count(conn, segment_id)
        request = deletions.request_deletion(conn, "user:dpo", "lan@example.vn")

    deletions.run_deletion(runtime, request["request_id"])

    with runtime.pool.connection() as conn:
        after = _member_count(conn, segment_id)
        members = conn.execute(
            "SELECT count(*) FROM analytics.segment_members WHERE segment_id = %s", (segment_id,)
        ).fetchone()[0]
    assert (before, after, members) == (2, 1, 1)  # lan and minh, then minh alone


def _member_count(conn, segment_id: int) -> int:
    return conn.execute(
        "SELECT member_count FROM analytics.segments WHERE segment_id = %s", (segment_id,)
    ).fetchone()[0]


def test_an_unknown_reference_is_not_found_with_nothing_erased(runtime):
    setup_two_people(runtime)
    with runtime.pool.connection() as conn:
        request = deletions.request_deletion(conn, "user:dpo", "nobody@example.vn")
    done = deletions.run_deletion(runtime, request["request_id"])
    assert done["status"] == "not_found" and done["counts"] == {"profiles": 0}
    assert counts(runtime)["profiles"] == 3


def test_requests_are_checked_and_run_once(runtime):
    with runtime.pool.connection() as conn:
        with pytest.raises(InputError) as error:
            deletions.request_deletion(conn, "user:dpo", "  ")
        assert error.value.code == "invalid_reference"
        request = deletions.request_deletion(conn, "user:dpo", "lan")
    with pytest.raises(deletions.UnknownRequest):
        deletions.run_deletion(runtime, 987_654)
    deletions.run_deletion(runtime, request["request_id"])
    with pytest.raises(InputError) as error:
        deletions.run_deletion(runtime, request["request_id"])
    assert error.value.code == "deletion_not_runnable"


def test_what_was_sent_to_the_person_and_what_they_sent_goes_with_them(runtime):
    setup_two_people(runtime)
    identify = {"type": "identify", "messageId": "a3", "userId": "lan"}
    run(runtime, {**identify, "traits": {"phone": "+84901234567"}})
    lan = get_profile(runtime, "lan")
    minh = get_profile(runtime, "minh")
    with runtime.pool.connection() as conn:
        conn.execute(
            "INSERT INTO agents.conversations (conversation_id, agent, profile_id, channel,"
            " address) VALUES (gen_random_uuid(), 'shop', %s, 'webchat', 'chat-lan')",
            (lan["profile_id"],),
        )
        sent = [
            ("email", "lan@example.vn", lan["profile_id"]),  # a notification
            ("email", "LAN@Example.vn", None),  # an operator's mail before she was known
            ("sms", "+84901234567", None),  # an agent's reply to her text
            ("email", "minh@example.vn", minh["profile_id"]),
            ("sms", "+84900000000", None),
        ]
        for number, (channel, address, profile_id) in enumerate(sent):
            (delivery_id,) = conn.execute(
                "INSERT INTO channels.deliveries (idempotency_key, channel, address, profile_id,"
                " purpose, payload, next_attempt_at) VALUES (%s, %s, %s, %s, 'orders', '{}',"
                " now()) RETURNING delivery_id",
                (f"k{number}", channel, address, profile_id),
            ).fetchone()
            conn.execute(
                "INSERT INTO channels.delivery_events (delivery_id, kind) VALUES (%s, 'sent')",
                (delivery_id,),
            )
        received = [("sms", "+84901234567"), ("webchat", "chat-lan"), ("sms", "+84900000000")]
        for number, (channel, sender) in enumerate(received):
            conn.execute(
                "INSERT INTO channels.inbound (channel, external_id, sender, message,"
                " received_at, lease_until) VALUES (%s, %s, %s, '{}', now(), now())",
                (channel, f"m{number}", sender),
            )
        # an operator's test send to her address (no profile named) and one to minh's
        for to in ("Lan@example.vn", "minh@example.vn"):
            conn.execute(
                "INSERT INTO notify.sends (trigger, trigger_key, channel, purpose, address,"
                " state, scheduled_at, facts) VALUES ('test', %s, 'email', 'test', %s,"
                " 'enqueued', now(), '{}')",
                (f"test:{to}", to),
            )
        request = deletions.request_deletion(conn, "user:dpo", "lan")
    # her web-chat transcript, kept in Valkey for the widget
    transcript = webchat.history_key("chat-lan")
    runtime.valkey.xadd(transcript, {"role": "customer", "text": "Tôi là Lan, 0901234567"})
    runtime.valkey.xadd(webchat.history_key("chat-minh"), {"role": "customer", "text": "hi"})

    done = deletions.run_deletion(runtime, request["request_id"])

    assert (done["counts"]["deliveries"], done["counts"]["inbound"]) == (3, 2)
    assert done["counts"]["test_sends"] == 1 and "webchat" not in done["counts"]
    assert not runtime.valkey.exists(transcript)
    assert runtime.valkey.exists(webchat.history_key("chat-minh"))
    with runtime.pool.connection() as conn:
        kept = conn.execute(
            "SELECT channel, address FROM channels.deliveries ORDER BY delivery_id"
        ).fetchall()
        history = conn.execute("SELECT count(*) FROM channels.delivery_events").fetchone()[0]
        senders = conn.execute("SELECT sender FROM channels.inbound").fetchall()
        chats = conn.execute("SELECT count(*) FROM agents.conversations").fetchone()[0]
    assert kept == [("email", "minh@example.vn"), ("sms", "+84900000000")]
    assert history == 2 and senders == [("+84900000000",)] and chats == 0
    with runtime.pool.connection() as conn:
        tests = conn.execute("SELECT address FROM notify.sends").fetchall()
    assert tests == [("minh@example.vn",)]
