"""Pumps feed stage actors from the bus: read entries with a consumer group, send them to the
actor in batches, then acknowledge. The entries stay on the bus until the actor message that
carries them is durably queued, so a crash in between re-sends them (stages are idempotent)."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

from c360.adapters.bus import Delivery, EventBus
from c360.errors import AdapterError

log = logging.getLogger(__name__)

#: Pause reading while the stage's queue holds this many messages (backpressure).
MAX_QUEUED = 200

#: Entries asked for per read; a read returns at once with what there is, so a large number
#: costs no latency and makes fewer, fuller actor messages under load.
READ_COUNT = 256


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
    #: Seconds to keep gathering entries for a fuller batch. Only for stages off the freshness
    #: path (the lake): each of its batches writes whole files, so fewer batches, less work.
    linger_s: float = 0.0
    #: One batch from all partitions (order across customers does not matter to the stage).
    across_partitions: bool = False

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
        deliveries = self._read(block_ms=500)
        if not deliveries:
            return 0
        if self.linger_s:
            deliveries = self._gather(deliveries)
        batches = (
            [_merged_batch(deliveries)]
            if self.across_partitions
            else _batches(deliveries, self.batch_size)
        )
        moved = 0
        for name, payloads in batches:
            self.send(name, payloads)
            moved += len(payloads)
        self.bus.ack(self.group, deliveries)
        return moved

    def _read(self, block_ms: int) -> list[Delivery]:
        return self.bus.consume(
            self.topic, self.group, self.consumer, count=READ_COUNT, block_ms=block_ms
        )

    def _gather(self, deliveries: list[Delivery]) -> list[Delivery]:
        """Keep reading until the batch is full or `linger_s` has passed."""
        held = {(d.stream, d.entry_id): d for d in deliveries}
        deadline = time.monotonic() + self.linger_s
        while sum(len(d.payloads) for d in held.values()) < self.batch_size:
            left = deadline - time.monotonic()
            if left <= 0 or self.stop.is_set():
                break
            for delivery in self._read(block_ms=max(1, int(left * 1000))):
                # a recovery read may hand back entries this pump already holds
                held.setdefault((delivery.stream, delivery.entry_id), delivery)
        return list(held.values())


def _merged_batch(deliveries: list[Delivery]) -> tuple[str, list[str]]:
    """All entries as one batch, named by a digest of their ids (the same set, the same name)."""
    ids = sorted(f"{d.stream}/{d.entry_id}" for d in deliveries)
    name = "b" + hashlib.sha1("\n".join(ids).encode()).hexdigest()[:20]
    return name, [p.decode() for d in deliveries for p in d.payloads]


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
