"""The raw lake role: append-only Parquet, partitioned `dt=YYYY-MM-DD/event_type=...`.

`dt` is the day c360 received the event (so a day's partition is complete once the day is
over); the event's own time is the `timestamp` column. A reader never sees half a file: the
local lake renames a finished file into place, the S3 lake puts each object whole.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from typing import Protocol

from c360.events.model import Event

#: A complete lake file's name, relative to the lake's root: anything else under the root (a
#: `.name.parquet.tmp` a crashed batch left, an object someone put beside the lake) is not part
#: of the lake.
LAKE_FILE = re.compile(r"dt=\d{4}-\d{2}-\d{2}/event_type=[^/]+/[^/.][^/]*\.parquet")


def partition_of(event: Event) -> str:
    """The partition folder of an event: receipt day and event type."""
    return f"dt={event.received_at.date().isoformat()}/event_type={event.type}"


def file_of(batch_name: str, event: Event) -> str:
    """The lake file (relative to the lake's root) that holds `event` when written by a batch."""
    return f"{partition_of(event)}/{batch_name}.parquet"


def files_of(batch_name: str, events: Sequence[Event]) -> dict[str, list[Event]]:
    """The events a batch writes, grouped by lake file, files in name order."""
    grouped: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        grouped[file_of(batch_name, event)].append(event)
    return dict(sorted(grouped.items()))


def is_lake_file(name: str) -> bool:
    """True if `name` (relative to the lake's root) names a complete lake file."""
    return LAKE_FILE.fullmatch(name) is not None


def sql_string(text: str) -> str:
    """`text` as a quoted ClickHouse string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


class Lake(Protocol):
    """What the lake sink, the index rebuild and SQL over the lake need; nothing outside the
    adapters touches the lake's files or objects."""

    def write(self, batch_name: str, events: Sequence[Event]) -> list[str]:
        """Write events to `file_of(batch_name, event)`, each file whole (an earlier file of
        the same name is replaced); returns the files."""

    def files(self) -> list[str]:
        """Names of the complete lake files, relative to the lake's root, in name order."""

    def read_keys(self, name: str) -> list[tuple[str, str]]:
        """(source, message_id) of every row of the lake file `name`."""

    def clickhouse_source(self) -> str | None:
        """A ClickHouse table function reading every Parquet file of the lake, such as
        `file('/data/lake/**/*.parquet', Parquet)`; None while the lake has no file."""


class LakeQuery(Protocol):
    """SQL over the lake (ClickHouse's dialect, on a server or embedded)."""

    #: True where the engine keeps a table of recent events that the lake sink must fill.
    keeps_recent: bool

    def query(self, sql: str) -> list[tuple]:
        """Run SQL where `{lake}` stands for every lake file and `{recent}` for the events
        received in the last days, each event counted once."""

    def insert_recent(self, events: Sequence[Event]) -> int:
        """Add events the sink just wrote to the recent table; returns the rows sent."""
