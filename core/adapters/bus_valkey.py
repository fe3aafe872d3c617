"""The event bus on Valkey Streams: one stream per topic partition, consumer groups per stage.

A publish writes one stream entry per partition holding that partition's messages as
newline-separated JSON, so a 100-event batch costs a handful of commands rather than 100.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import redis
import redis.asyncio as aioredis

from c360.adapters.bus import Delivery, partition_for
from c360.errors import AdapterError, BusUnavailable

log = logging.getLogger(__name__)

#: Entries kept per stream partition (each entry is a batch, so this is millions of events).
MAX_ENTRIES = 200_000

#: How often a consumer looks again for its own unacknowledged and for stranded entries;
#: looking on every read would cost two extra commands per partition per read.
RECOVERY_INTERVAL_S = 15.0

#: An entry a consumer has held this long without acknowledging is taken over by another.
CLAIM_IDLE_MS = 60_000


def stream_names(topic: str, partitions: int) -> list[str]:
    """The Valkey stream keys of a topic."""
    return [f"{topic}:{index}" for index in range(partitions)]


def _group_by_partition(
    messages: Sequence[tuple[str, bytes]], partitions: int
) -> dict[int, list[bytes]]:
    grouped: dict[int, list[bytes]] = defaultdict(list)
    for key, payload in messages:
        grouped[partition_for(key, partitions)].append(payload)
    return grouped


def _queue_entries(
    pipe: Any, topic: str, messages: Sequence[tuple[str, bytes]], partitions: int
) -> None:
    """Queue on a (sync or async) pipeline one stream entry per partition of the messages."""
    for partition, payloads in _group_by_partition(messages, partitions).items():
        pipe.xadd(
            f"{topic}:{partition}",
            {"n": len(payloads), "d": b"\n".join(payloads)},
            maxlen=MAX_ENTRIES,
            approximate=True,
        )


class ValkeyBus:
    """Synchronous bus client used by stages and pumps."""

    def __init__(self, client: redis.Redis, partitions: int) -> None:
        self._client = client
        self._partitions = partitions
        self._groups_made: set[tuple[str, str]] = set()
        self._recovered_at: dict[tuple[str, str, str], float] = {}

    def publish(self, topic: str, messages: Sequence[tuple[str, bytes]]) -> None:
        """Write each partition's messages as one entry."""
        if not messages:
            return
        try:
            with self._client.pipeline(transaction=False) as pipe:
                _queue_entries(pipe, topic, messages, self._partitions)
                pipe.execute()
        except redis.ConnectionError as exc:
            raise BusUnavailable(f"the event bus is unreachable: {exc}") from exc
        except redis.RedisError as exc:
            raise AdapterError(f"publishing to {topic!r} failed: {exc}") from exc

    def consume(
        self, topic: str, group: str, consumer: str, count: int, block_ms: int
    ) -> list[Delivery]:
        """New entries; but first, now and then, this consumer's own unacknowledged entries
        (left by a crash or a failed hand-off) and entries stranded by a dead consumer."""
        streams = stream_names(topic, self._partitions)
        self._ensure_groups(streams, group)
        recovery_key = (topic, group, consumer)
        last = self._recovered_at.get(recovery_key)
        if last is None or time.monotonic() - last >= RECOVERY_INTERVAL_S:
            pending = self._read(group, consumer, {name: "0" for name in streams}, count, None)
            if pending:
                return pending
            claimed = self._claim_stranded(streams, group, consumer, count)
            if claimed:
                return claimed
            self._recovered_at[recovery_key] = time.monotonic()
        return self._read(group, consumer, {name: ">" for name in streams}, count, block_ms)

    def ack(self, group: str, deliveries: Sequence[Delivery]) -> None:
        """Acknowledge entries once their effects are durable."""
        by_stream: dict[str, list[str]] = defaultdict(list)
        for delivery in deliveries:
            by_stream[delivery.stream].append(delivery.entry_id)
        with self._client.pipeline(transaction=False) as pipe:
            for stream, ids in by_stream.items():
                pipe.xack(stream, group, *ids)
            pipe.execute()

    def backlog(self, topic: str, group: str) -> int:
        """Entries not yet acknowledged by `group`, summed over partitions."""
        total = 0
        for stream in stream_names(topic, self._partitions):
            if not self._client.exists(stream):
                continue
            for info in self._client.xinfo_groups(stream):
                if _text(info["name"]) == group:
                    total += int(info.get("lag") or 0) + int(info.get("pending") or 0)
                    break
            else:
                total += int(self._client.xlen(stream))
        return total

    def oldest_waiting(self, topic: str, group: str) -> datetime | None:
        """When the oldest entry `group` has not acknowledged was published (a stream id starts
        with its milliseconds), or None when nothing waits."""
        oldest = None
        for stream in stream_names(topic, self._partitions):
            first = self._first_unacknowledged(stream, group)
            if first is not None:
                ms = int(first.split("-")[0])
                oldest = ms if oldest is None else min(oldest, ms)
        return None if oldest is None else datetime.fromtimestamp(oldest / 1000, UTC)

    def _first_unacknowledged(self, stream: str, group: str) -> str | None:
        if not self._client.exists(stream):
            return None
        groups = self._client.xinfo_groups(stream)
        info = next((g for g in groups if _text(g["name"]) == group), None)
        if info is None:  # the stage has not read yet: everything waits
            first = self._client.xrange(stream, count=1)
            return _text(first[0][0]) if first else None
        if int(info.get("pending") or 0):
            return _text(self._client.xpending(stream, group)["min"])
        after = self._client.xrange(stream, min="(" + _text(info["last-delivered-id"]), count=1)
        return _text(after[0][0]) if after else None

    def read_all(self, topic: str) -> list[bytes]:
        """All messages still on a topic, partition by partition."""
        found: list[bytes] = []
        for stream in stream_names(topic, self._partitions):
            for _entry_id, fields in self._client.xrange(stream):
                found.extend(fields[b"d"].split(b"\n"))
        return found

    def _ensure_groups(self, streams: list[str], group: str) -> None:
        for stream in streams:
            if (stream, group) in self._groups_made:
                continue
            try:
                self._client.xgroup_create(stream, group, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise AdapterError(f"cannot create group {group!r} on {stream!r}") from exc
            self._groups_made.add((stream, group))

    def _read(
        self,
        group: str,
        consumer: str,
        streams: dict[str, str],
        count: int,
        block_ms: int | None,
    ) -> list[Delivery]:
        try:
            reply = self._client.xreadgroup(group, consumer, streams, count=count, block=block_ms)
        except redis.ConnectionError as exc:
            raise BusUnavailable(f"the event bus is unreachable: {exc}") from exc
        deliveries = []
        for stream, entries in reply or []:
            for entry_id, fields in entries:
                if not fields:  # entry trimmed away while pending: nothing left to process
                    continue
                deliveries.append(
                    Delivery(_text(stream), _text(entry_id), fields[b"d"].split(b"\n"))
                )
        return deliveries

    def _claim_stranded(
        self, streams: list[str], group: str, consumer: str, count: int
    ) -> list[Delivery]:
        deliveries = []
        for stream in streams:
            reply = self._client.xautoclaim(stream, group, consumer, CLAIM_IDLE_MS, "0-0", count)
            for entry_id, fields in reply[1]:
                if fields:
                    deliveries.append(Delivery(stream, _text(entry_id), fields[b"d"].split(b"\n")))
        return deliveries


class AsyncValkeyBus:
    """Publishing from the gateway's event loop."""

    def __init__(self, client: aioredis.Redis, partitions: int) -> None:
        self._client = client
        self._partitions = partitions

    async def publish(self, topic: str, messages: Sequence[tuple[str, bytes]]) -> None:
        """Write each partition's messages as one entry; BusUnavailable if Valkey is down."""
        await self.publish_many({topic: messages})

    async def publish_many(
        self,
        by_topic: Mapping[str, Sequence[tuple[str, bytes]]],
        counters: Mapping[str, int] | None = None,
    ) -> None:
        """Publish to several topics and bump counters in one round trip (one pipeline),
        since a round trip costs more than the writes themselves."""
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for topic, messages in by_topic.items():
                    _queue_entries(pipe, topic, messages, self._partitions)
                for key, amount in (counters or {}).items():
                    if amount:
                        pipe.incrby(key, amount)
                if len(pipe):
                    await pipe.execute()
        except (redis.ConnectionError, OSError) as exc:
            raise BusUnavailable(f"the event bus is unreachable: {exc}") from exc
        except redis.RedisError as exc:
            raise AdapterError(f"publishing to {sorted(by_topic)} failed: {exc}") from exc

    async def check(self) -> None:
        """BusUnavailable unless Valkey answers."""
        try:
            await self._client.ping()
        except (redis.ConnectionError, OSError) as exc:
            raise BusUnavailable(f"the event bus is unreachable: {exc}") from exc

    async def close(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
