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

#: Pause reading while the stage's queue holds this many messages. Small on purpose: while the
#: workers are busy, entries pile up on the bus and the next read takes them all, so batches
#: grow with the load. A long queue would instead fill with small batches, each paying the
#: stage's round trips to PostgreSQL and the bus, and every event would wait behind all of them.
MAX_QUEUED = 1

#: How often a paused pump looks at the queue again.
QUEUE_POLL_S = 0.01

#: How long a lingering pump naps between reads while it gathers a batch.
GATHER_NAP_S = 0.25

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
    #: Send everything read as one batch, however large (the lake: fewer, fuller files).
    one_batch: bool = False

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
            self.stop.wait(QUEUE_POLL_S)
            return 0
        deliveries = self._read(block_ms=500)
        if not deliveries:
            return 0
        if self.linger_s:
            deliveries = self._gather(deliveries)
        batches = [_batch(deliveries)] if self.one_batch else _batches(deliveries, self.batch_size)
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
        """Keep reading until the batch is full or `linger_s` has passed, napping between
        reads so that each read takes what came meanwhile: a read per entry as it arrived cost
        this pump more processor time than the lake's own writing."""
        held = {(d.stream, d.entry_id): d for d in deliveries}
        events = sum(len(d.payloads) for d in deliveries)
        deadline = time.monotonic() + self.linger_s
        while events < self.batch_size:
            left = deadline - time.monotonic()
            if left <= 0 or self.stop.wait(min(left, GATHER_NAP_S)):
                break
            events += self._take_waiting(held)
        return list(held.values())

    def _take_waiting(self, held: dict[tuple[str, str], Delivery]) -> int:
        """Add the entries waiting on the bus to `held`, reading again while reads come back
        full; returns the events added."""
        added = 0
        while True:
            deliveries = self._read(block_ms=1)
            for delivery in deliveries:
                # a recovery read may hand back entries this pump already holds
                if (delivery.stream, delivery.entry_id) not in held:
                    held[delivery.stream, delivery.entry_id] = delivery
                    added += len(delivery.payloads)
            if len(deliveries) < READ_COUNT or added >= self.batch_size:
                return added


def _batches(deliveries: list[Delivery], size: int) -> list[tuple[str, list[str]]]:
    """Cut the entries, in the order read, into batches of about `size` events (an entry is
    never split). A batch mixes partitions: a stage pays its round trips per batch, and each
    customer's entries, all in one partition, keep their order within it."""
    batches: list[tuple[str, list[str]]] = []
    group: list[Delivery] = []
    events = 0
    for delivery in deliveries:
        if group and events + len(delivery.payloads) > size:
            batches.append(_batch(group))
            group, events = [], 0
        group.append(delivery)
        events += len(delivery.payloads)
    if group:
        batches.append(_batch(group))
    return batches


def _batch(deliveries: list[Delivery]) -> tuple[str, list[str]]:
    """The entries as one batch, named by a digest of their ids (the same set, the same name)."""
    ids = sorted(f"{d.stream}/{d.entry_id}" for d in deliveries)
    name = "b" + hashlib.sha1("\n".join(ids).encode()).hexdigest()[:20]
    return name, [p.decode() for d in deliveries for p in d.payloads]
