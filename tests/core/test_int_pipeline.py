"""The whole path on real engines: HTTP gateway -> bus -> F2 -> F3 and the lake -> F5 API,
with stages fed from the bus by consumer groups, and F3 batches racing each other."""

from __future__ import annotations

import base64
import random
import threading
from collections import Counter, defaultdict
from decimal import Decimal

from c360.adapters.bus import ID_RESOLUTION, RAW_EVENTS
from c360.stages import f2_persist, f3_resolve, lake_sink

AUTH = {"Authorization": "Basic " + base64.b64encode(b"test-write-key-1:").decode()}
TOKEN = {"Authorization": "Bearer test-api-token"}


def drain(runtime, topic: str, group: str, stage) -> int:
    """Feed every entry of a topic to a stage through a consumer group, acknowledging after.
    Each entry is named by stream and entry id (entry ids repeat across partitions)."""
    moved = 0
    while True:
        deliveries = runtime.bus.consume(topic, group, "test-worker", count=50, block_ms=10)
        if not deliveries:
            return moved
        for delivery in deliveries:
            stage(f"{delivery.stream}-{delivery.entry_id}".replace(":", "-"), delivery.payloads)
            moved += len(delivery.payloads)
        runtime.bus.ack(group, deliveries)


def test_events_sent_over_http_become_profiles_and_lake_rows_exactly_once(client, runtime):
    rng = random.Random(7)
    users = [f"u-{n}" for n in range(8)]
    sent, orders, revenue = [], Counter(), defaultdict(Decimal)
    for n in range(120):
        user = rng.choice(users)
        cents = rng.randrange(100, 50_000)
        amount = Decimal(cents) / 100
        event = {
            "type": "track",
            "event": "Order Completed",
            "userId": user,
            "messageId": f"order-{n}",
            "timestamp": f"2026-01-{rng.randrange(1, 29):02d}T12:00:00Z",
            "properties": {"revenue": str(amount)},
        }
        sent.append(event)
        orders[user] += 1
        revenue[user] += amount
    batches = [sent[i : i + 25] for i in range(0, len(sent), 25)]
    for batch in batches + batches[:2]:  # the client retries two batches
        response = client.post("/v1/batch", json={"batch": batch}, headers=AUTH)
        assert response.status_code == 200, response.text

    drain(runtime, RAW_EVENTS, "f2", lambda _n, payloads: f2_persist.persist(runtime, payloads))
    drain(runtime, RAW_EVENTS, "lake", lambda name, p: lake_sink.sink(runtime, f"b-{name}", p))
    drain(runtime, ID_RESOLUTION, "f3", lambda _n, payloads: f3_resolve.resolve(runtime, payloads))

    for user in users:
        response = client.get(f"/v1/profiles/{user}", headers=TOKEN)
        assert response.status_code == 200, response.text
        profile = response.json()
        assert profile["order_count"] == orders[user], user
        assert Decimal(str(profile["revenue"])) == revenue[user], user
    lake = runtime.lake_query.query("SELECT count(), uniqExact(message_id) FROM {lake}")
    assert [tuple(row) for row in lake] == [(120, 120)]


def test_racing_f3_batches_make_one_profile_per_person_and_exact_totals(runtime):
    from datetime import UTC, datetime

    from c360.events.f1 import IngestContext, ParsedRequest, ingest
    from c360.events.model import encode

    rng = random.Random(11)
    people = [(f"u-{n}", f"anon-{n}", f"p{n}@example.vn") for n in range(6)]
    events, orders, revenue = [], Counter(), defaultdict(Decimal)
    for n in range(90):
        user, anon, email = rng.choice(people)
        shape = rng.randrange(3)
        if shape == 0:
            event = {"type": "page", "anonymousId": anon, "messageId": f"m-{n}"}
        elif shape == 1:
            event = {
                "type": "identify",
                "userId": user,
                "anonymousId": anon,
                "messageId": f"m-{n}",
                "traits": {"email": email},
            }
        else:
            amount = Decimal(rng.randrange(1, 10_000)) / 100
            event = {
                "type": "track",
                "event": "Order Completed",
                "userId": user,
                "messageId": f"m-{n}",
                "properties": {"revenue": str(amount)},
            }
            orders[user] += 1
            revenue[user] += amount
        events.append(event)
    ctx = IngestContext(source="web", received_at=datetime(2026, 3, 1, tzinfo=UTC))
    result = ingest(
        ParsedRequest(events=[encode(e) for e in events]), ctx, runtime.settings, runtime.hooks
    )
    f2_persist.persist(runtime, [encode(e) for e in result.accepted])
    refs = [encode(["web", e["messageId"]]) for e in events]
    chunks = [refs[i::6] for i in range(6)] + [refs[::-1][i::6] for i in range(6)]
    errors: list[BaseException] = []

    def work(chunk: list[bytes]) -> None:
        try:
            f3_resolve.resolve(runtime, chunk)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(chunk,)) for chunk in chunks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    with runtime.pool.connection() as conn:
        unresolved = conn.execute("SELECT count(*) FROM events WHERE profile_id IS NULL").fetchone()
        owners = dict(
            conn.execute(
                "SELECT i.id_value, p.profile_id FROM identifiers i JOIN profiles p USING"
                " (profile_id) WHERE i.id_type = 'user_id' AND p.merged_into IS NULL"
            ).fetchall()
        )
        stats = {
            row[0]: (row[1], row[2])
            for row in conn.execute(
                "SELECT profile_id, order_count, revenue FROM profiles WHERE merged_into IS NULL"
            )
        }
        event_total = conn.execute(
            "SELECT sum(event_count) FROM profiles WHERE merged_into IS NULL"
        ).fetchone()
    assert unresolved == (0,)
    assert event_total == (90,)
    for user, *_ in people:
        if user in owners:
            assert stats[owners[user]] == (orders[user], revenue[user]), user
    assert sum(order for order, _ in stats.values()) == sum(orders.values())
