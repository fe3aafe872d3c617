"""F0, metadata sync: apply the governance database to the running system. Pending schema
migrations are applied (each in its own transaction: one that fails rolls back and leaves the
data as it was), pending attribute definitions are activated so F3 computes them from its next
batch, and on request attributes are back-filled for every live profile.

Reads and writes `governance.f0_runs` (one row per run, its steps and progress as they
happen), `governance.attribute_definitions`, `profiles.attributes` and the version token in
Valkey; audited. An advisory lock keeps two syncs, from any process, from running at once.

The back-fill computes from the PostgreSQL `events` table, not the lake: it holds every
stored event with the profile it resolved to (the lake has no profile ids, and rows merged or
unmerged later would need F3's history replayed), and one set-based statement per batch of
profiles is what F3 itself runs, so both give the same value by construction. Windowed
attributes (`window_days`) go stale as time passes with no new event, since F3 recomputes a
profile only when it updates it: a back-fill (scheduled, or on request) brings them current.
"""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from c360 import audit, migrate
from c360.analytics import cache as analytics_cache
from c360.errors import AdapterError, C360Error, InputError
from c360.events.model import encode
from c360.governance import attributes
from c360.periodic import PeriodicTask
from c360.runtime import Runtime

log = logging.getLogger(__name__)

TRIGGERS = ("ui", "schedule", "cli")
#: Profiles per back-fill statement: large enough to be set-based, small enough that one
#: statement holds its row locks briefly and progress moves visibly.
BACKFILL_BATCH = 5_000
_LOCK_KEY = 3_600_361  # pg advisory lock: one F0 sync at a time (migrate uses 3_600_360)


class SyncRunning(InputError):
    """Another F0 sync holds the lock."""

    status_code = 409


@dataclass(frozen=True, slots=True)
class F0Run:
    """One F0 run as recorded."""

    run_id: int
    started_at: datetime
    finished_at: datetime | None
    trigger: str
    actor: str
    outcome: str
    steps: list[dict[str, Any]]
    error: str | None

    def as_dict(self) -> dict[str, Any]:
        """The run as the API answers it."""
        return {name: getattr(self, name) for name in self.__slots__}


def sync(
    runtime: Runtime,
    actor: str,
    backfill: bool | list[str] = False,
    *,
    trigger: str = "cli",
) -> F0Run:
    """Run F0 once: migrations, activation, and the back-fill asked for (True: every active
    defined attribute; a list: those names). Raises SyncRunning when another sync runs; a
    failing step ends the run as `failed` with the error recorded, and is not raised."""
    if trigger not in TRIGGERS:
        raise InputError("invalid_trigger", f"trigger must be one of {', '.join(TRIGGERS)}")
    if isinstance(backfill, list):
        _check_backfill_names(runtime, backfill)
    with runtime.pool.connection() as lock:
        if not lock.execute("SELECT pg_try_advisory_lock(%s)", (_LOCK_KEY,)).fetchone()[0]:
            raise SyncRunning("f0_running", "an F0 sync is already running: wait for it")
        try:
            return _run(runtime, actor, backfill, trigger)
        finally:
            lock.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))


def runs(conn: psycopg.Connection, limit: int = 50) -> list[F0Run]:
    """The latest runs, newest first."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT * FROM governance.f0_runs ORDER BY run_id DESC LIMIT %s", (limit,)
        ).fetchall()
    return [F0Run(**row) for row in rows]


def get_run(conn: psycopg.Connection, run_id: int) -> F0Run | None:
    """One run by id."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "SELECT * FROM governance.f0_runs WHERE run_id = %s", (run_id,)
        ).fetchone()
    return F0Run(**row) if row else None


class F0Scheduler(PeriodicTask):
    """Runs `sync` every `settings.f0_sync_minutes` (0: never), the first after one interval;
    a sync already running elsewhere is skipped, not waited for. `stop()` ends it."""

    def __init__(self, runtime: Runtime, minutes: float | None = None) -> None:
        minutes = runtime.settings.f0_sync_minutes if minutes is None else minutes
        super().__init__("c360-f0-scheduler", (minutes or 0) * 60, run_at_start=False)
        self.runtime = runtime

    def tick(self) -> F0Run | None:
        """One scheduled sync; None when another was running or the store was unreachable."""
        try:
            return sync(self.runtime, "c360:schedule", trigger="schedule")
        except SyncRunning:
            log.info("Scheduled F0 sync skipped: another sync is running.")
        except (psycopg.Error, C360Error):
            log.warning("Scheduled F0 sync could not start.", exc_info=True)
        return None


def _run(runtime: Runtime, actor: str, backfill: bool | list[str], trigger: str) -> F0Run:
    with runtime.pool.connection() as conn:
        run_id = _start(conn, trigger, actor)
        steps: list[dict[str, Any]] = []
        try:
            steps.append(_migrations(conn, run_id, steps))
            steps.append(_activate(conn, runtime, actor, run_id, steps))
            if backfill:
                steps.append(_backfill(conn, runtime, run_id, steps, backfill))
                analytics_cache.note_new_data(runtime.valkey)  # answers computed before are old
        except (psycopg.Error, C360Error) as exc:
            log.warning("F0 run %r failed: %s", run_id, exc)
            _finish(conn, run_id, steps, "failed", _error_text(exc))
        else:
            _finish(conn, run_id, steps, "ok", None)
        audit.record(
            conn,
            actor=actor,
            action="f0.sync",
            target=f"f0_run:{run_id}",
            detail={"trigger": trigger, "backfill": backfill},
        )
        run = get_run(conn, run_id)
    assert run is not None
    return run


def _start(conn: psycopg.Connection, trigger: str, actor: str) -> int:
    row = conn.execute(
        "INSERT INTO governance.f0_runs (trigger, actor) VALUES (%s, %s) RETURNING run_id",
        (trigger, actor),
    ).fetchone()
    assert row is not None
    return int(row[0])


def _migrations(conn: psycopg.Connection, run_id: int, steps: list[dict[str, Any]]) -> dict:
    """Apply pending migrations; the failing one is named on the run and re-raised."""
    done = set(migrate.applied(conn))
    pending = [m.version for m in migrate.available() if m.version not in done]
    step = {"step": "migrations", "pending": pending, "applied": []}
    _progress(conn, run_id, [*steps, step])
    try:
        step["applied"] = migrate.upgrade(conn)
    except (psycopg.Error, C360Error):
        step["applied"] = sorted(set(migrate.applied(conn)) - done)
        step["failed"] = next((v for v in pending if v not in step["applied"]), None)
        steps.append(step)
        raise
    return step


def _activate(
    conn: psycopg.Connection,
    runtime: Runtime,
    actor: str,
    run_id: int,
    steps: list[dict[str, Any]],
) -> dict:
    """Pending definitions become active, audited, and every F3 process is told."""
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "UPDATE governance.attribute_definitions SET status = 'active',"
            " activated_at = now() WHERE status = 'pending' RETURNING name, version"
        ).fetchall()
        for row in rows:
            audit.record(
                conn,
                actor=actor,
                action="attribute.activate",
                target=f"attribute:{row['name']}",
                after={"status": "active", "version": row["version"]},
                detail={"f0_run": run_id},
            )
    attributes.bump_version(runtime.valkey)  # retirements since the last run count too
    step = {"step": "activate", "activated": sorted(row["name"] for row in rows)}
    _progress(conn, run_id, [*steps, step])
    return step


def _backfill(
    conn: psycopg.Connection,
    runtime: Runtime,
    run_id: int,
    steps: list[dict[str, Any]],
    names: bool | list[str],
) -> dict:
    """Recompute the chosen attributes for every live profile, a batch at a time, with
    the count done so far on the run after each batch. Each batch's cached profile documents
    are dropped once it commits, so the profile API's next read has the new attributes."""
    definitions = _chosen(conn, names)
    total_row = conn.execute("SELECT count(*) FROM profiles WHERE merged_into IS NULL").fetchone()
    step: dict[str, Any] = {
        "step": "backfill",
        "attributes": [d.name for d in definitions],
        "profiles": total_row[0] if total_row else 0,
        "done": 0,
    }
    after = None
    while definitions:
        ids = _next_batch(conn, after)
        if not ids:
            break
        with conn.transaction():
            attributes.apply_to_profiles(conn, definitions, ids)
        _forget_cached(runtime, ids)
        step["done"] += len(ids)
        after = ids[-1]
        _progress(conn, run_id, [*steps, step])
    return step


def _forget_cached(runtime: Runtime, profile_ids: list[Any]) -> None:
    """Drop back-filled profiles' cached documents (they hold the attributes from before)."""
    try:
        runtime.cache.forget([str(profile_id) for profile_id in profile_ids])
    except AdapterError as exc:  # the documents expire with the cache TTL
        log.warning(
            "Could not drop %d back-filled profiles from the cache: %s", len(profile_ids), exc
        )


def _chosen(conn: psycopg.Connection, names: bool | list[str]) -> list[attributes.Definition]:
    active = attributes.active_definitions(conn)
    if names is True:
        return active
    by_name = {d.name: d for d in active}
    unknown = [name for name in names if name not in by_name]
    if unknown:
        raise InputError(
            "not_active",
            f"cannot back-fill {', '.join(unknown)}: only active defined attributes can be"
            " back-filled (built-in ones are always current); sync first to activate",
        )
    return [by_name[name] for name in names]


def _check_backfill_names(runtime: Runtime, names: list[str]) -> None:
    """Refuse names that are not defined attributes F0 can make active (before any run)."""
    with runtime.pool.connection() as conn:
        rows = conn.execute(
            "SELECT name FROM governance.attribute_definitions"
            " WHERE name = ANY(%s) AND status <> 'retired'",
            (names,),
        ).fetchall()
    unknown = sorted(set(names) - {row[0] for row in rows})
    if unknown or not all(isinstance(name, str) for name in names):
        raise InputError(
            "not_backfillable",
            f"cannot back-fill {', '.join(map(str, unknown))}: name defined attributes that"
            " are not retired (built-in ones are always current)",
        )


def _next_batch(conn: psycopg.Connection, after: Any) -> list[Any]:
    rows = conn.execute(
        "SELECT profile_id FROM profiles WHERE merged_into IS NULL"
        " AND (%(after)s::uuid IS NULL OR profile_id > %(after)s::uuid)"
        " ORDER BY profile_id LIMIT %(n)s",
        {"after": after, "n": BACKFILL_BATCH},
    ).fetchall()
    return [row[0] for row in rows]


def _progress(conn: psycopg.Connection, run_id: int, steps: list[dict[str, Any]]) -> None:
    conn.execute(
        "UPDATE governance.f0_runs SET steps = %s WHERE run_id = %s",
        (Jsonb(steps, dumps=_dumps), run_id),
    )


def _finish(
    conn: psycopg.Connection,
    run_id: int,
    steps: list[dict[str, Any]],
    outcome: str,
    error: str | None,
) -> None:
    conn.execute(
        "UPDATE governance.f0_runs SET steps = %s, outcome = %s, error = %s,"
        " finished_at = clock_timestamp() WHERE run_id = %s",
        (Jsonb(steps, dumps=_dumps), outcome, error, run_id),
    )


def _dumps(value: Any) -> str:
    return encode(value).decode()


def _error_text(exc: BaseException) -> str:
    """The error's own line (what an operator needs), not the traceback."""
    return "".join(traceback.format_exception_only(exc)).strip()[:2000]
