"""The event bus on the Kafka protocol (Apache Kafka, Redpanda) with kafka-python.

One Kafka record per message, keyed by the customer key; Kafka's default partitioner sends a
key to one partition, so one customer's events stay in order, whichever client produced them.
A delivery is one record: its stream is "topic:partition" and its entry id the offset. A group
commits an offset only once every record before it has been acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import OffsetSpec
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import (
    CommitFailedError,
    CoordinatorNotAvailableError,
    KafkaError,
    KafkaTimeoutError,
    RetriableError,
    TopicAlreadyExistsError,
)
from kafka.structs import OffsetAndMetadata

from c360.adapters.bus import DLQ, Delivery
from c360.errors import AdapterError, BusUnavailable

log = logging.getLogger(__name__)

#: How long a topic keeps its records unless told otherwise (Kafka's own default, 7 days).
DEFAULT_RETENTION_MS = 7 * 24 * 3600 * 1000

#: Dead letters wait for a person to look at them, so the DLQ keeps them until deleted.
KEEP_FOREVER = -1

#: How long a call may wait for the broker before the bus counts as unavailable. Short, so the
#: gateway answers 503 quickly instead of holding requests while the broker is down.
DEFAULT_TIMEOUT_S = 5.0

#: A delivery held this long without an acknowledgement is read again by the same consumer
#: (a failed hand-off); another process gets it only after this one leaves the group.
REDELIVER_AFTER_S = 15.0

#: Consumer group timing: a dead consumer's partitions move on after the session timeout.
#: Fetching: the broker answers once it holds 64 KiB for the consumer or 50 ms have passed.
#: Answering at the first byte (the default) made a fetch per few records under load, and the
#: client's and the broker's work per fetch is what used the processor; 50 ms is what a quiet
#: topic adds to a record's way through.
DEFAULT_CONSUMER_OPTIONS: dict[str, Any] = {
    "session_timeout_ms": 10_000,
    "heartbeat_interval_ms": 3_000,
    "fetch_min_bytes": 64 * 1024,
    "fetch_max_wait_ms": 50,
}

#: A client retries a lost broker connection after at most this long. kafka-python's default
#: (30 s) left every producer and consumer idle for up to that long after a restarted broker
#: was back.
RECONNECT_BACKOFF_MAX_MS = 1_000

#: After the broker was found out of reach, the gateway refuses events at once (503) for this
#: long instead of holding each request for the bus timeout; then one request tries again.
RETRY_BROKER_AFTER_S = 1.0

#: Errors that say "not now" (a broker away, restarting, electing a leader or loading a group):
#: the caller may try again later, and the gateway answers 503.
_UNREACHABLE = (RetriableError,)


class KafkaBus:
    """Synchronous bus client used by stages and pumps (thread-safe; each pump thread reads
    through its own consumer)."""

    def __init__(
        self,
        bootstrap: str,
        partitions: int,
        retention_ms: int = DEFAULT_RETENTION_MS,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        consumer_options: Mapping[str, Any] | None = None,
    ) -> None:
        self._bootstrap = bootstrap
        self._partitions = partitions
        self._retention_ms = retention_ms
        self._timeout_ms = int(timeout_s * 1000)
        self._consumer_options = {**DEFAULT_CONSUMER_OPTIONS, **(consumer_options or {})}
        self._lock = threading.Lock()
        self._producer: KafkaProducer | None = None
        self._admin: KafkaAdminClient | None = None
        self._topics_made: set[str] = set()
        self._readers: dict[tuple[str, str, str], _Reader] = {}

    def publish(self, topic: str, messages: Sequence[tuple[str, bytes]]) -> None:
        """Send every message and wait until the broker has them on all in-sync replicas."""
        if not messages:
            return
        producer = None
        try:
            with self._translated(f"publishing to {topic!r}"):
                self.ensure_topic(topic)
                deadline = time.monotonic() + self._timeout_ms / 1000
                producer = self._get_producer()
                futures = [producer.send(topic, key=_key(k), value=body) for k, body in messages]
                # one timeout for the whole call: a send may already have waited for metadata
                producer.flush(timeout=max(0.0, deadline - time.monotonic()))
                for future in futures:
                    if not future.is_done:
                        raise KafkaTimeoutError(f"no reply in {self._timeout_ms} ms")
                    future.get(0)
        except AdapterError as exc:
            if producer is None:
                raise
            replaced_meanwhile = not self._discard_producer(producer)
            if replaced_meanwhile and not isinstance(exc, BusUnavailable):
                # another thread's failed publish closed this producer under us
                raise BusUnavailable(f"publishing to {topic!r} was cut short: {exc}") from exc
            raise

    def consume(
        self, topic: str, group: str, consumer: str, count: int, block_ms: int
    ) -> list[Delivery]:
        """Records for this consumer: first its own long-unacknowledged ones, then new ones."""
        with self._translated(f"reading {topic!r} for {group!r}"):
            self.ensure_topic(topic)
            return self._reader(topic, group, consumer).read(count, block_ms)

    def ack(self, group: str, deliveries: Sequence[Delivery]) -> None:
        """Mark records processed; commit each partition up to its first unprocessed record."""
        readers = [r for (_, g, _), r in list(self._readers.items()) if g == group]
        with self._translated(f"committing offsets of {group!r}"):
            for reader in readers:
                reader.ack(deliveries)

    def check(self) -> None:
        """BusUnavailable unless a broker answers a metadata request within the timeout."""
        with self._translated("asking the brokers for the cluster's state"), self._lock:
            self._get_admin().describe_cluster()

    def backlog(self, topic: str, group: str) -> int:
        """Records of `topic` not yet committed by `group`, summed over partitions."""
        with self._translated(f"measuring the backlog of {group!r}"), self._lock:
            admin = self._get_admin()
            (described,) = admin.describe_topics([topic])
            if described.get("error_code"):  # no such topic yet: nothing waits
                return 0
            parts = [TopicPartition(topic, p["partition_index"]) for p in described["partitions"]]
            first = admin.list_partition_offsets(dict.fromkeys(parts, OffsetSpec.EARLIEST))
            last = admin.list_partition_offsets(dict.fromkeys(parts, OffsetSpec.LATEST))
            committed = self._committed(admin, group, parts)
        total = 0
        for part in parts:
            done = committed.get(part)
            start = max(first[part].offset, done.offset if done and done.offset >= 0 else 0)
            total += max(0, last[part].offset - start)
        return total

    def read_all(self, topic: str, timeout_s: float = 30.0) -> list[bytes]:
        """All records still kept on a topic, partition by partition."""
        with self._translated(f"reading all of {topic!r}"):
            reader = KafkaConsumer(
                bootstrap_servers=self._bootstrap,
                enable_auto_commit=False,
                bootstrap_timeout_ms=self._timeout_ms,
                reconnect_backoff_max_ms=RECONNECT_BACKOFF_MAX_MS,
            )
        try:
            return self._read_partitions(reader, topic, timeout_s)
        finally:
            reader.close()

    def _read_partitions(self, reader: KafkaConsumer, topic: str, timeout_s: float) -> list[bytes]:
        with self._translated(f"reading all of {topic!r}"):
            parts = [
                TopicPartition(topic, p) for p in sorted(reader.partitions_for_topic(topic) or [])
            ]
            if not parts:
                return []
            reader.assign(parts)
            reader.seek_to_beginning(*parts)
            ends = reader.end_offsets(parts)
            found: dict[int, list[bytes]] = {part.partition: [] for part in parts}
            deadline = time.monotonic() + timeout_s
            while any(reader.position(p) < ends[p] for p in parts):
                if time.monotonic() > deadline:
                    raise AdapterError(f"reading all of {topic!r} took over {timeout_s:.0f} s")
                for part, records in reader.poll(timeout_ms=200).items():
                    found[part.partition].extend(record.value for record in records)
            return [body for part in parts for body in found[part.partition]]

    def ensure_topic(self, topic: str) -> None:
        """Create the topic with c360's partitions and retention unless it exists."""
        if topic in self._topics_made:
            return
        retention = KEEP_FOREVER if topic == DLQ else self._retention_ms
        spec = {
            "num_partitions": self._partitions,
            "replication_factor": -1,  # the broker's default: 1 here, 3 on a production cluster
            "configs": {"retention.ms": str(retention)},
        }
        with self._lock:
            try:
                self._get_admin().create_topics({topic: spec}, wait_for_metadata=True)
                log.info("Created topic %r with %d partitions.", topic, self._partitions)
            except TopicAlreadyExistsError:
                pass
            self._topics_made.add(topic)

    def close(self) -> None:
        """Leave every consumer group (so partitions move at once) and close connections."""
        for reader in list(self._readers.values()):
            reader.close()
        self._readers.clear()
        if self._producer is not None:
            _close_producer(self._producer, self._timeout_ms / 1000)
        if self._admin is not None:
            self._admin.close()

    @contextlib.contextmanager
    def _translated(self, doing: str) -> Iterator[None]:
        """Driver errors become c360's: BusUnavailable when the broker is out of reach."""
        try:
            yield
        except _UNREACHABLE as exc:
            raise BusUnavailable(
                f"the event bus at {self._bootstrap} is unreachable ({doing}): {exc}; is the "
                "broker running and C360_KAFKA_BOOTSTRAP right?"
            ) from exc
        except KafkaError as exc:
            raise AdapterError(f"{doing} failed: {exc}") from exc

    def _committed(
        self, admin: KafkaAdminClient, group: str, parts: list[TopicPartition]
    ) -> dict[TopicPartition, OffsetAndMetadata]:
        """The group's committed offsets. Retried for a few seconds while the broker makes its
        offsets topic (its first group lookup answers "coordinator not available")."""
        deadline = time.monotonic() + self._timeout_ms / 1000
        while True:
            try:
                found = admin.list_group_offsets({group: parts}).get(group, {})
                return dict(found)
            except CoordinatorNotAvailableError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def _get_producer(self) -> KafkaProducer:
        with self._lock:
            if self._producer is None:
                self._producer = KafkaProducer(
                    bootstrap_servers=self._bootstrap,
                    acks="all",
                    enable_idempotence=True,  # a retried send is written once
                    linger_ms=2,
                    max_block_ms=self._timeout_ms,
                    request_timeout_ms=self._timeout_ms,
                    delivery_timeout_ms=self._timeout_ms * 2,
                    bootstrap_timeout_ms=self._timeout_ms,
                    reconnect_backoff_max_ms=RECONNECT_BACKOFF_MAX_MS,
                )
            return self._producer

    def _discard_producer(self, producer: KafkaProducer) -> bool:
        """Set a producer whose publish failed aside; the next publish makes a new one. False if
        another thread had already done so.

        A failed publish leaves records in the producer that expire later, and kafka-python
        3.0.12's idempotent producer never sends again after that: it forgets its producer id
        without asking for a new one. A new producer also starts with clean sequence numbers.
        The old one is closed in the background once its records have expired.
        """
        with self._lock:
            if self._producer is not producer:
                return False
            self._producer = None
        log.warning("A publish to %s failed; the next one uses a new producer.", self._bootstrap)
        threading.Thread(
            target=_close_producer,
            args=(producer, self._timeout_ms * 2 / 1000 + 1),
            name="kafka-producer-close",
            daemon=True,
        ).start()
        return True

    def _get_admin(self) -> KafkaAdminClient:
        if self._admin is None:
            self._admin = KafkaAdminClient(
                bootstrap_servers=self._bootstrap,
                request_timeout_ms=self._timeout_ms,
                bootstrap_timeout_ms=self._timeout_ms,
                reconnect_backoff_max_ms=RECONNECT_BACKOFF_MAX_MS,
            )
        return self._admin

    def _reader(self, topic: str, group: str, consumer: str) -> _Reader:
        key = (topic, group, consumer)
        reader = self._readers.get(key)
        if reader is None:
            options = {
                **self._consumer_options,
                "bootstrap_servers": self._bootstrap,
                "group_id": group,
                "client_id": consumer,
                "enable_auto_commit": False,
                "auto_offset_reset": "earliest",
                "bootstrap_timeout_ms": self._timeout_ms,
                "reconnect_backoff_max_ms": RECONNECT_BACKOFF_MAX_MS,
            }
            reader = _Reader(topic, KafkaConsumer(**options))
            reader.subscribe()
            self._readers[key] = reader
        return reader


@dataclass
class _Reader:
    """One consumer of one group on one topic, and the records it has handed out whose offsets
    are not committed yet: per partition, offset -> when handed out (None once acknowledged),
    oldest first."""

    topic: str
    consumer: KafkaConsumer
    held: dict[int, dict[int, float | None]] = field(default_factory=dict)

    def subscribe(self) -> None:
        self.consumer.subscribe([self.topic], listener=_Rebalance(self))

    def read(self, count: int, block_ms: int) -> list[Delivery]:
        self._rewind_stale()
        batches = self.consumer.poll(timeout_ms=block_ms, max_records=count)
        now = time.monotonic()
        deliveries = []
        for part, records in batches.items():
            held = self.held.setdefault(part.partition, {})
            for record in records:
                held.setdefault(record.offset, now)
                stream = f"{self.topic}:{part.partition}"
                deliveries.append(Delivery(stream, str(record.offset), [record.value]))
        return deliveries

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        touched = set()
        for delivery in deliveries:
            topic, _, partition = delivery.stream.rpartition(":")
            held = self.held.get(int(partition)) if topic == self.topic else None
            if held is not None and int(delivery.entry_id) in held:
                held[int(delivery.entry_id)] = None
                touched.add(int(partition))
        offsets = {}
        for partition in touched:
            done = _pop_acknowledged(self.held[partition])
            if done is not None:
                offsets[TopicPartition(self.topic, partition)] = OffsetAndMetadata(done + 1)
        if not offsets:
            return
        try:
            self.consumer.commit(offsets)
        except CommitFailedError as exc:  # the partitions moved on; they will be read again
            log.warning("Commit on %r failed after a rebalance: %s.", self.topic, exc)
            self.forget([part.partition for part in offsets])

    def close(self) -> None:
        self.consumer.close()

    def forget(self, partitions: Sequence[int]) -> None:
        for partition in partitions:
            self.held.pop(partition, None)

    def _rewind_stale(self) -> None:
        """Read again from the oldest record held unacknowledged too long."""
        now = time.monotonic()
        for partition, held in self.held.items():
            oldest = next(iter(held), None)
            handed_at = held.get(oldest) if oldest is not None else None
            if handed_at is not None and now - handed_at > REDELIVER_AFTER_S:
                log.info("Reading %r:%d again from offset %d.", self.topic, partition, oldest)
                self.consumer.seek(TopicPartition(self.topic, partition), oldest)
                held.clear()


def _close_producer(producer: KafkaProducer, timeout_s: float) -> None:
    """Close a producer, waiting up to `timeout_s` for its records; with the broker away they
    cannot be delivered, and kafka-python then raises instead of closing: that is logged."""
    try:
        producer.close(timeout=timeout_s)
    except KafkaError as exc:
        log.warning("A Kafka producer closed with undelivered records: %s", exc)


def _key(customer_key: str) -> bytes:
    return customer_key.encode("utf-8", "surrogatepass")  # as `bus.partition_for` reads keys


def _pop_acknowledged(held: dict[int, float | None]) -> int | None:
    """Drop the acknowledged records at the front; the last offset dropped, if any."""
    done = None
    while held:
        oldest = next(iter(held))
        if held[oldest] is not None:
            break
        del held[oldest]
        done = oldest
    return done


class _Rebalance(ConsumerRebalanceListener):
    """Drops the bookkeeping of partitions that moved to another consumer: their records will
    be delivered there again from the last committed offset (stages are idempotent)."""

    def __init__(self, reader: _Reader) -> None:
        self.reader = reader

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.reader.forget([part.partition for part in revoked])

    def on_partitions_assigned(self, assigned: Any) -> None:
        return None


class AsyncKafkaBus:
    """Publishing from the gateway's event loop: the thread-safe synchronous producer runs in a
    worker thread. Counters are not Kafka's business: they go to Valkey, as on the Valkey bus.

    While the broker is out of reach, requests are refused at once: after a publish found it
    unreachable, none tries for RETRY_BROKER_AFTER_S, then one at a time until one succeeds.
    Otherwise every request would hold a thread for the whole bus timeout, and requests queued
    behind them for the few threads would wait far longer before their 503.
    """

    def __init__(self, bus: KafkaBus, counters: Any | None = None) -> None:
        self._bus = bus
        self._counters = counters  # a redis.asyncio.Redis, or None to drop counters
        self._retry_at: float | None = None  # monotonic; None while the broker answers
        self._trying = False

    async def publish(self, topic: str, messages: Sequence[tuple[str, bytes]]) -> None:
        """Publish durably; BusUnavailable if the broker does not take them in time."""
        await self._guarded(self._bus.publish, topic, messages)

    async def publish_many(
        self,
        by_topic: Mapping[str, Sequence[tuple[str, bytes]]],
        counters: Mapping[str, int] | None = None,
    ) -> None:
        """Publish each topic's messages, then add to the counters (only once all are kept).

        The events are kept once Kafka has them; the counters are Valkey's and only feed
        /metrics. With Valkey out of reach the request still succeeds (a 500 would make
        clients send kept events again) and the counts miss it, which the log says.
        """
        await self._guarded(self._publish_all, by_topic)
        if self._counters is None or not counters:
            return
        try:
            async with self._counters.pipeline(transaction=False) as pipe:
                for key, amount in counters.items():
                    if amount:
                        pipe.incrby(key, amount)
                if len(pipe):
                    await pipe.execute()
        except (redis.RedisError, OSError) as exc:
            log.warning("Events kept on Kafka but not counted (Valkey: %s): %s", exc, counters)

    async def check(self) -> None:
        """BusUnavailable while publishes are being refused or no broker answers."""
        self._refuse_if_just_failed()
        await asyncio.to_thread(self._bus.check)

    async def close(self) -> None:
        """Close the producer and consumers."""
        await asyncio.to_thread(self._bus.close)

    async def _guarded(self, publish: Any, *args: Any) -> None:
        """Run a publish in a thread unless the broker was just found out of reach."""
        trial = self._admit()
        try:
            await asyncio.to_thread(self._unless_refused, publish, *args)
        finally:
            if trial:
                self._trying = False

    def _admit(self) -> bool:
        """Whether this publish is the one trying a broker that was out of reach; raises
        BusUnavailable when it should not try at all."""
        if self._retry_at is None:
            return False
        if self._trying:
            raise BusUnavailable("the event bus was unreachable a moment ago; not retrying yet")
        self._refuse_if_just_failed()
        self._trying = True
        return True

    def _unless_refused(self, publish: Any, *args: Any) -> None:
        """In the thread: a publish that waited for a thread while another found the broker
        out of reach is refused too, instead of waiting the bus timeout in turn. The outcome
        is noted here, before the thread takes the next publish waiting for it."""
        self._refuse_if_just_failed()
        try:
            publish(*args)
        except BusUnavailable:
            self._retry_at = time.monotonic() + RETRY_BROKER_AFTER_S
            raise
        self._retry_at = None

    def _refuse_if_just_failed(self) -> None:
        retry_at = self._retry_at  # a single read and write each time: no lock is needed
        if retry_at is not None and time.monotonic() < retry_at:
            raise BusUnavailable("the event bus was unreachable a moment ago; not retrying yet")

    def _publish_all(self, by_topic: Mapping[str, Sequence[tuple[str, bytes]]]) -> None:
        for topic, messages in by_topic.items():
            self._bus.publish(topic, messages)
