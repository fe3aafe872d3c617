"""The gateway's in-process view of write keys and tracking plans, refreshed from PostgreSQL.

A gateway never queries PostgreSQL per request. At most every `VERSION_CHECK_S` it reads the
keyring version from Valkey (every change of a key or a plan bumps it, see
`c360.governance.sources.bump_version`) and reloads when the version moved, and reloads anyway
every `FULL_REFRESH_S` (in case a bump was lost). Hence the bound: a revoked key stops
working, and a changed plan takes effect, on every gateway process at most
`VERSION_CHECK_S` seconds (plus one PostgreSQL read) after the change returns. A rotated key's
grace period ends on time: expiry is compared with the request's own clock.

A key the snapshot does not know (and that is not a settings key) makes the gateway look at
the version at once (`Keyring.recheck`), so a key works as soon as the call that made it has
returned; those extra looks are at most one per `RECHECK_S`, so a flood of bad keys costs
Valkey ten reads a second and PostgreSQL a reload only when the version really moved.

When PostgreSQL is out of reach the gateway keeps the keys it has (settings keys always work)
and tries again after `RETRY_AFTER_FAILURE_S`.

Touches: reads governance.write_keys and governance.tracking_plans, one Valkey key.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import anyio.to_thread
import psycopg
import redis
import redis.asyncio as aioredis

from c360.governance.sources import VERSION_KEY, key_digest
from c360.governance.tracking_plans import (
    CompiledPlan,
    PlanChecker,
    active_plans,
    compile_plan,
)
from c360.runtime import Runtime

log = logging.getLogger(__name__)

#: Seconds between looks at the keyring version: the bound on how long a revoked key works.
VERSION_CHECK_S = 1.0

#: Seconds between the immediate version checks unknown keys cause: a new key waits at most
#: this long, and a flood of bad keys cannot make a process read more often than this.
RECHECK_S = 0.1

#: Seconds a reload waits to connect: a gateway whose PostgreSQL is down must keep answering.
CONNECT_TIMEOUT_S = 3

#: Seconds before trying PostgreSQL again after a failed reload: each try may hold one
#: request up to CONNECT_TIMEOUT_S, so an outage must not cost that every second.
RETRY_AFTER_FAILURE_S = 15.0

#: Seconds between reloads even when the version did not move (a lost bump, a flushed Valkey).
FULL_REFRESH_S = 30.0


@dataclass(frozen=True, slots=True)
class StoredKey:
    """What the gateway knows of a stored key: its source, and until when it works."""

    source: str
    key_id: str
    expires_at: datetime | None


@dataclass(frozen=True)
class Snapshot:
    """Keys and compiled plans as of one load."""

    version: bytes | None
    keys: dict[bytes, StoredKey] = field(default_factory=dict)
    plans: dict[str, dict[str, CompiledPlan]] = field(default_factory=dict)
    loaded_at: float = 0.0

    def source_for(self, key: str, now: datetime) -> str | None:
        """The source of a stored key that works at `now`, else None."""
        stored = self.keys.get(key_digest(key))
        if stored is None or (stored.expires_at is not None and stored.expires_at <= now):
            return None
        return stored.source

    def checker(self, source: str) -> PlanChecker | None:
        """The tracking-plan check for one request of `source`; None when it has no plans."""
        plans = self.plans.get(source)
        return PlanChecker(source, plans) if plans else None


#: A compiled plan by (source, event, version).
Compiled = dict[tuple[str, str, int], CompiledPlan]


def load(runtime: Runtime, version: bytes | None, compiled: Compiled, loaded_at: float) -> Snapshot:
    """Read live keys and active plans; plans already compiled (same version) are reused.
    A connection of its own, not the pool's: the gateway uses no pool, and a reload once in a
    while does not need one."""
    dsn = runtime.settings.postgres_dsn
    assert dsn is not None
    with psycopg.connect(dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as conn:
        rows = conn.execute(
            "SELECT key_sha256, source, key_id, expires_at FROM governance.write_keys"
            " WHERE revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())"
        ).fetchall()
        plans = active_plans(conn)
    keys = {bytes(digest): StoredKey(source, key_id, ends) for digest, source, key_id, ends in rows}
    by_source: dict[str, dict[str, CompiledPlan]] = {}
    for plan in plans:
        name = (plan.source, plan.event, plan.version)
        by_source.setdefault(plan.source, {})[plan.event] = compiled.get(name) or compile_plan(plan)
    return Snapshot(version, keys, by_source, loaded_at)


class Keyring:
    """One per gateway process: hands out the current snapshot, refreshing it when due."""

    def __init__(
        self,
        runtime: Runtime,
        valkey: aioredis.Redis,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._runtime = runtime
        self._valkey = valkey
        self._clock = clock
        self._snapshot: Snapshot | None = None
        self._next_check = 0.0
        self._next_recheck = 0.0
        self._rechecks = 0
        self._lock = asyncio.Lock()

    async def snapshot(self) -> Snapshot:
        """The current keys and plans; at most one refresh runs at a time, and requests that
        come meanwhile use the previous snapshot rather than wait."""
        current = self._snapshot
        if current is not None and (self._clock() < self._next_check or self._lock.locked()):
            return current
        async with self._lock:
            if self._snapshot is None or self._clock() >= self._next_check:
                await self._refresh()
        assert self._snapshot is not None
        return self._snapshot

    async def recheck(self) -> Snapshot:
        """The snapshot after a look at the version that began after this call: for a key the
        current snapshot does not know, which may have been made a moment ago. Callers that
        arrive while one waits share its look; looks are at least RECHECK_S apart."""
        asked = self._rechecks
        async with self._lock:
            if self._rechecks == asked:
                wait = self._next_recheck - self._clock()
                if wait > 0:
                    await asyncio.sleep(wait)
                self._rechecks += 1
                self._next_recheck = self._clock() + RECHECK_S
                await self._refresh()
        assert self._snapshot is not None
        return self._snapshot

    async def _refresh(self) -> None:
        now = self._clock()
        self._next_check = now + VERSION_CHECK_S
        try:
            version = await self._valkey.get(VERSION_KEY)
        except (redis.RedisError, OSError) as exc:
            log.warning("Cannot read the keyring version: %s; keys reload on schedule.", exc)
            version = self._snapshot.version if self._snapshot else None
        current = self._snapshot
        fresh = current is not None and now < current.loaded_at + FULL_REFRESH_S
        if fresh and current is not None and current.version == version:
            return
        await self._reload(version, now)

    async def _reload(self, version: bytes | None, now: float) -> None:
        compiled = {
            (c.plan.source, c.plan.event, c.plan.version): c
            for plans in (self._snapshot.plans.values() if self._snapshot else ())
            for c in plans.values()
        }
        try:
            self._snapshot = await anyio.to_thread.run_sync(
                load, self._runtime, version, compiled, now
            )
        except psycopg.Error as exc:
            log.warning("Cannot load write keys and tracking plans: %s; keeping the last.", exc)
            self._next_check = now + RETRY_AFTER_FAILURE_S
            if self._snapshot is None:
                # settings keys still work; stored ones wait for the next check
                self._snapshot = Snapshot(version=None, loaded_at=now - FULL_REFRESH_S)


class PlanCache:
    """The same snapshot for a process without an event loop (the F1 actor for connectors'
    events), refreshed by the same rule: tracking plans apply there within VERSION_CHECK_S."""

    def __init__(self, runtime: Runtime, clock: Callable[[], float] = time.monotonic) -> None:
        self._runtime = runtime
        self._clock = clock
        self._snapshot = Snapshot(version=None, loaded_at=-FULL_REFRESH_S)
        self._next_check = 0.0

    def checker(self, source: str) -> PlanChecker | None:
        """The tracking-plan check for one batch of `source`; None when it has no plans."""
        now = self._clock()
        if now >= self._next_check:
            self._refresh(now)
        return self._snapshot.checker(source)

    def _refresh(self, now: float) -> None:
        self._next_check = now + VERSION_CHECK_S
        try:
            version = self._runtime.valkey.get(VERSION_KEY)
        except (redis.RedisError, OSError) as exc:
            log.warning("Cannot read the keyring version: %s; plans reload on schedule.", exc)
            version = self._snapshot.version
        fresh = now < self._snapshot.loaded_at + FULL_REFRESH_S
        if fresh and self._snapshot.version == version:
            return
        compiled = {
            (c.plan.source, c.plan.event, c.plan.version): c
            for plans in self._snapshot.plans.values()
            for c in plans.values()
        }
        try:
            self._snapshot = load(self._runtime, version, compiled, now)
        except psycopg.Error as exc:
            log.warning("Cannot load tracking plans: %s; keeping the last.", exc)
            self._next_check = now + RETRY_AFTER_FAILURE_S
