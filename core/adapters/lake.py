"""The raw lake role: append-only Parquet, partitioned `dt=YYYY-MM-DD/event_type=...`.

`dt` is the day c360 received the event (so a day's partition is complete once the day is
over); the event's own time is the `timestamp` column. Files are written whole under a
temporary name and renamed into place, so a reader never sees half a file.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from c360.events.model import Event


def partition_of(event: Event) -> str:
    """The partition folder of an event: receipt day and event type."""
    return f"dt={event.received_at.date().isoformat()}/event_type={event.type}"


def file_of(batch_name: str, event: Event) -> str:
    """The lake file (relative to the lake's root) that holds `event` when written by a batch."""
    return f"{partition_of(event)}/{batch_name}.parquet"


class Lake(Protocol):
    """What the lake sink needs."""

    def write(self, batch_name: str, events: Sequence[Event]) -> list[str]:
        """Write events to `file_of(batch_name, event)`, each file whole; returns the files."""


class LakeQuery(Protocol):
    """SQL over the lake."""

    def query(self, sql: str) -> list[tuple]:
        """Run SQL where `{lake}` stands for the lake table function."""
