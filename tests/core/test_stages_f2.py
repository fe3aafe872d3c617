"""F2 on the real PostgreSQL: idempotent on (source, messageId), identifiers normalised."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import msgspec

from c360.adapters.bus import DLQ, ID_RESOLUTION
from c360.events.f1 import IngestContext, ParsedRequest, ingest
from c360.events.model import encode
from c360.stages import f2_persist

RECEIVED = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def accepted(runtime, *events: dict, source: str = "web") -> list[bytes]:
    """Raw Segment events through F1, as the encoded payloads F2 reads from the bus."""
    ctx = IngestContext(source=source, received_at=RECEIVED)
    result = ingest(
        ParsedRequest(events=[encode(e) for e in events]), ctx, runtime.settings, runtime.hooks
    )
    assert not result.rejected, result.rejected
    return [encode(event) for event in result.accepted]


def order(message_id: str, user_id: str, revenue: str, **extra) -> dict:
    return {
        "type": "track",
        "event": "Order Completed",
        "userId": user_id,
        "messageId": message_id,
        "timestamp": "2026-02-01T10:00:00Z",
        "properties": {"revenue": Decimal(revenue)},
        **extra,
    }


def stored(runtime, sql: str, *params) -> list[tuple]:
    with runtime.pool.connection() as conn:
        return conn.execute(sql, params).fetchall()


def test_a_batch_is_stored_one_row_per_event(runtime):
    payloads = accepted(runtime, order("m-1", "u-1", "10.50"), order("m-2", "u-2", "3"))

    inserted = f2_persist.persist(runtime, payloads)

    assert inserted == 2
    assert stored(runtime, "SELECT message_id, user_id, revenue FROM events ORDER BY 1") == [
        ("m-1", "u-1", Decimal("10.50")),
        ("m-2", "u-2", Decimal("3")),
    ]


def test_a_replayed_batch_inserts_nothing_new(runtime):
    payloads = accepted(runtime, order("m-1", "u-1", "10"), order("m-2", "u-1", "20"))
    f2_persist.persist(runtime, payloads)
    before = stored(runtime, "SELECT source, message_id, stored_at, payload FROM events ORDER BY 2")

    inserted = f2_persist.persist(runtime, payloads)

    assert inserted == 0
    assert (
        stored(runtime, "SELECT source, message_id, stored_at, payload FROM events ORDER BY 2")
        == before
    )


def test_the_first_copy_of_a_message_id_wins_even_if_a_later_copy_differs(runtime):
    f2_persist.persist(runtime, accepted(runtime, order("m-1", "u-1", "10")))

    inserted = f2_persist.persist(runtime, accepted(runtime, order("m-1", "u-1", "999")))

    assert inserted == 0
    assert stored(runtime, "SELECT revenue, payload->'properties'->>'revenue' FROM events") == [
        (Decimal("10"), "10")
    ]


def test_duplicates_inside_one_batch_keep_the_first_copy(runtime):
    payloads = accepted(
        runtime,
        order("m-1", "u-1", "10"),
        order("m-1", "u-1", "77"),
        order("m-2", "u-1", "5"),
        order("m-1", "u-1", "88"),
    )

    inserted = f2_persist.persist(runtime, payloads)

    assert inserted == 2
    assert stored(runtime, "SELECT message_id, revenue FROM events ORDER BY 1") == [
        ("m-1", Decimal("10")),
        ("m-2", Decimal("5")),
    ]


def test_the_same_message_id_from_two_sources_is_two_events(runtime):
    f2_persist.persist(runtime, accepted(runtime, order("m-1", "u-1", "10"), source="web"))
    f2_persist.persist(runtime, accepted(runtime, order("m-1", "u-1", "10"), source="ios"))

    assert stored(runtime, "SELECT source FROM events ORDER BY 1") == [("ios",), ("web",)]


def test_identifiers_are_stored_normalised_with_the_raw_value_kept(runtime):
    event = {
        "type": "identify",
        "userId": "  u-42 ",
        "anonymousId": "anon-1",
        "messageId": "m-id",
        "traits": {"email": "  Lan.Nguyen@Example.VN ", "phone": "0912 345 678"},
    }

    f2_persist.persist(runtime, accepted(runtime, event))

    (identifiers,) = stored(runtime, "SELECT identifiers FROM events")[0]
    assert sorted(map(tuple, identifiers)) == [
        ("anonymous_id", "anon-1", "anon-1"),
        ("email", "lan.nguyen@example.vn", "  Lan.Nguyen@Example.VN "),
        ("phone", "+84912345678", "0912 345 678"),
        ("user_id", "u-42", "u-42"),
    ]


def test_placeholder_identifiers_are_not_stored_as_identifiers(runtime):
    event = {
        "type": "identify",
        "userId": "u-1",
        "anonymousId": "undefined",
        "messageId": "m-1",
        "traits": {"email": "not an email", "phone": "null"},
    }

    f2_persist.persist(runtime, accepted(runtime, event))

    (identifiers,) = stored(runtime, "SELECT identifiers FROM events")[0]
    assert [tuple(i[:2]) for i in identifiers] == [("user_id", "u-1")]


def test_every_event_of_a_batch_is_passed_on_for_resolution_even_on_replay(runtime):
    payloads = accepted(runtime, order("m-1", "u-1", "1"), order("m-2", "u-2", "2"))

    f2_persist.persist(runtime, payloads)
    f2_persist.persist(runtime, payloads)

    refs = [tuple(msgspec.json.decode(p)) for p in runtime.bus.read_all(ID_RESOLUTION)]
    assert sorted(refs) == sorted([("web", "m-1"), ("web", "m-2")] * 2)


def test_an_order_with_a_non_numeric_revenue_is_stored_without_revenue(runtime):
    event = order("m-1", "u-1", "0")
    event["properties"] = {"revenue": "12,50 EUR"}

    f2_persist.persist(runtime, accepted(runtime, event))

    revenue, warnings = stored(runtime, "SELECT revenue, warnings FROM events")[0]
    assert revenue is None
    assert any("revenue" in warning for warning in warnings)


def test_a_nul_character_in_event_text_does_not_wedge_the_batch(runtime):
    event = {
        "type": "track",
        "event": "Searched",
        "userId": "u-\u00001",
        "messageId": "m-nul",
        "properties": {"query": "shoes\u0000", "k\u0000": 1},
    }

    f2_persist.persist(runtime, accepted(runtime, event))

    assert stored(runtime, "SELECT message_id, user_id, payload->'properties' FROM events") == [
        ("m-nul", "u-\ufffd1", {"query": "shoes\ufffd", "k\ufffd": 1})
    ]
    assert runtime.bus.read_all(DLQ) == []
