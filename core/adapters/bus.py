"""The event bus role: keyed topics with partitions, consumer groups and acknowledgements.

A message is keyed by the customer key; all messages of one key go to one partition, so one
customer's events stay in order. Delivery is at-least-once: a message is delivered again until
it is acknowledged, and every stage writes idempotently.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

RAW_EVENTS = "c360-raw-events"
DLQ = "c360-dlq"
ID_RESOLUTION = "c360-id-resolution"
UPDATED_PROFILES = "c360-updated-profiles"
TOPICS = (RAW_EVENTS, DLQ, ID_RESOLUTION, UPDATED_PROFILES)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One bus entry handed to a consumer: several messages of one partition, in order."""

    stream: str
    entry_id: str
    payloads: list[bytes]


def partition_for(key: str, partitions: int) -> int:
    """The partition of a customer key; stable across processes and restarts."""
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) % partitions


class EventBus(Protocol):
    """What stages need from a bus."""

    def publish(self, topic: str, messages: Sequence[tuple[str, bytes]]) -> None:
        """Publish (key, payload) messages durably; raise BusUnavailable if it cannot."""

    def consume(
        self, topic: str, group: str, consumer: str, count: int, block_ms: int
    ) -> list[Delivery]:
        """Entries for this consumer: its own unacknowledged ones first, then new ones."""

    def ack(self, group: str, deliveries: Sequence[Delivery]) -> None:
        """Mark entries as fully processed by `group`."""

    def backlog(self, topic: str, group: str) -> int:
        """Entries of `topic` not yet acknowledged by `group` (waiting or in flight)."""

    def read_all(self, topic: str) -> list[bytes]:
        """Every message still kept on `topic` (for the DLQ viewer and tests)."""


class AsyncEventBus(Protocol):
    """What the gateway needs: publishing from async code."""

    async def publish(self, topic: str, messages: Sequence[tuple[str, bytes]]) -> None:
        """Publish durably; raise BusUnavailable if it cannot."""

    async def publish_many(
        self,
        by_topic: Mapping[str, Sequence[tuple[str, bytes]]],
        counters: Mapping[str, int] | None = None,
    ) -> None:
        """Publish to several topics and add to named counters, at once where the bus can."""

    async def check(self) -> None:
        """Raise BusUnavailable if the bus could not take a publish right now."""

    async def close(self) -> None:
        """Release connections."""
