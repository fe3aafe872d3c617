"""The raw lake as Parquet files in a local folder (the embedded default), and the Parquet
format every lake writes: one schema, one encoding, read back the same way."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from c360.adapters.lake import files_of, is_lake_file, sql_string
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

#: zstd: the payload column is JSON, which it packs several times smaller at little CPU cost.
COMPRESSION = "zstd"


class LocalParquetLake:
    """Parquet files under `root`, one per batch and partition."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def write(self, batch_name: str, events: Sequence[Event]) -> list[str]:
        """Write each partition's events to `<partition>/<batch_name>.parquet`, whole: a
        temporary file, fsynced, then renamed over any earlier copy."""
        written = []
        for name, members in files_of(batch_name, events).items():
            final = self.root / name
            final.parent.mkdir(parents=True, exist_ok=True)
            temporary = final.with_name(f".{final.name}.tmp")
            write_parquet(members, temporary)
            _fsync(temporary)
            os.replace(temporary, final)
            written.append(name)
        return written

    def files(self) -> list[str]:
        """Lake files under the root; temporary files (`.name.parquet.tmp`, half-written by a
        batch that crashed) are not part of the lake."""
        if not self.root.is_dir():
            return []
        names = (path.relative_to(self.root).as_posix() for path in self.root.rglob("*.parquet"))
        return sorted(name for name in names if is_lake_file(name))

    def read_keys(self, name: str) -> list[tuple[str, str]]:
        """(source, message_id) of every row of one lake file."""
        return read_keys(self.root / name)

    def clickhouse_source(self) -> str | None:
        """`file(...)` over every Parquet file under the root; None while there is none."""
        if not self.files():
            return None
        return f"file({sql_string(f'{self.root}/**/*.parquet')}, Parquet)"


def table_of(events: Sequence[Event]) -> pa.Table:
    """The events as a table of the lake's schema."""
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


def write_parquet(events: Sequence[Event], target: Path | BinaryIO) -> None:
    """Write the events as one lake file to a path or a binary stream."""
    pq.write_table(table_of(events), target, compression=COMPRESSION)


def parquet_bytes(events: Sequence[Event]) -> bytes:
    """The events as the bytes of one lake file."""
    buffer = io.BytesIO()
    write_parquet(events, buffer)
    return buffer.getvalue()


def read_keys(source: Path | BinaryIO) -> list[tuple[str, str]]:
    """(source, message_id) of every row of a lake file, reading only those two columns."""
    keys = pq.read_table(source, columns=["source", "message_id"])
    sources = keys.column("source").to_pylist()
    return list(zip(sources, keys.column("message_id").to_pylist(), strict=True))


def _fsync(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())
