"""The Valkey Streams bus on the real Valkey: keyed order, consumer groups, redelivery."""

from __future__ import annotations

import asyncio
import base64
from collections import defaultdict

import pytest
import redis.asyncio as aioredis

from c360.adapters.bus import RAW_EVENTS
from c360.adapters.bus_valkey import AsyncValkeyBus, ValkeyBus, stream_names

TOPIC = RAW_EVENTS
GROUP = "test-stage"


def where_each_message_went(runtime, topic: str = TOPIC) -> dict[str, list[bytes]]:
    """Stream name -> payloads in stream order, read straight from Valkey."""
    found: dict[str, list[bytes]] = {}
    for stream in stream_names(topic, runtime.settings.bus_partitions):
        found[stream] = [
            payload
            for _id, fields in runtime.valkey.xrange(stream)
            for payload in fields[b"d"].split(b"\n")
        ]
    return found


def message(key: str, n: int) -> tuple[str, bytes]:
    return key, f'{{"key": "{key}", "n": {n}}}'.encode()


def test_keyed_messages_for_one_customer_land_in_one_partition_in_order(runtime):
    keys = [f"customer-{k}" for k in range(12)] + ["Trần-Lan", "lan@example.vn"]
    sent: dict[str, list[bytes]] = defaultdict(list)
    for round_ in range(5):
        batch = [message(key, round_ * 10 + i) for key in keys for i in range(3)]
        runtime.bus.publish(TOPIC, batch)
        for key, payload in batch:
            sent[key].append(payload)

    placed = where_each_message_went(runtime)

    for key in keys:
        holding = [stream for stream, payloads in placed.items() if sent[key][0] in payloads]
        assert len(holding) == 1, key
        in_stream = [p for p in placed[holding[0]] if p in set(sent[key])]
        assert in_stream == sent[key], key
    assert sum(1 for payloads in placed.values() if payloads) > 1  # keys spread out


def test_the_gateway_and_the_stages_put_a_key_in_the_same_partition(runtime):
    async def publish_async() -> None:
        client = aioredis.Redis.from_url(runtime.settings.valkey_url)
        try:
            await AsyncValkeyBus(client, runtime.settings.bus_partitions).publish(
                TOPIC, [message(f"k-{n}", 1) for n in range(20)]
            )
        finally:
            await client.aclose()

    asyncio.run(publish_async())
    runtime.bus.publish(TOPIC, [message(f"k-{n}", 2) for n in range(20)])

    placed = where_each_message_went(runtime)
    for n in range(20):
        first, second = message(f"k-{n}", 1)[1], message(f"k-{n}", 2)[1]
        (stream,) = [s for s, payloads in placed.items() if first in payloads]
        assert placed[stream].index(first) < placed[stream].index(second)


def test_events_for_one_customer_sent_over_http_stay_in_one_partition_in_order(client, runtime):
    auth = {"Authorization": "Basic " + base64.b64encode(b"test-write-key-1:").decode()}
    for request in range(4):
        batch = [
            {"type": "track", "userId": user, "event": "E", "messageId": f"{user}-{request}-{i}"}
            for i in range(3)
            for user in ("u-1", "u-2", "u-3", "u-4", "u-5")
        ]
        assert client.post("/v1/batch", json={"batch": batch}, headers=auth).status_code == 200

    placed = where_each_message_went(runtime)
    for user in ("u-1", "u-2", "u-3", "u-4", "u-5"):
        expected = [f"{user}-{r}-{i}" for r in range(4) for i in range(3)]
        holding = {
            stream: [p for p in payloads if f'"messageId":"{user}-'.encode() in p]
            for stream, payloads in placed.items()
        }
        (stream,) = [s for s, found in holding.items() if found]
        got = [p.split(b'"messageId":"')[1].split(b'"')[0].decode() for p in holding[stream]]
        assert got == expected


def test_a_consumer_gets_every_message_once_and_nothing_after_ack(runtime):
    runtime.bus.publish(TOPIC, [message(f"k-{n}", n) for n in range(50)])

    deliveries = runtime.bus.consume(TOPIC, GROUP, "worker-1", count=100, block_ms=10)
    runtime.bus.ack(GROUP, deliveries)

    got = sorted(p for d in deliveries for p in d.payloads)
    assert got == sorted(message(f"k-{n}", n)[1] for n in range(50))
    assert runtime.bus.consume(TOPIC, GROUP, "worker-1", count=100, block_ms=10) == []
    assert runtime.bus.backlog(TOPIC, GROUP) == 0


def test_consume_returns_own_pending_entries_again_after_a_crash(runtime):
    runtime.bus.publish(TOPIC, [message("k-1", 1), message("k-2", 2), message("k-3", 3)])
    first = runtime.bus.consume(TOPIC, GROUP, "worker-1", count=10, block_ms=10)
    assert first
    # the worker dies here: nothing acknowledged; it restarts (a new bus client) under the
    # same consumer name
    runtime.bus.publish(TOPIC, [message("k-1", 4)])
    restarted = ValkeyBus(runtime.valkey, runtime.settings.bus_partitions)

    again = restarted.consume(TOPIC, GROUP, "worker-1", count=10, block_ms=10)

    assert {(d.stream, d.entry_id) for d in again} == {(d.stream, d.entry_id) for d in first}
    assert sorted(p for d in again for p in d.payloads) == sorted(
        p for d in first for p in d.payloads
    )
    restarted.ack(GROUP, again)
    fresh = restarted.consume(TOPIC, GROUP, "worker-1", count=10, block_ms=10)
    assert [p for d in fresh for p in d.payloads] == [message("k-1", 4)[1]]


def test_pending_entries_of_one_consumer_are_not_handed_to_another_while_fresh(runtime):
    runtime.bus.publish(TOPIC, [message("k-1", 1)])
    assert runtime.bus.consume(TOPIC, GROUP, "worker-1", count=10, block_ms=10)

    assert runtime.bus.consume(TOPIC, GROUP, "worker-2", count=10, block_ms=10) == []
    assert runtime.bus.backlog(TOPIC, GROUP) == 1


def test_two_groups_each_see_every_message(runtime):
    runtime.bus.publish(TOPIC, [message(f"k-{n}", n) for n in range(10)])

    a = runtime.bus.consume(TOPIC, "group-a", "w", count=100, block_ms=10)
    b = runtime.bus.consume(TOPIC, "group-b", "w", count=100, block_ms=10)

    assert sorted(p for d in a for p in d.payloads) == sorted(p for d in b for p in d.payloads)
    assert len([p for d in a for p in d.payloads]) == 10


def test_backlog_counts_entries_not_yet_acknowledged(runtime):
    assert runtime.bus.backlog(TOPIC, GROUP) == 0
    runtime.bus.publish(TOPIC, [message(f"k-{n}", n) for n in range(40)])
    entries = sum(len(runtime.valkey.xrange(s)) for s in stream_names(TOPIC, 4))

    assert runtime.bus.backlog(TOPIC, GROUP) == entries
    deliveries = runtime.bus.consume(TOPIC, GROUP, "w", count=100, block_ms=10)
    assert runtime.bus.backlog(TOPIC, GROUP) == entries
    runtime.bus.ack(GROUP, deliveries)
    assert runtime.bus.backlog(TOPIC, GROUP) == 0


def test_read_all_returns_every_message_still_on_a_topic(runtime):
    sent = [message(f"k-{n}", n) for n in range(25)]
    runtime.bus.publish(TOPIC, sent)

    assert sorted(runtime.bus.read_all(TOPIC)) == sorted(payload for _key, payload in sent)


@pytest.mark.parametrize("partitions", [1, 7])
def test_any_partition_count_keeps_each_key_together(runtime, partitions):
    from c360.adapters.bus_valkey import ValkeyBus

    bus = ValkeyBus(runtime.valkey, partitions)
    bus.publish("t-test", [message(f"k-{n % 5}", n) for n in range(30)])

    placed = {
        stream: [
            p for _id, fields in runtime.valkey.xrange(stream) for p in fields[b"d"].split(b"\n")
        ]
        for stream in stream_names("t-test", partitions)
    }
    for k in range(5):
        streams = {
            s for s, payloads in placed.items() if any(f'"k-{k}"'.encode() in p for p in payloads)
        }
        assert len(streams) == 1
