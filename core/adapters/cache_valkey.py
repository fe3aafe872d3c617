"""The profile cache on Valkey: `c360:profile:<id>` holds the JSON document,
`c360:ident:<type>:<value>` the profile id. Entries expire after `cache_ttl_s`."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import msgspec
import redis

from c360.errors import AdapterError

_ENCODER = msgspec.json.Encoder(decimal_format="number")
# fractional numbers back as Decimal: money read as float would lose cents (13990.93)
_DECODER = msgspec.json.Decoder(float_hook=Decimal)


class ValkeyProfileCache:
    """Profile cache backed by a Valkey connection."""

    def __init__(self, client: redis.Redis, ttl_s: int) -> None:
        self._client = client
        self._ttl = ttl_s

    def put(self, documents: Sequence[dict[str, Any]]) -> None:
        """Write documents and identifier index entries in one round trip."""
        if not documents:
            return
        with _translated("writing profiles"), self._client.pipeline(transaction=False) as pipe:
            for doc in documents:
                profile_id = doc["profile_id"]
                pipe.set(f"c360:profile:{profile_id}", _ENCODER.encode(doc), ex=self._ttl)
                for ident in doc.get("identifiers", ()):
                    pipe.set(
                        f"c360:ident:{ident['type']}:{ident['value']}", profile_id, ex=self._ttl
                    )
            pipe.execute()

    def get(self, profile_id: str) -> dict[str, Any] | None:
        """The cached document, or None when absent or expired."""
        with _translated("reading a profile"):
            raw = self._client.get(f"c360:profile:{profile_id}")
        return _DECODER.decode(raw) if raw else None

    def lookup(self, id_type: str, id_value: str) -> str | None:
        """The profile id of an identifier, if cached."""
        with _translated("looking up an identifier"):
            raw = self._client.get(f"c360:ident:{id_type}:{id_value}")
        return raw.decode() if raw else None

    def forget(self, profile_ids: Sequence[str]) -> None:
        """Delete cached documents; their identifiers are re-indexed by the surviving profile."""
        if profile_ids:
            with _translated("forgetting profiles"):
                self._client.delete(*(f"c360:profile:{pid}" for pid in profile_ids))

    def clear(self) -> int:
        """Drop every cached profile and identifier entry; returns how many keys went."""
        removed = 0
        with _translated("clearing the cache"):
            for pattern in ("c360:profile:*", "c360:ident:*"):
                batch: list[bytes] = []
                for key in self._client.scan_iter(match=pattern, count=1000):
                    batch.append(key)
                    if len(batch) == 1000:
                        removed += self._client.delete(*batch)
                        batch = []
                if batch:
                    removed += self._client.delete(*batch)
        return removed


@contextmanager
def _translated(action: str) -> Iterator[None]:
    try:
        yield
    except redis.RedisError as exc:
        raise AdapterError(f"profile cache: {action} failed: {exc}") from exc
