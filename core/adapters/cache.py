"""The profile cache role: profile documents by id, and identifier -> profile id lookups."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol


class ProfileCache(Protocol):
    """What F3 writes and F5 reads first."""

    def put(self, documents: Sequence[dict[str, Any]]) -> None:
        """Store profile documents and index their identifiers."""

    def get(self, profile_id: str) -> dict[str, Any] | None:
        """A cached profile document, or None."""

    def lookup(self, id_type: str, id_value: str) -> str | None:
        """The profile id an identifier belongs to, if cached."""

    def forget(self, profile_ids: Sequence[str]) -> None:
        """Drop documents of profiles that no longer stand alone (merged into another)."""

    def clear(self) -> int:
        """Drop every cached entry (the store is the truth; reads refill the cache)."""
