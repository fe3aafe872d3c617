"""The raw lake as Parquet files in a local folder (the embedded default)."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from c360.events.model import Event, encode

SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("message_id", pa.string()),
        ("type", pa.string()),
        ("event", pa.string()),
        ("customer_key", pa.string()),
        ("user_id", pa.string()),
        ("anonymous_id", pa.string()),
        ("timestamp", pa.timestamp("us", tz="UTC")),
        ("received_at", pa.timestamp("us", tz="UTC")),
        ("payload", pa.string()),
    ]
)


class LocalParquetLake:
    """Parquet files under `root`, one per batch and partition."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def write(self, batch_name: str, events: Sequence[Event]) -> list[str]:
        """Write each partition's events to `<partition>/<batch_name>.parquet` atomically."""
        by_partition: dict[str, list[Event]] = defaultdict(list)
        for event in events:
            by_partition[partition_of(event)].append(event)
        written = []
        for partition, members in sorted(by_partition.items()):
            folder = self.root / partition
            folder.mkdir(parents=True, exist_ok=True)
            final = folder / f"{batch_name}.parquet"
            temporary = folder / f".{batch_name}.parquet.tmp"
            pq.write_table(_table(members), temporary, compression="zstd")
            _fsync(temporary)
            os.replace(temporary, final)
            written.append(str(final.relative_to(self.root)))
        return written

    def remove(self, files: Sequence[str]) -> None:
        """Delete files written earlier; missing ones are ignored."""
        for name in files:
            (self.root / name).unlink(missing_ok=True)

    def files_of(self, batch_name: str) -> list[str]:
        """Files of a batch already in the lake."""
        return [str(path.relative_to(self.root)) for path in self.root.glob(f"*/*/{batch_name}.parquet")]


def partition_of(event: Event) -> str:
    """The partition folder of an event: receipt day and event type."""
    return f"dt={event.received_at.date().isoformat()}/event_type={event.type}"


def _table(events: Sequence[Event]) -> pa.Table:
    return pa.table(
        {
            "source": [e.source for e in events],
            "message_id": [e.message_id for e in events],
            "type": [e.type for e in events],
            "event": [e.event for e in events],
            "customer_key": [e.customer_key for e in events],
            "user_id": [e.user_id for e in events],
            "anonymous_id": [e.anonymous_id for e in events],
            "timestamp": [e.timestamp for e in events],
            "received_at": [e.received_at for e in events],
            "payload": [encode(e).decode() for e in events],
        },
        schema=SCHEMA,
    )


def _fsync(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())
