"""The raw lake role: append-only Parquet, partitioned `dt=YYYY-MM-DD/event_type=...`.

`dt` is the day c360 received the event (so a day's partition is complete once the day is
over); the event's own time is the `timestamp` column. Files are written whole under a
temporary name and renamed into place, so a reader never sees half a file.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from c360.events.model import Event


class Lake(Protocol):
    """What the lake sink needs."""

    def write(self, batch_name: str, events: Sequence[Event]) -> list[str]:
        """Write events as one file per partition; same batch name, same file names."""

    def remove(self, files: Sequence[str]) -> None:
        """Delete files (used when a re-delivered batch has nothing left to write)."""

    def files_of(self, batch_name: str) -> list[str]:
        """Files a batch wrote earlier, if any."""


class LakeQuery(Protocol):
    """SQL over the lake."""

    def query(self, sql: str) -> list[tuple]:
        """Run SQL where `{lake}` stands for the lake table function."""
