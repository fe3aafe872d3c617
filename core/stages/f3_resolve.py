"""F3: resolve identity, update live aggregates, write profiles, refresh the cache.

Each event is applied exactly once: it is marked resolved in the same transaction that changes
its profile's aggregates, and events already resolved are skipped. Advisory locks on the
batch's identifiers serialise competing resolutions of the same person across workers.

The transaction runs in psycopg's pipeline mode: statements that do not need each other's
results go to the server together, so a batch costs four round trips whatever its size (read,
lock and find owners, lock profiles, write and commit) instead of one per statement.

In the same transaction F3 records the consent the batch's events carry and recomputes the
active defined attributes (c360.governance.attributes) of the profiles it wrote, in one
statement over their stored events: a replay recomputes the same values, so neither breaks
exactly-once. Windowed attributes change as time passes without any event; F0's back-fill
recomputes them.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec
import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from c360.adapters.bus import UPDATED_PROFILES
from c360.errors import C360Error
from c360.events.identifiers import TRUST, UNIQUE_PER_PROFILE
from c360.governance import consent
from c360.governance.attributes import Definition, DefinitionCache, apply_to_profiles
from c360.identity import IdKey, Resolver
from c360.profiles import (
    FACT_COLUMNS,
    EventFact,
    ProfileState,
    document,
    fact_from_row,
    state_from_row,
)
from c360.runtime import Runtime

log = logging.getLogger(__name__)

#: A batch that loses a race (deadlock, a profile merged under it) is retried this often.
MAX_ATTEMPTS = 8

_JSON = msgspec.json.Encoder(decimal_format="number")

#: This process's copy of the active attribute definitions (one Valkey GET per batch).
_DEFINITIONS = DefinitionCache()


class _Retry(Exception):
    """The batch met a concurrent change and must run again."""


def resolve(runtime: Runtime, payloads: Sequence[bytes]) -> int:
    """Resolve a batch of (source, messageId) references; returns events newly resolved."""
    keys = sorted({tuple(msgspec.json.decode(payload)) for payload in payloads})
    resolved, resolver = _resolve_with_retries(runtime, keys)
    ids = _touched_profiles(runtime, keys, resolved, resolver)
    merged = [*(resolver.redirects if resolver else ()), *_match_probabilistically(runtime, ids)]
    runtime.cache.forget([str(profile_id) for profile_id in merged])  # else reads see them stale
    publish_profiles(runtime, ids)
    return resolved


#: What a batch can meet from a concurrent one; it then runs again from the start.
_RACES = (_Retry, psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)


def _resolve_with_retries(
    runtime: Runtime, keys: list[tuple[str, str]]
) -> tuple[int, Resolver | None]:
    for attempt in range(1, MAX_ATTEMPTS):
        try:
            return _resolve_once(runtime, keys)
        except _RACES:
            log.info("Identity batch met a concurrent change; retrying (attempt %d).", attempt)
            time.sleep(0.05 * attempt)
    return _resolve_once(runtime, keys)  # the last attempt's failure goes to the caller


def _resolve_once(runtime: Runtime, keys: list[tuple[str, str]]) -> tuple[int, Resolver | None]:
    definitions = _DEFINITIONS.current(runtime)
    with runtime.pool.connection() as conn, conn.pipeline(), conn.transaction():
        return _resolve_in_transaction(conn, keys, definitions)


def _touched_profiles(
    runtime: Runtime, keys: list[tuple[str, str]], resolved: int, resolver: Resolver | None
) -> list[Any]:
    """The live profiles of the batch's events. When every event was new the resolver placed
    them all; otherwise (a replay) they are read back, and published again too."""
    if resolver is not None and resolved == len(keys):
        return list({resolver.current(profile) for profile in resolver.assignments.values()})
    return _batch_profiles(runtime, keys)


def refresh_profiles(runtime: Runtime, keys: Sequence[tuple[str, str]]) -> None:
    """Write the current documents of the batch's profiles to the cache and publish them."""
    publish_profiles(runtime, _batch_profiles(runtime, keys))


def _batch_profiles(runtime: Runtime, keys: Sequence[tuple[str, str]]) -> list[Any]:
    with runtime.pool.connection() as conn:
        return [
            row[0]
            for row in conn.execute(
                "SELECT DISTINCT profile_id FROM events"
                " WHERE (source, message_id) IN (SELECT * FROM unnest(%s::text[], %s::text[]))"
                " AND profile_id IS NOT NULL",
                _key_columns(keys),
            )
        ]


def _match_probabilistically(runtime: Runtime, profile_ids: list[Any]) -> list[Any]:
    """Profiles merged away by the probabilistic matcher (none without a trained model). Its
    failure costs a merge, never an event: the batch is already resolved and committed."""
    from c360.stages import f3_match  # it merges through c360.merges, which imports this module

    try:
        with runtime.pool.connection() as conn:
            return f3_match.match_profiles(conn, profile_ids).merged_away
    except (psycopg.Error, C360Error):
        log.warning("Probabilistic matching of %d profiles failed", len(profile_ids), exc_info=True)
        return []


def publish_profiles(runtime: Runtime, profile_ids: Iterable[Any]) -> list[dict[str, Any]]:
    """Write the current documents of these profiles (following merges) to the cache and
    publish them on the updated-profiles topic; returns the documents."""
    with runtime.pool.connection() as conn:
        documents = load_documents(conn, profile_ids)
    runtime.cache.put(documents)
    runtime.bus.publish(
        UPDATED_PROFILES, [(doc["profile_id"], _JSON.encode(doc)) for doc in documents]
    )
    return documents


def load_documents(conn: psycopg.Connection, profile_ids: Iterable[Any]) -> list[dict[str, Any]]:
    """Profile documents (with identifiers) for live profiles, following merges."""
    ids = list(profile_ids)
    if not ids:
        return []
    live = "SELECT coalesce(merged_into, profile_id) FROM profiles WHERE profile_id = ANY(%s)"
    # both statements in one round trip
    with (
        conn.pipeline(),
        conn.cursor(row_factory=dict_row) as profiles,
        conn.cursor(row_factory=dict_row) as identifiers,
    ):
        profiles.execute(f"SELECT p.* FROM profiles p WHERE p.profile_id IN ({live})", (ids,))
        identifiers.execute(
            "SELECT profile_id, id_type AS type, id_value AS value, raw_value AS raw,"
            f" first_seen, last_seen FROM identifiers WHERE profile_id IN ({live})"
            " ORDER BY id_type, id_value",
            (ids,),
        )
        rows, idents = profiles.fetchall(), identifiers.fetchall()
    by_profile: dict[Any, list[dict[str, Any]]] = {}
    for ident in idents:
        by_profile.setdefault(ident.pop("profile_id"), []).append(ident)
    return [document(row, by_profile.get(row["profile_id"], [])) for row in rows]


def _resolve_in_transaction(
    conn: psycopg.Connection,
    keys: list[tuple[str, str]],
    definitions: Sequence[Definition] = (),
) -> tuple[int, Resolver | None]:
    """Events newly resolved, and the resolver that placed them (None when none was new)."""
    facts = _load_unresolved(conn, keys)
    if not facts:
        return 0, None
    identifiers = sorted(
        {(kind, value) for fact in facts for kind, value, _raw in fact.identifiers}
    )
    _lock_identifiers(conn, identifiers)  # sent with the next statement, run before it
    owners = _owners(conn, identifiers)
    profiles, separations = _lock_profiles(conn, set(owners.values()))

    resolver = Resolver(owners, profiles, separations)
    for fact in facts:
        resolver.resolve(fact)

    _write(conn, resolver, facts, definitions)  # sent with the commit
    return len(facts), resolver


def _load_unresolved(conn: psycopg.Connection, keys: list[tuple[str, str]]) -> list[EventFact]:
    rows = conn.execute(
        f"SELECT {FACT_COLUMNS} FROM events"
        " WHERE (source, message_id) IN (SELECT * FROM unnest(%s::text[], %s::text[]))"
        " AND profile_id IS NULL"
        " ORDER BY event_time, received_at, message_id"
        " FOR UPDATE SKIP LOCKED",
        _key_columns(keys),
    ).fetchall()
    return [fact_from_row(row) for row in rows]


def load_separations(
    conn: psycopg.Connection, live_ids: list[uuid.UUID]
) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """Pairs of these live profiles that must never merge: a separation between any members
    of their clusters (written by an unmerge or a rejected review), as live ids."""
    if len(live_ids) < 2:
        return []
    rows = conn.execute(
        "WITH members AS (SELECT profile_id, coalesce(merged_into, profile_id) AS live"
        " FROM profiles WHERE profile_id = ANY(%(ids)s) OR merged_into = ANY(%(ids)s))"
        " SELECT DISTINCT a.live, b.live FROM identity_separations s"
        " JOIN members a ON a.profile_id = s.profile_a"
        " JOIN members b ON b.profile_id = s.profile_b",
        {"ids": live_ids},
    ).fetchall()
    return [(row[0], row[1]) for row in rows if row[0] != row[1]]


def _lock_identifiers(conn: psycopg.Connection, identifiers: list[IdKey]) -> None:
    texts = [f"{kind}:{value}" for kind, value in identifiers]
    conn.execute(
        "SELECT pg_advisory_xact_lock(h) FROM"
        " (SELECT DISTINCT hashtextextended(x, 360) AS h FROM unnest(%s::text[]) x ORDER BY h) s",
        (texts,),
    )


def _owners(conn: psycopg.Connection, identifiers: list[IdKey]) -> dict[IdKey, uuid.UUID]:
    rows = conn.execute(
        "SELECT id_type, id_value, profile_id FROM identifiers"
        " WHERE (id_type, id_value) IN (SELECT * FROM unnest(%s::text[], %s::text[]))",
        ([kind for kind, _ in identifiers], [value for _, value in identifiers]),
    ).fetchall()
    return {(row[0], row[1]): row[2] for row in rows}


def _lock_profiles(
    conn: psycopg.Connection, profile_ids: set[uuid.UUID]
) -> tuple[dict[uuid.UUID, ProfileState], list[tuple[uuid.UUID, uuid.UUID]]]:
    """Lock the owners' profiles and read their states and separations (one round trip: the
    last two statements run after the lock, in the order sent)."""
    if not profile_ids:
        return {}, []
    ids = sorted(profile_ids)
    with conn.cursor(row_factory=dict_row) as locked, conn.cursor(row_factory=dict_row) as known:
        locked.execute(
            "SELECT * FROM profiles WHERE profile_id = ANY(%b) ORDER BY profile_id FOR UPDATE",
            (ids,),
        )
        known.execute(
            "SELECT profile_id, id_type, id_value FROM identifiers"
            " WHERE profile_id = ANY(%b) AND trust = 2",
            (ids,),
        )
        separations = load_separations(conn, ids)
        rows, strong = locked.fetchall(), known.fetchall()
    if len(rows) != len(profile_ids) or any(row["merged_into"] for row in rows):
        raise _Retry()
    states = {row["profile_id"]: state_from_row(row) for row in rows}
    for ident in strong:
        state = states[ident["profile_id"]]
        state.has_strong_id = True
        if ident["id_type"] in UNIQUE_PER_PROFILE:
            state.unique_ids.setdefault(ident["id_type"], ident["id_value"])
    return states, separations


_UPSERT_PROFILE = """
INSERT INTO profiles (profile_id, updated_at, first_seen, last_seen, event_count, events_by_type,
                      order_count, revenue, first_order_at, last_order_at, traits, trait_times,
                      trait_others, attributes)
VALUES (%s, clock_timestamp(), %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (profile_id) DO UPDATE SET
    updated_at = EXCLUDED.updated_at, first_seen = EXCLUDED.first_seen,
    last_seen = EXCLUDED.last_seen, event_count = EXCLUDED.event_count,
    events_by_type = EXCLUDED.events_by_type, order_count = EXCLUDED.order_count,
    revenue = EXCLUDED.revenue, first_order_at = EXCLUDED.first_order_at,
    last_order_at = EXCLUDED.last_order_at, traits = EXCLUDED.traits,
    trait_times = EXCLUDED.trait_times, trait_others = EXCLUDED.trait_others,
    attributes = EXCLUDED.attributes
"""

_UPSERT_IDENTIFIER = """
INSERT INTO identifiers (id_type, id_value, raw_value, trust, profile_id, first_seen, last_seen,
                         origin_profile)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (id_type, id_value) DO UPDATE SET
    first_seen = LEAST(identifiers.first_seen, EXCLUDED.first_seen),
    last_seen = GREATEST(identifiers.last_seen, EXCLUDED.last_seen)
"""


def write_profiles(cur: psycopg.Cursor, states: Iterable[ProfileState]) -> None:
    """Insert or update profiles' aggregates and traits (merged_into is left as it is)."""
    cur.executemany(_UPSERT_PROFILE, [_profile_row(state) for state in states])


def _write(
    conn: psycopg.Connection,
    resolver: Resolver,
    facts: Sequence[EventFact] = (),
    definitions: Sequence[Definition] = (),
) -> None:
    merged_away = set(resolver.redirects)
    live = [state for pid, state in resolver.profiles.items() if pid not in merged_away]
    with conn.cursor() as cur:
        write_profiles(cur, live)
        _write_merges(cur, resolver)
        cur.executemany(_UPSERT_IDENTIFIER, _identifier_rows(resolver))
        cur.execute(
            "UPDATE events SET profile_id = x.p, origin_profile = x.o,"
            " resolved_at = clock_timestamp()"
            " FROM unnest(%s::text[], %s::text[], %s::uuid[], %s::uuid[]) AS x(s, m, p, o)"
            " WHERE events.source = x.s AND events.message_id = x.m",
            _assignment_columns(resolver),
        )
        if resolver.conflicts:
            cur.executemany(
                "INSERT INTO identity_conflicts (profile_id, other_id, id_type, id_value, reason,"
                " source, message_id) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                [
                    (
                        resolver.current(c.profile),
                        resolver.current(c.other),
                        c.identifier[0],
                        c.identifier[1],
                        c.reason,
                        c.fact.source,
                        c.fact.message_id,
                    )
                    for c in resolver.conflicts
                ],
            )
        _write_consent(cur, resolver, facts)
    # after the events moved to their profiles, so the statement sees them
    apply_to_profiles(conn, list(definitions), [state.profile_id for state in live])
    _queue_weak_links(conn, resolver)


def _write_consent(cur: psycopg.Cursor, resolver: Resolver, facts: Sequence[EventFact]) -> None:
    """Fold merged profiles' consent into their survivors, then record the batch's choices."""
    for merge in resolver.merges:
        consent.fold(cur, merge.merged, resolver.current(merge.surviving))
    consent.write_choices(
        cur,
        consent.choices(
            facts,
            lambda fact: resolver.current(resolver.assignments[(fact.source, fact.message_id)]),
        ),
    )


def _queue_weak_links(conn: psycopg.Connection, resolver: Resolver) -> None:
    """Two known customers tied only by a device or an anonymousId are kept apart, and the pair
    goes to the review queue: one person on two logins, or two people on one laptop, is for a
    person to tell."""
    from c360 import merges  # merges builds on this module's writers

    for conflict in resolver.conflicts:
        if "too weak" not in conflict.reason:
            continue
        kind, value = conflict.identifier
        merges.enqueue_review(
            conn,
            resolver.current(conflict.profile),
            resolver.current(conflict.other),
            None,
            {
                "rule": "shared weak identifier",
                "identifier": {"type": kind, "value": value},
                "reason": conflict.reason,
                "source_records": [[conflict.fact.source, conflict.fact.message_id]],
            },
        )


def _write_merges(cur: psycopg.Cursor, resolver: Resolver) -> None:
    # profiles created and merged within this batch: insert them first (rows reference them)
    for merge in resolver.merges:
        merged_state = resolver.profiles[merge.merged]
        if merged_state.is_new:
            cur.execute(_UPSERT_PROFILE, _profile_row(merged_state))
    for merge in resolver.merges:
        surviving = resolver.current(merge.surviving)
        cur.execute(
            "UPDATE profiles SET merged_into = %s, updated_at = clock_timestamp()"
            " WHERE profile_id = %s OR merged_into = %s",
            (surviving, merge.merged, merge.merged),
        )
        cur.execute(
            "UPDATE identifiers SET profile_id = %s WHERE profile_id = %s",
            (surviving, merge.merged),
        )
        cur.execute(
            "UPDATE events SET profile_id = %s WHERE profile_id = %s", (surviving, merge.merged)
        )
        # the profile it joined at the time, not the batch's final survivor: an unmerge of a
        # later merge then keeps this one's shape
        cur.execute(
            "INSERT INTO merges (surviving_id, merged_id, rule, evidence, source, message_id,"
            " source_records) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (
                merge.surviving,
                merge.merged,
                merge.rule,
                Jsonb(merge.evidence),
                merge.fact.source,
                merge.fact.message_id,
                Jsonb([[merge.fact.source, merge.fact.message_id]]),
            ),
        )


def _profile_row(state: ProfileState) -> tuple:
    return (
        state.profile_id,
        state.first_seen,
        state.last_seen,
        state.event_count,
        Jsonb(state.events_by_type),
        state.order_count,
        state.revenue,
        state.first_order_at,
        state.last_order_at,
        Jsonb(state.traits, dumps=_dumps),
        Jsonb(state.trait_times),
        Jsonb(state.trait_others, dumps=_dumps),
        Jsonb(state.attributes, dumps=_dumps),
    )


def _identifier_rows(resolver: Resolver) -> list[tuple]:
    rows = {}
    for link in resolver.links:
        kind, value = link.identifier
        key = (kind, value)
        seen = link.fact.event_time
        if key in rows:
            first, last = rows[key][5], rows[key][6]
            rows[key] = (*rows[key][:5], min(first, seen), max(last, seen), rows[key][7])
        else:
            # origin: the profile it was first linked to, even if merged later in this batch
            profile = resolver.current(link.profile)
            rows[key] = (
                kind,
                value,
                link.raw,
                TRUST.get(kind, 1),
                profile,
                seen,
                seen,
                link.profile,
            )
    return [rows[key] for key in sorted(rows)]


def _assignment_columns(resolver: Resolver) -> tuple[list, list, list, list]:
    """Each event's live profile, and its origin: the profile it first joined, which an
    unmerge gives it back to even when that profile was merged later in the batch."""
    sources, ids, profiles, origins = [], [], [], []
    for (source, message_id), profile in resolver.assignments.items():
        sources.append(source)
        ids.append(message_id)
        profiles.append(resolver.current(profile))
        origins.append(profile)
    return sources, ids, profiles, origins


def _key_columns(keys: Sequence[tuple[str, str]]) -> tuple[list[str], list[str]]:
    return [key[0] for key in keys], [key[1] for key in keys]


def _dumps(value: Any) -> str:
    return _JSON.encode(value).decode()
