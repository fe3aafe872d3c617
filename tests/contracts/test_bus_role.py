"""The event bus role's contract (issue 4): one set of tests run on the embedded Valkey (unix
socket), on a Valkey server over TCP with a password, and on Apache Kafka 4.4.0 in KRaft mode,
each server started by the project's own `c360.appliance.servers`."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from c360.adapters.bus import AsyncEventBus, Delivery, EventBus
from c360.adapters.bus_kafka import AsyncKafkaBus, KafkaBus
from c360.adapters.bus_valkey import AsyncValkeyBus, ValkeyBus
from c360.appliance.engines import free_port
from c360.errors import BusUnavailable
from c360.runtime import Runtime

PARTITIONS = 4

#: Short group timings, or a Kafka group join waits for long default session timeouts.
FAST_GROUPS = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 2000}

#: Longest a test waits for messages to arrive (a Kafka group's first join takes a few s).
WAIT_S = 30.0

pytestmark = pytest.mark.timeout(120)


@dataclass
class Buses:
    """Makes bus clients of one kind (a new client is a restarted process) and closes them."""

    make: Callable[[], EventBus]
    unreachable: Callable[[], EventBus]
    #: the gateway's publisher on the same bus, and on one that is not there
    make_async: Callable[[], AsyncEventBus]
    unreachable_async: Callable[[], AsyncEventBus]
    topic: str = field(default_factory=lambda: f"c360-contract-{uuid.uuid4().hex[:8]}")
    made: list[Any] = field(default_factory=list)

    def new(self) -> EventBus:
        bus = self.make()
        self.made.append(bus)
        return bus

    def close(self, bus: Any) -> None:
        if hasattr(bus, "close"):
            bus.close()

    def close_all(self) -> None:
        for bus in self.made:
            self.close(bus)


@pytest.fixture(params=["embedded-valkey", "tcp-valkey", "kafka"])
def buses(request: pytest.FixtureRequest) -> Iterator[Buses]:
    """Bus clients on a fresh topic of each kind of bus."""
    if request.param == "kafka":
        bootstrap = request.getfixturevalue("kafka_server").bootstrap
        nowhere = f"127.0.0.1:{free_port()}"
        kind = Buses(
            make=lambda: KafkaBus(bootstrap, PARTITIONS, consumer_options=FAST_GROUPS),
            unreachable=lambda: KafkaBus(nowhere, PARTITIONS, timeout_s=2),
            make_async=lambda: AsyncKafkaBus(KafkaBus(bootstrap, PARTITIONS)),
            unreachable_async=lambda: AsyncKafkaBus(KafkaBus(nowhere, PARTITIONS, timeout_s=2)),
        )
    else:
        if request.param == "embedded-valkey":
            url = request.getfixturevalue("engines")[1]
        else:
            url = request.getfixturevalue("valkey_server").url
        client = redis.Redis.from_url(url)
        down_url = f"redis://127.0.0.1:{free_port()}/0"
        down = redis.Redis.from_url(down_url, socket_timeout=2)
        kind = Buses(
            make=lambda: ValkeyBus(client, PARTITIONS),
            unreachable=lambda: ValkeyBus(down, PARTITIONS),
            make_async=lambda: AsyncValkeyBus(aioredis.Redis.from_url(url), PARTITIONS),
            unreachable_async=lambda: AsyncValkeyBus(
                aioredis.Redis.from_url(down_url, socket_timeout=2), PARTITIONS
            ),
        )
    try:
        yield kind
    finally:
        kind.close_all()


def receive(
    bus: EventBus, topic: str, group: str, want: int, *, ack: bool = True
) -> list[Delivery]:
    """Read with `group` until `want` messages came (bounded by WAIT_S), acknowledging each read
    unless told not to."""
    got: list[Delivery] = []
    deadline = time.monotonic() + WAIT_S
    while sum(len(d.payloads) for d in got) < want and time.monotonic() < deadline:
        deliveries = bus.consume(topic, group, "worker-1", count=8, block_ms=200)
        if ack and deliveries:
            bus.ack(group, deliveries)
        got.extend(deliveries)
    return got


def payloads(deliveries: list[Delivery]) -> list[bytes]:
    return [payload for delivery in deliveries for payload in delivery.payloads]


def test_each_customers_events_arrive_in_order_from_one_partition(buses: Buses) -> None:
    bus = buses.new()
    sent: dict[str, list[bytes]] = defaultdict(list)
    batch = []
    for n in range(40):
        key = f"customer-{n % 7}"
        sent[key].append(f"{key}:{n}".encode())
        batch.append((key, sent[key][-1]))
        if n % 3 == 0:  # single messages and batches mixed
            bus.publish(buses.topic, batch)
            batch = []
    bus.publish(buses.topic, batch)

    received: dict[str, list[bytes]] = defaultdict(list)
    streams: dict[str, set[str]] = defaultdict(set)
    for delivery in receive(bus, buses.topic, "stage", 40):
        for payload in delivery.payloads:
            key = payload.decode().split(":")[0]
            received[key].append(payload)
            streams[key].add(delivery.stream)
    assert received == sent
    assert all(len(found) == 1 for found in streams.values())
    assert len(set.union(*streams.values())) > 1  # the customers are spread over partitions


def test_a_group_gets_each_message_once_and_groups_are_independent(buses: Buses) -> None:
    bus = buses.new()
    bus.publish(buses.topic, [(f"c-{n}", f"m-{n}".encode()) for n in range(12)])

    first = payloads(receive(bus, buses.topic, "stage-a", 12))
    again = bus.consume(buses.topic, "stage-a", "worker-1", count=8, block_ms=300)
    other = payloads(receive(bus, buses.topic, "stage-b", 12))
    assert sorted(first) == sorted(f"m-{n}".encode() for n in range(12))
    assert again == []
    assert sorted(other) == sorted(first)


def test_acknowledged_messages_leave_the_backlog(buses: Buses) -> None:
    bus = buses.new()
    for n in range(10):  # one entry each (the Valkey bus packs a publish into an entry a key)
        bus.publish(buses.topic, [(f"c-{n % 3}", f"m-{n}".encode())])
    assert bus.backlog(buses.topic, "stage") == 10

    read = receive(bus, buses.topic, "stage", 10, ack=False)
    assert bus.backlog(buses.topic, "stage") == 10  # read but not processed yet
    bus.ack("stage", read)
    assert bus.backlog(buses.topic, "stage") == 0
    assert bus.backlog(buses.topic, "another-stage") == 10


def test_an_unacknowledged_message_comes_back_after_a_restart(buses: Buses) -> None:
    bus = buses.new()
    for n in range(3):  # one customer: one partition, in order
        bus.publish(buses.topic, [("customer-1", f"m-{n}".encode())])
    read = receive(bus, buses.topic, "stage", 3, ack=False)
    assert payloads(read) == [b"m-0", b"m-1", b"m-2"]
    bus.ack("stage", read[:1])  # the process dies before finishing the other two
    buses.close(bus)

    restarted = buses.new()
    again = receive(restarted, buses.topic, "stage", 2)
    assert payloads(again) == [b"m-1", b"m-2"]
    assert restarted.backlog(buses.topic, "stage") == 0


def test_read_all_returns_every_message_kept(buses: Buses) -> None:
    bus = buses.new()
    sent = [(f"c-{n % 5}", f"m-{n}".encode()) for n in range(15)]
    bus.publish(buses.topic, sent)
    assert sorted(bus.read_all(buses.topic)) == sorted(body for _, body in sent)
    assert bus.read_all(f"{buses.topic}-never-written") == []


def test_publishing_to_an_unreachable_bus_fails_fast_and_says_so(buses: Buses) -> None:
    bus = buses.unreachable()
    started = time.monotonic()
    with pytest.raises(BusUnavailable, match="unreachable"):
        bus.publish(buses.topic, [("customer-1", b"lost?")])
    assert time.monotonic() - started < 10
    buses.close(bus)


def test_the_runtime_puts_the_bus_on_kafka_when_brokers_are_set(settings, kafka_server) -> None:
    runtime = Runtime(dataclasses.replace(settings, kafka_bootstrap=kafka_server.bootstrap))
    try:
        assert isinstance(runtime.bus, KafkaBus)
        topic = f"c360-runtime-{uuid.uuid4().hex[:8]}"
        runtime.bus.publish(topic, [("customer-1", b"hello")])
        assert runtime.bus.read_all(topic) == [b"hello"]
    finally:
        runtime.close()
    assert isinstance(Runtime(settings).bus, ValkeyBus)  # the embedded default is unchanged


def test_topics_keep_events_as_long_as_the_settings_say(settings, kafka_server) -> None:
    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

    runtime = Runtime(
        dataclasses.replace(settings, kafka_bootstrap=kafka_server.bootstrap, bus_retention_hours=5)
    )
    topic = f"c360-retention-{uuid.uuid4().hex[:8]}"
    try:
        runtime.bus.publish(topic, [("customer-1", b"hello")])
    finally:
        runtime.close()
    admin = KafkaAdminClient(bootstrap_servers=kafka_server.bootstrap)
    try:
        found = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        admin.close()
    # {resource type: {resource name: {config key: {config data}}}}
    (by_name,) = found.values()
    retention = by_name[topic]["retention.ms"]
    assert str(retention.get("value", retention)) == str(5 * 3_600_000)


def test_a_stage_message_that_exhausts_its_retries_is_kept_in_the_dlq(buses: Buses, engines):
    """Stages retry in Dramatiq (on Valkey); what still fails is moved to the bus's own DLQ,
    which on Kafka is a topic kept for good."""
    import json

    import dramatiq
    from dramatiq.brokers.redis import RedisBroker

    from c360.adapters.bus import DLQ
    from c360.appliance import dead_letters

    namespace, queue = f"contract-{uuid.uuid4().hex[:8]}", f"c360-f2-{uuid.uuid4().hex[:6]}"
    broker = RedisBroker(url=engines[1], namespace=namespace)
    broker.add_middleware(dead_letters.FailureReasons(broker.client))

    def always_fails(payloads: list[str]) -> None:
        raise ValueError("poison batch")

    actor = dramatiq.actor(always_fails, broker=broker, queue_name=queue, max_retries=1,
                           min_backoff=10, max_backoff=10)  # fmt: skip
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        actor.send(['{"messageId": "m-1"}'])
        deadline = time.monotonic() + WAIT_S
        while broker.client.zcard(f"{namespace}:{queue}.XQ") == 0:
            assert time.monotonic() < deadline, "the message never exhausted its retries"
            time.sleep(0.05)
    finally:
        worker.stop(timeout=5000)
    bus = buses.new()

    assert dead_letters.drain(broker.client, bus, [queue], namespace=namespace) == 1

    kept = [json.loads(body) for body in bus.read_all(DLQ)]
    mine = [entry for entry in kept if entry["source"] == queue]
    assert len(mine) == 1
    assert mine[0]["code"] == "stage_failed" and "poison batch" in mine[0]["reason"]
    assert json.loads(mine[0]["payload"]) == [['{"messageId": "m-1"}']]
    assert dead_letters.drain(broker.client, bus, [queue], namespace=namespace) == 0


def test_the_gateways_health_check_tells_a_reachable_bus_from_one_that_is_not(buses: Buses):
    async def check(bus: AsyncEventBus) -> None:
        try:
            await bus.check()
        finally:
            await bus.close()

    asyncio.run(check(buses.make_async()))  # no error: the bus would take a publish

    with pytest.raises(BusUnavailable, match="unreachable"):
        asyncio.run(check(buses.unreachable_async()))
