"""The analytics cache on the real Valkey: answers come back exactly (Decimal stays Decimal),
hits and misses are counted and exported by /metrics, new events that land in the store and
the lake are seen at once, and the TTL bounds every answer."""

from __future__ import annotations

import base64
import time
from decimal import Decimal

import pytest

from c360.adapters.bus import ID_RESOLUTION, RAW_EVENTS
from c360.analytics import cache
from c360.analytics.filters import Filters
from c360.analytics.overview import overview
from c360.analytics.rfm import rfm
from c360.stages import f2_persist, f3_resolve, lake_sink

WEB = {"Authorization": "Basic " + base64.b64encode(b"test-write-key-1:").decode()}


def drain(runtime, topic, group, stage):
    while True:
        deliveries = runtime.bus.consume(topic, group, "test-worker", count=50, block_ms=10)
        if not deliveries:
            return
        for delivery in deliveries:
            stage(f"{delivery.stream}-{delivery.entry_id}".replace(":", "-"), delivery.payloads)
        runtime.bus.ack(group, deliveries)


def order(n: int, user: str, revenue: str) -> dict:
    return {
        "type": "track",
        "event": "Order Completed",
        "userId": user,
        "messageId": f"o-{n}",
        "timestamp": f"2026-02-{n % 27 + 1:02d}T10:00:00Z",
        "properties": {"revenue": revenue},
    }


def send(client, events):
    answer = client.post("/v1/batch", json={"batch": events}, headers=WEB)
    assert answer.status_code == 200, answer.text


def test_a_cached_answer_comes_back_exactly_and_counts_a_hit(runtime):
    calls = []
    value = {"total": Decimal("12"), "cents": Decimal("0.10"), "days": [{"n": 1, "x": "a"}]}

    def compute():
        calls.append(1)
        return value

    first = cache.cached(runtime, "q", {"a": 1, "b": [1, 2]}, compute)
    second = cache.cached(runtime, "q", {"b": [1, 2], "a": 1}, compute)

    assert first == second == value
    assert type(second["total"]) is Decimal and str(second["total"]) == "12"
    assert str(second["cents"]) == "0.10"
    assert len(calls) == 1
    assert cache.counts(runtime.valkey) == (1, 1)


def test_different_questions_do_not_share_an_entry(runtime):
    one = cache.cached(runtime, "q", {"a": 1}, lambda: 1)
    two = cache.cached(runtime, "q", {"a": 2}, lambda: 2)
    other = cache.cached(runtime, "r", {"a": 1}, lambda: 3)

    assert (one, two, other) == (1, 2, 3)
    assert cache.counts(runtime.valkey) == (0, 3)


def test_new_events_resolved_and_in_the_lake_are_seen_at_once(client, runtime):
    send(client, [order(1, "u-1", "10.50"), order(2, "u-2", "4.25")])
    drain(runtime, RAW_EVENTS, "f2", lambda _n, p: f2_persist.persist(runtime, p))
    drain(runtime, RAW_EVENTS, "lake", lambda name, p: lake_sink.sink(runtime, f"b-{name}", p))
    drain(runtime, ID_RESOLUTION, "f3", lambda _n, p: f3_resolve.resolve(runtime, p))
    before = overview(runtime, Filters())
    assert overview(runtime, Filters()) == before
    assert (before["events_total"], before["revenue_total"]) == (2, Decimal("14.75"))

    send(client, [order(3, "u-3", "1.01")])
    drain(runtime, RAW_EVENTS, "f2", lambda _n, p: f2_persist.persist(runtime, p))
    drain(runtime, RAW_EVENTS, "lake", lambda name, p: lake_sink.sink(runtime, f"b-{name}", p))
    drain(runtime, ID_RESOLUTION, "f3", lambda _n, p: f3_resolve.resolve(runtime, p))
    after = overview(runtime, Filters())

    assert (after["events_total"], after["revenue_total"]) == (3, Decimal("15.76"))
    assert after["active_customers"] == 3
    assert rfm(runtime)["customers"] == 3


def test_noting_new_data_makes_every_answer_stale(runtime):
    assert cache.cached(runtime, "q", {}, lambda: "old") == "old"
    assert cache.cached(runtime, "q", {}, lambda: "new") == "old"

    cache.note_new_data(runtime.valkey)

    assert cache.cached(runtime, "q", {}, lambda: "new") == "new"


def test_the_ttl_bounds_an_answer(runtime):
    assert cache.cached(runtime, "q", {}, lambda: "old", ttl_s=1) == "old"
    keys = list(runtime.valkey.scan_iter(match=f"{cache.PREFIX}{cache.FORMAT}:q:*"))
    assert len(keys) == 1
    assert 0 < runtime.valkey.ttl(keys[0]) <= 1

    deadline = time.monotonic() + 5
    while runtime.valkey.exists(keys[0]) and time.monotonic() < deadline:
        time.sleep(0.1)

    assert cache.cached(runtime, "q", {}, lambda: "new") == "new"


def test_the_default_ttl_is_the_setting(runtime):
    cache.cached(runtime, "q", {}, lambda: 1)
    (key,) = runtime.valkey.scan_iter(match=f"{cache.PREFIX}{cache.FORMAT}:q:*")

    assert runtime.settings.analytics_cache_ttl_s - 2 <= runtime.valkey.ttl(key)
    assert runtime.valkey.ttl(key) <= runtime.settings.analytics_cache_ttl_s


@pytest.mark.parametrize(("hits", "misses"), [(0, 0), (3, 1)])
def test_metrics_export_hits_misses_and_the_hit_ratio(client, runtime, hits, misses):
    for n in range(misses):
        cache.cached(runtime, "q", {"n": n}, lambda: 1)
    for _ in range(hits):
        cache.cached(runtime, "q", {"n": 0}, lambda: 1)

    text = client.get("/metrics").text

    assert f"c360_analytics_cache_hits_total {float(hits)}" in text
    assert f"c360_analytics_cache_misses_total {float(misses)}" in text
    ratio = hits / (hits + misses) if hits + misses else 0.0
    assert f"c360_analytics_cache_hit_ratio {ratio}" in text
