"""Pumps feed stage actors from the bus: read entries with a consumer group, send them to the
actor in batches, then acknowledge. The entries stay on the bus until the actor message that
carries them is durably queued, so a crash in between re-sends them (stages are idempotent)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

import redis

from c360.adapters.bus import Delivery, EventBus
from c360.errors import AdapterError

log = logging.getLogger(__name__)

#: Pause reading while the stage's queue holds this many messages (backpressure).
MAX_QUEUED = 200


@dataclass
class Pump:
    """One topic and group feeding one actor."""

    bus: EventBus
    topic: str
    group: str
    consumer: str
    send: Callable[[str, list[str]], None]
    queue_depth: Callable[[], int]
    batch_size: int
    stop: threading.Event

    def run(self) -> None:
        """Loop until `stop` is set."""
        while not self.stop.is_set():
            try:
                self.step()
            except (AdapterError, redis.RedisError) as exc:
                log.warning("Pump %r cannot read %r: %s; retrying.", self.group, self.topic, exc)
                self.stop.wait(1.0)

    def step(self) -> int:
        """Move one read's worth of entries; returns the events moved."""
        if self.queue_depth() >= MAX_QUEUED:
            self.stop.wait(0.05)
            return 0
        deliveries = self.bus.consume(self.topic, self.group, self.consumer, count=64, block_ms=500)
        if not deliveries:
            return 0
        moved = 0
        for name, payloads in _batches(deliveries, self.batch_size):
            self.send(name, payloads)
            moved += len(payloads)
        self.bus.ack(self.group, deliveries)
        return moved


def _batches(deliveries: list[Delivery], size: int) -> list[tuple[str, list[str]]]:
    """Group entries per stream into batches of about `size` events (an entry is never split),
    each named after its stream's partition and its first and last entry ids."""
    by_stream: dict[str, list[Delivery]] = {}
    for delivery in deliveries:
        by_stream.setdefault(delivery.stream, []).append(delivery)

    batches: list[tuple[str, list[str]]] = []
    for stream, entries in by_stream.items():
        group: list[Delivery] = []
        for delivery in entries:
            if group and sum(len(d.payloads) for d in group) + len(delivery.payloads) > size:
                batches.append(_batch(stream, group))
                group = []
            group.append(delivery)
        if group:
            batches.append(_batch(stream, group))
    return batches


def _batch(stream: str, group: list[Delivery]) -> tuple[str, list[str]]:
    payloads = [payload.decode() for delivery in group for payload in delivery.payloads]
    return _name(stream, group[0].entry_id, group[-1].entry_id), payloads


def _name(stream: str, first: str, last: str) -> str:
    partition = stream.rsplit(":", 1)[-1]
    return f"p{partition}-{first}-{last}"
