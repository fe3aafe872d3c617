"""Actor messages that exhaust their retries end up in c360-dlq, not in Dramatiq's purge."""

from __future__ import annotations

import json
import time

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker

from c360.adapters.bus import DLQ
from c360.appliance import dead_letters


def test_a_batch_that_keeps_failing_is_moved_to_the_c360_dlq(runtime):
    broker = RedisBroker(url=runtime.settings.valkey_url, namespace="dramatiq")
    broker.add_middleware(dead_letters.FailureReasons(broker.client))

    def always_fails(payloads: list[str]) -> None:
        raise ValueError("poison batch")

    actor = dramatiq.actor(always_fails, broker=broker, queue_name="c360-f2", max_retries=0)
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=100)
    worker.start()
    client = redis.Redis.from_url(runtime.settings.valkey_url)
    try:
        actor.send(['{"messageId": "m-1"}'])
        deadline = time.monotonic() + 20
        while client.zcard("dramatiq:c360-f2.XQ") == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        worker.stop(timeout=5000)

    moved = dead_letters.drain(client, runtime.bus, ["c360-f2"])

    assert moved == 1
    entries = [json.loads(p) for p in runtime.bus.read_all(DLQ)]
    assert len(entries) == 1
    assert entries[0]["code"] == "stage_failed"
    assert "poison batch" in entries[0]["reason"]
    assert json.loads(entries[0]["payload"]) == [['{"messageId": "m-1"}']]
    assert client.zcard("dramatiq:c360-f2.XQ") == 0
    assert dead_letters.drain(client, runtime.bus, ["c360-f2"]) == 0
    client.close()
