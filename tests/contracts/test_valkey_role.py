"""The Valkey role's contract (issue 4): the profile cache and the event bus behave the same
on the embedded Valkey (unix socket) and on a Valkey server over TCP with a password, started
by the project's own `c360.appliance.servers` (the class `scripts/servers` runs)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

import pytest
import redis

from c360.adapters.bus_valkey import ValkeyBus
from c360.adapters.cache_valkey import ValkeyProfileCache
from c360.errors import AdapterError

PARTITIONS = 4
TOPIC = "c360-contract"


@pytest.fixture(params=["embedded", "server"])
def client(request, engines, valkey_server) -> Iterator[redis.Redis]:
    """A clean Valkey of each kind."""
    url = engines[1] if request.param == "embedded" else valkey_server.url
    connection = redis.Redis.from_url(url)
    connection.flushall()
    try:
        yield connection
    finally:
        connection.close()


def test_the_cache_keeps_finds_and_forgets_profiles(client) -> None:
    cache = ValkeyProfileCache(client, ttl_s=60)
    doc = {
        "profile_id": "p-1",
        "revenue": 12.5,
        "identifiers": [{"type": "email", "value": "lan@x.vn"}],
    }
    cache.put([doc, {"profile_id": "p-2", "identifiers": []}])
    assert cache.get("p-1") == doc
    assert cache.lookup("email", "lan@x.vn") == "p-1"
    cache.forget(["p-1"])
    assert cache.get("p-1") is None and cache.get("p-2") is not None
    assert cache.clear() == 2  # p-2 and the email entry
    assert cache.get("p-2") is None and cache.lookup("email", "lan@x.vn") is None


def test_the_bus_keeps_each_keys_order_and_delivers_to_a_group_once(client) -> None:
    bus = ValkeyBus(client, PARTITIONS)
    sent: dict[str, list[bytes]] = defaultdict(list)
    for n in range(30):
        key = f"customer-{n % 7}"
        payload = f"{key}:{n}".encode()
        sent[key].append(payload)
        bus.publish(TOPIC, [(key, payload)])
    assert bus.backlog(TOPIC, "stage") == 30

    received: dict[str, list[bytes]] = defaultdict(list)
    for _ in range(50):  # bounded: 30 entries arrive in a few reads
        deliveries = bus.consume(TOPIC, "stage", "worker-1", count=8, block_ms=10)
        if not deliveries:
            break
        for delivery in deliveries:
            for payload in delivery.payloads:
                received[payload.decode().split(":")[0]].append(payload)
        bus.ack("stage", deliveries)
    assert received == sent
    assert bus.backlog(TOPIC, "stage") == 0
    assert sorted(bus.read_all(TOPIC)) == sorted(p for ps in sent.values() for p in ps)


def test_an_unacknowledged_entry_comes_back_to_its_consumer(client) -> None:
    bus = ValkeyBus(client, PARTITIONS)
    bus.publish(TOPIC, [("k", b"first")])
    (delivery,) = bus.consume(TOPIC, "stage", "worker-1", count=10, block_ms=10)
    # the worker dies before acknowledging; a new process of the same worker starts
    restarted = ValkeyBus(client, PARTITIONS)
    (again,) = restarted.consume(TOPIC, "stage", "worker-1", count=10, block_ms=10)
    assert again.payloads == delivery.payloads == [b"first"]
    restarted.ack("stage", [again])
    assert restarted.backlog(TOPIC, "stage") == 0


def test_a_wrong_password_is_an_error_that_names_the_cache(valkey_server) -> None:
    wrong = valkey_server.url.replace("://:", "://:not-", 1)
    cache = ValkeyProfileCache(redis.Redis.from_url(wrong), ttl_s=60)
    with pytest.raises(AdapterError, match="profile cache: reading a profile failed"):
        cache.get("p-1")
