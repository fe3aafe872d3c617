"""Identity over HTTP: merge history with evidence, undo, the review queue, and every error a
client can cause, each with its code and a message that says what to change."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from c360 import merges
from c360.events.f1 import IngestContext, ParsedRequest, ingest
from c360.events.model import encode
from c360.stages import f2_persist, f3_resolve

TOKEN = {"Authorization": "Bearer test-api-token"}
RECEIVED = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def run(runtime, *events: dict) -> None:
    ctx = IngestContext(source="web", received_at=RECEIVED)
    result = ingest(
        ParsedRequest(events=[encode(e) for e in events]), ctx, runtime.settings, runtime.hooks
    )
    assert not result.rejected, result.rejected
    f2_persist.persist(runtime, [encode(e) for e in result.accepted])
    f3_resolve.resolve(runtime, [encode([e.source, e.message_id]) for e in result.accepted])


def order(message_id: str, revenue: str, **ids: str) -> dict:
    return {
        "type": "track",
        "event": "Order Completed",
        "messageId": message_id,
        "timestamp": "2026-02-02T10:00:00Z",
        "properties": {"revenue": revenue},
        **ids,
    }


def profile_id(runtime, id_type: str, value: str) -> str:
    with runtime.pool.connection() as conn:
        (found,) = conn.execute(
            "SELECT profile_id FROM identifiers WHERE id_type = %s AND id_value = %s",
            (id_type, value),
        ).fetchone()
    return str(found)


@pytest.fixture
def merged(runtime, client) -> dict:
    """Lan (userId, one order of 40) and an anonymous laptop (one order of 2.5), merged by
    F3 through an identify carrying both; the ids and the merge id."""
    run(runtime, order("m-1", "40", userId="u-lan"))
    run(runtime, order("m-2", "2.5", anonymousId="laptop-1"))
    lan, laptop = (
        profile_id(runtime, "user_id", "u-lan"),
        profile_id(runtime, "anonymous_id", "laptop-1"),
    )
    run(
        runtime,
        {
            "type": "identify",
            "userId": "u-lan",
            "anonymousId": "laptop-1",
            "messageId": "m-3",
            "timestamp": "2026-02-03T10:00:00Z",
            "traits": {"name": "Lan"},
        },
    )
    with runtime.pool.connection() as conn:
        (merge_id,) = conn.execute("SELECT merge_id FROM merges").fetchone()
    return {"lan": lan, "laptop": laptop, "merge_id": merge_id}


def test_a_profiles_merge_history_shows_the_evidence(client, merged):
    answer = client.get("/v1/identity/profiles/laptop-1/merges", headers=TOKEN)

    assert answer.status_code == 200
    body = answer.json()
    assert body["profile_id"] == merged["lan"] and body["count"] == 1
    (merge,) = body["merges"]
    assert merge["merge_id"] == merged["merge_id"]
    assert (merge["surviving_id"], merge["merged_id"]) == (merged["lan"], merged["laptop"])
    assert merge["rule"] == "shared_anonymous_id"
    assert merge["evidence"]["matched"] == {"type": "anonymous_id", "value": "laptop-1"}
    assert merge["source_records"] == [["web", "m-3"]]
    assert merge["created_at"] and merge["undone_at"] is None


def test_the_merge_history_of_an_unknown_profile_is_a_404(client, merged):
    answer = client.get("/v1/identity/profiles/nobody/merges", headers=TOKEN)

    assert answer.status_code == 404
    assert answer.json()["code"] == "not_found" and "nobody" in answer.json()["message"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/v1/identity/profiles/u-lan/merges"),
        ("post", "/v1/identity/merges/1/undo"),
        ("get", "/v1/identity/reviews"),
        ("post", "/v1/identity/reviews/1"),
    ],
)
def test_identity_routes_need_a_token(client, method, path):
    answer = getattr(client, method)(path, headers={"Authorization": "Bearer wrong"})

    assert answer.status_code == 401 and answer.json()["code"] == "invalid_token"


def test_undo_splits_the_profiles_and_reads_are_not_stale(runtime, client, merged):
    assert client.get("/v1/profiles/laptop-1", headers=TOKEN).json()["profile_id"] == merged["lan"]

    answer = client.post(f"/v1/identity/merges/{merged['merge_id']}/undo", headers=TOKEN)

    assert answer.status_code == 200
    body = answer.json()
    assert (body["surviving_id"], body["merged_id"]) == (merged["lan"], merged["laptop"])
    laptop = client.get("/v1/profiles/laptop-1", headers=TOKEN).json()
    assert laptop["profile_id"] == merged["laptop"]
    assert laptop["order_count"] == 1 and Decimal(str(laptop["revenue"])) == Decimal("2.5")
    lan = client.get("/v1/profiles/u-lan", headers=TOKEN).json()
    assert lan["event_count"] == 2 and Decimal(str(lan["revenue"])) == Decimal("40")
    history = client.get(f"/v1/identity/profiles/{merged['laptop']}/merges", headers=TOKEN)
    assert history.json()["merges"][0]["undone_by"] == "api"


def test_undoing_a_merge_twice_is_a_409(client, merged):
    client.post(f"/v1/identity/merges/{merged['merge_id']}/undo", headers=TOKEN)

    answer = client.post(f"/v1/identity/merges/{merged['merge_id']}/undo", headers=TOKEN)

    assert answer.status_code == 409
    assert answer.json()["code"] == "already_undone" and "was undone" in answer.json()["message"]


@pytest.mark.parametrize("merge_id", ["999999", "0", "-5", str(2**63), str(10**30)])
def test_undoing_an_unknown_merge_is_a_404(client, merged, merge_id):
    answer = client.post(f"/v1/identity/merges/{merge_id}/undo", headers=TOKEN)

    assert answer.status_code == 404 and answer.json()["code"] == "unknown_merge"


def test_a_merge_id_that_is_not_a_number_names_no_route(client):
    answer = client.post("/v1/identity/merges/abc/undo", headers=TOKEN)

    assert answer.status_code == 404 and answer.json()["code"] == "not_found"


@pytest.fixture
def queued(runtime, client) -> dict:
    """Two anonymous profiles queued for review; their ids and the review id."""
    run(runtime, order("r-1", "10", anonymousId="phone-1"))
    run(runtime, order("r-2", "20", anonymousId="tablet-2"))
    a, b = (
        profile_id(runtime, "anonymous_id", "phone-1"),
        profile_id(runtime, "anonymous_id", "tablet-2"),
    )
    with runtime.pool.connection() as conn:
        review_id = merges.enqueue_review(conn, a, b, 0.81, {"fields": ["name", "city"]})
    return {"a": a, "b": b, "review_id": review_id}


def test_the_review_queue_lists_pending_pairs(client, queued):
    answer = client.get("/v1/identity/reviews", headers=TOKEN)

    assert answer.status_code == 200
    (review,) = answer.json()["reviews"]
    assert review["review_id"] == queued["review_id"] and review["score"] == 0.81
    assert review["evidence"] == {"fields": ["name", "city"]}
    assert client.get("/v1/identity/reviews?status=accepted", headers=TOKEN).json()["count"] == 0


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("status=maybe", "invalid_status"),
        ("limit=0", "invalid_page"),
        ("offset=-1", "invalid_page"),
        ("limit=x", "invalid_page"),
        ("sort=score", "unknown_parameter"),
    ],
)
def test_a_bad_review_query_is_a_400_naming_the_fix(client, query, code):
    answer = client.get(f"/v1/identity/reviews?{query}", headers=TOKEN)

    assert answer.status_code == 400 and answer.json()["code"] == code


def test_accepting_a_review_merges_the_pair_and_reads_follow(client, queued):
    answer = client.post(
        f"/v1/identity/reviews/{queued['review_id']}",
        headers=TOKEN,
        json={"decision": "accept", "note": "same card"},
    )

    assert answer.status_code == 200
    body = answer.json()
    assert body["review"]["status"] == "accepted" and body["review"]["note"] == "same card"
    (merged,) = body["profiles"]
    assert Decimal(str(merged["revenue"])) == Decimal("30") and merged["order_count"] == 2
    phone = client.get("/v1/profiles/phone-1", headers=TOKEN).json()
    tablet = client.get("/v1/profiles/tablet-2", headers=TOKEN).json()
    assert phone["profile_id"] == tablet["profile_id"] == merged["profile_id"]
    history = client.get(f"/v1/identity/profiles/{queued['a']}/merges", headers=TOKEN).json()
    assert history["merges"][0]["rule"] == "review"
    assert history["merges"][0]["evidence"]["review"]["note"] == "same card"


def test_rejecting_a_review_keeps_the_pair_apart(runtime, client, queued):
    answer = client.post(
        f"/v1/identity/reviews/{queued['review_id']}", headers=TOKEN, json={"decision": "reject"}
    )

    assert answer.status_code == 200 and answer.json()["review"]["status"] == "rejected"
    with runtime.pool.connection() as conn, pytest.raises(merges.MergeRefused):
        merges.merge_profiles(conn, queued["a"], queued["b"], "fellegi_sunter", {})


def test_deciding_a_review_twice_is_a_409(client, queued):
    path = f"/v1/identity/reviews/{queued['review_id']}"
    client.post(path, headers=TOKEN, json={"decision": "reject"})

    answer = client.post(path, headers=TOKEN, json={"decision": "accept"})

    assert answer.status_code == 409 and answer.json()["code"] == "already_decided"


def test_an_accept_the_guards_refuse_is_a_409_and_stays_pending(runtime, client):
    run(runtime, order("g-1", "1", userId="u-1"))
    run(runtime, order("g-2", "1", userId="u-2"))
    one, two = profile_id(runtime, "user_id", "u-1"), profile_id(runtime, "user_id", "u-2")
    with runtime.pool.connection() as conn:
        review_id = merges.enqueue_review(conn, one, two, 0.9, {})

    answer = client.post(
        f"/v1/identity/reviews/{review_id}", headers=TOKEN, json={"decision": "accept"}
    )

    assert answer.status_code == 409 and answer.json()["code"] == "merge_refused"
    assert "user_id" in answer.json()["message"]
    assert client.get("/v1/identity/reviews", headers=TOKEN).json()["count"] == 1


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"decision": "maybe"}, "invalid_decision"),
        ({}, "invalid_decision"),
        (["accept"], "invalid_decision"),
        ({"decision": "accept", "reviewer": "x"}, "unknown_field"),
        ({"decision": "accept", "note": 5}, "invalid_note"),
        ({"decision": "accept", "note": "x" * 2001}, "invalid_note"),
    ],
)
def test_a_bad_decision_is_a_400_naming_the_fix(client, queued, body, code):
    answer = client.post(f"/v1/identity/reviews/{queued['review_id']}", headers=TOKEN, json=body)

    assert answer.status_code == 400 and answer.json()["code"] == code


def test_a_decision_that_is_not_json_is_a_400(client, queued):
    answer = client.post(
        f"/v1/identity/reviews/{queued['review_id']}",
        headers={**TOKEN, "Content-Type": "application/json"},
        content=b"{accept",
    )

    assert answer.status_code == 400 and answer.json()["code"] == "bad_request"
    assert "JSON" in answer.json()["message"]


@pytest.mark.parametrize("review_id", ["424242", "0", str(2**64)])
def test_deciding_an_unknown_review_is_a_404(client, review_id):
    answer = client.post(
        f"/v1/identity/reviews/{review_id}", headers=TOKEN, json={"decision": "accept"}
    )

    assert answer.status_code == 404 and answer.json()["code"] == "unknown_review"
