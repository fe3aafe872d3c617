"""Per-source counters of accepted and rejected events, kept in Valkey for every process."""

from __future__ import annotations

import redis
import redis.asyncio as aioredis


def _key(source: str, outcome: str) -> str:
    return f"c360:count:{outcome}:{source}"


class AsyncCounters:
    """Counting from the gateway's event loop."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client

    async def count(self, source: str, accepted: int, rejected: int) -> None:
        """Add one request's outcome."""
        async with self._client.pipeline(transaction=False) as pipe:
            if accepted:
                pipe.incrby(_key(source, "accepted"), accepted)
            if rejected:
                pipe.incrby(_key(source, "rejected"), rejected)
            await pipe.execute()


def read(client: redis.Redis, source: str) -> tuple[int, int]:
    """(accepted, rejected) so far for a source."""
    accepted, rejected = client.mget(_key(source, "accepted"), _key(source, "rejected"))
    return int(accepted or 0), int(rejected or 0)
