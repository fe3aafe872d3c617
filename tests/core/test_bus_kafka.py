"""The gateway's Kafka publisher while the broker is out of reach: every request gets its 503
promptly, and only one at a time waits on the broker. (Publishing through a broker killed and
restarted is tests/e2e/test_faults_on_servers.py.)"""

from __future__ import annotations

import asyncio

import pytest

from c360.adapters import bus_kafka
from c360.adapters.bus_kafka import AsyncKafkaBus, KafkaBus
from c360.appliance.engines import free_port
from c360.errors import BusUnavailable

MESSAGES = {"c360-raw-events": [("customer-1", b"{}")]}


class CountingBus(KafkaBus):
    """A Kafka bus on a port nothing listens on, counting the publishes that reach it."""

    def __init__(self) -> None:
        super().__init__(f"127.0.0.1:{free_port()}", 4, timeout_s=1)
        self.tried = 0

    def publish(self, topic: str, messages: list[tuple[str, bytes]]) -> None:
        self.tried += 1
        super().publish(topic, messages)


def test_after_the_broker_was_found_unreachable_requests_are_refused_without_trying() -> None:
    bus = CountingBus()
    gateway = AsyncKafkaBus(bus)

    async def three_requests() -> list[BaseException]:
        return await asyncio.gather(
            *(gateway.publish_many(MESSAGES) for _ in range(3)), return_exceptions=True
        )

    with pytest.raises(BusUnavailable, match="unreachable"):
        asyncio.run(gateway.publish_many(MESSAGES))
    refused = asyncio.run(three_requests())

    assert bus.tried == 1
    assert all(isinstance(answer, BusUnavailable) for answer in refused)
    bus.close()


def test_once_the_pause_is_over_one_request_at_a_time_tries_the_broker_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bus_kafka, "RETRY_BROKER_AFTER_S", 0.0)  # no pause: over at once
    bus = CountingBus()
    gateway = AsyncKafkaBus(bus)
    with pytest.raises(BusUnavailable):
        asyncio.run(gateway.publish_many(MESSAGES))

    async def three_requests() -> list[BaseException]:
        return await asyncio.gather(
            *(gateway.publish_many(MESSAGES) for _ in range(3)), return_exceptions=True
        )

    answers = asyncio.run(three_requests())

    assert bus.tried == 2  # one more try, the other two refused while it was under way
    assert all(isinstance(answer, BusUnavailable) for answer in answers)
    bus.close()


class KeepingBus(KafkaBus):
    """A Kafka bus whose broker takes every publish (kept in a list)."""

    def __init__(self) -> None:
        super().__init__(f"127.0.0.1:{free_port()}", 4)
        self.kept: list[tuple[str, list[tuple[str, bytes]]]] = []

    def publish(self, topic: str, messages: list[tuple[str, bytes]]) -> None:
        self.kept.append((topic, list(messages)))


def test_events_kafka_kept_are_acknowledged_even_when_valkey_cannot_count_them() -> None:
    """A 500 here made clients send events that were already kept again (a double count)."""
    import redis.asyncio as aioredis

    bus = KeepingBus()
    counters = aioredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_timeout=1)
    gateway = AsyncKafkaBus(bus, counters)

    asyncio.run(gateway.publish_many(MESSAGES, {"c360:accepted:web": 1}))

    assert bus.kept == [("c360-raw-events", [("customer-1", b"{}")])]
