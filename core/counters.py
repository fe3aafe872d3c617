"""Per-source counters of accepted and rejected events, kept in Valkey for every process."""

from __future__ import annotations

import redis


def _key(source: str, outcome: str) -> str:
    return f"c360:count:{outcome}:{source}"


def increments(source: str, accepted: int, rejected: int) -> dict[str, int]:
    """Counter keys and amounts for one request's outcome (the bus bumps them with its writes)."""
    return {_key(source, "accepted"): accepted, _key(source, "rejected"): rejected}


def read(client: redis.Redis, source: str) -> tuple[int, int]:
    """(accepted, rejected) so far for a source."""
    accepted, rejected = client.mget(_key(source, "accepted"), _key(source, "rejected"))
    return int(accepted or 0), int(rejected or 0)
