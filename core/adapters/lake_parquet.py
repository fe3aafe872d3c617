"""The raw lake as Parquet files in a local folder (the embedded default)."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from c360.adapters.lake import file_of
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
        """Write each partition's events to `<partition>/<batch_name>.parquet`, whole: a
        temporary file, fsynced, then renamed over any earlier copy."""
        by_partition: dict[str, list[Event]] = defaultdict(list)
        for event in events:
            by_partition[file_of(batch_name, event)].append(event)
        written = []
        for name, members in sorted(by_partition.items()):
            final = self.root / name
            final.parent.mkdir(parents=True, exist_ok=True)
            temporary = final.with_name(f".{final.name}.tmp")
            pq.write_table(_table(members), temporary, compression="zstd")
            _fsync(temporary)
            os.replace(temporary, final)
            written.append(name)
        return written


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
