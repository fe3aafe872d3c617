"""Deletion requests ("forget me"): received by any identifier, then run: the profile and
every profile merged into it, their identifiers, events, consent, merge evidence, matcher
records, conversations with the agents, notifications, the messages c360 sent them and those
they sent (channels.deliveries and channels.inbound, matched by profile or by their own
addresses) and the cached document are erased, in one transaction, audited. An address's
unsubscribe (notify.preferences by address) is kept: it is what stops the next import from
mailing them again.

Reads and writes `governance.deletion_requests` and the tables above, and recomputes the saved
segments the person was in (analytics.segments). The lake is append-only Parquet and its
adapter cannot rewrite a file yet: the lake part is recorded as `pending` with the files that
hold the events (from `lake_index`, kept for that purpose), for a later rewrite.

A request's status says honestly how far it got: `received`, `running`, `failed`, `done`
(everything erased, the lake included) or `lake_pending` (the database, cache and segments are
erased, but the person's events are still in the lake files listed under counts.lake).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import psycopg
import redis
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from c360 import audit
from c360.errors import AdapterError, InputError
from c360.governance.policies import mask_email
from c360.notifications.scheduler import ADDRESS_SOURCES
from c360.profile_service import get_profile
from c360.runtime import Runtime
from c360.segments.membership import compute_full
from c360.segments.spec import SpecError, parse

log = logging.getLogger(__name__)


class UnknownRequest(InputError):
    """No deletion request has that id."""

    status_code = 404


def request_deletion(conn: psycopg.Connection, actor: str, reference: str) -> dict[str, Any]:
    """Record a request to erase the profile known by `reference` (any identifier)."""
    if not isinstance(reference, str) or not reference.strip() or len(reference) > 500:
        raise InputError(
            "invalid_reference",
            "reference must name the person: a profile id, email, phone or userId",
        )
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "INSERT INTO governance.deletion_requests (reference, requested_by)"
            " VALUES (%s, %s) RETURNING *",
            (reference.strip(), actor),
        ).fetchone()
        audit.record(
            conn,
            actor=actor,
            action="deletion.request",
            target=f"deletion:{row['request_id']}",
            detail={"request_id": row["request_id"]},  # the reference itself is personal data
        )
    return row


#: The status shown for a request whose database part is done but whose events are still in
#: the lake (stored as `done` with counts.lake.status `pending`: see honest_status).
LAKE_PENDING = "lake_pending"


def run_deletion(runtime: Runtime, request_id: int, actor: str = "c360") -> dict[str, Any]:
    """Carry out a request; returns it with its counts and its honest status: `lake_pending`
    while the person's events remain in lake files (listed in counts.lake.files), `done`
    only when nothing of them is left. An unknown reference ends `not_found` with nothing
    erased (the person is not, or no longer, known)."""
    with runtime.pool.connection() as conn:
        request = _claim(conn, request_id)
    doc = get_profile(runtime, request["reference"])
    counts: dict[str, Any] = {}
    chats: list[str] = []
    with runtime.pool.connection() as conn:
        try:
            with conn.transaction():
                region = runtime.settings.default_region
                counts = _erase(conn, doc, region) if doc else {"profiles": 0}
                chats = counts.pop("webchat", [])
                _finish(conn, request_id, "done", counts, None, request["reference"])
                audit.record(
                    conn,
                    actor=actor,
                    action="deletion.run",
                    target=f"deletion:{request_id}",
                    after={"status": _status_of("done", counts), "counts": counts},
                )
        except psycopg.Error as exc:
            log.warning("Deletion request %r failed: %s", request_id, exc)
            _finish(conn, request_id, "failed", {}, str(exc)[:2000])
    if doc:
        _forget_cached(runtime, counts.get("profile_ids", []))
        _forget_chats(runtime, chats)
    with runtime.pool.connection() as conn:
        return get_request(conn, request_id)


def deletion_requests(conn: psycopg.Connection, limit: int = 200) -> list[dict[str, Any]]:
    """Requests, newest first, each with its honest status."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT * FROM governance.deletion_requests ORDER BY request_id DESC LIMIT %s",
            (limit,),
        ).fetchall()
    return [honest_status(row) for row in rows]


def get_request(conn: psycopg.Connection, request_id: int) -> dict[str, Any]:
    """One request; UnknownRequest if there is none."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "SELECT * FROM governance.deletion_requests WHERE request_id = %s", (request_id,)
        ).fetchone()
    if row is None:
        raise UnknownRequest("unknown_request", f"no deletion request has the id {request_id}")
    return honest_status(row)


def honest_status(row: dict[str, Any]) -> dict[str, Any]:
    """The request with `status` saying what is left: a `done` row whose lake part is still
    pending is `lake_pending` (the table's status column predates the lake part and keeps
    `done` for "the database part is done")."""
    return {**row, "status": _status_of(row["status"], row.get("counts") or {})}


#: The status shown for a request that found nobody to erase (an unknown reference, or a person
#: an earlier request already erased): not to be read as a completed erasure.
NOT_FOUND = "not_found"


def _status_of(stored: str, counts: dict[str, Any]) -> str:
    if stored == "done" and isinstance(counts, dict) and counts.get("profiles") == 0:
        return NOT_FOUND
    lake = counts.get("lake") if isinstance(counts, dict) else None
    if stored == "done" and isinstance(lake, dict) and lake.get("status") == "pending":
        return LAKE_PENDING
    return stored


def _claim(conn: psycopg.Connection, request_id: int) -> dict[str, Any]:
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "SELECT * FROM governance.deletion_requests WHERE request_id = %s FOR UPDATE",
            (request_id,),
        ).fetchone()
        if row is None:
            raise UnknownRequest("unknown_request", f"no deletion request has the id {request_id}")
        if row["status"] in ("running", "done"):
            raise InputError(
                "deletion_not_runnable",
                f"deletion request {request_id} is {honest_status(row)['status']}",
            )
        cur.execute(
            "UPDATE governance.deletion_requests SET status = 'running' WHERE request_id = %s",
            (request_id,),
        )
    return row


#: Rows that point at a profile, deleted before the profiles themselves (foreign keys). Rows
#: of another person that merely originated in an erased profile (an unmerge moved them on)
#: are kept and re-pointed at their own profile first.
_DEPENDENTS = (
    (
        "kept_events",
        "UPDATE events SET origin_profile = profile_id WHERE origin_profile = ANY(%(ids)s)"
        " AND profile_id IS NOT NULL AND NOT profile_id = ANY(%(ids)s)",
    ),
    (
        "kept_identifiers",
        "UPDATE identifiers SET origin_profile = profile_id WHERE origin_profile = ANY(%(ids)s)"
        " AND NOT profile_id = ANY(%(ids)s)",
    ),
    ("consent", "DELETE FROM consent WHERE profile_id = ANY(%(ids)s)"),
    (
        "identity_conflicts",
        "DELETE FROM identity_conflicts WHERE profile_id = ANY(%(ids)s) OR other_id = ANY(%(ids)s)",
    ),
    (
        "separations",
        "DELETE FROM identity_separations WHERE profile_a = ANY(%(ids)s)"
        " OR profile_b = ANY(%(ids)s)",
    ),
    (
        "reviews",
        "DELETE FROM match_reviews WHERE profile_a = ANY(%(ids)s) OR profile_b = ANY(%(ids)s)",
    ),
    (
        "merges",
        "DELETE FROM merges WHERE surviving_id = ANY(%(ids)s) OR merged_id = ANY(%(ids)s)",
    ),
    ("identifiers", "DELETE FROM identifiers WHERE profile_id = ANY(%(ids)s)"),
    (
        "events",
        "DELETE FROM events WHERE profile_id = ANY(%(ids)s) OR origin_profile = ANY(%(ids)s)",
    ),
    ("match_keys", "DELETE FROM match_keys WHERE record_id = ANY(%(ids)s)"),
    ("match_records", "DELETE FROM match_records WHERE record_id = ANY(%(ids)s)"),
)


def _erase(conn: psycopg.Connection, doc: dict[str, Any], region: str) -> dict[str, Any]:
    """Delete a live profile's cluster (`doc` is its document) and everything that points at
    it, then recompute the saved segments it was in; the counts."""
    ids = [
        row[0]
        for row in conn.execute(
            "SELECT profile_id FROM profiles WHERE profile_id = %(p)s OR merged_into = %(p)s"
            " FOR UPDATE",
            {"p": doc["profile_id"]},
        )
    ]
    chats = [
        row[0]
        for row in conn.execute(
            "SELECT address FROM agents.conversations WHERE profile_id = ANY(%s)"
            " AND channel = 'webchat'",
            (ids,),
        )
    ]
    messages = _erase_messages(conn, ids, _addresses(conn, ids, doc))
    lake_files = [
        row[0]
        for row in conn.execute(
            "SELECT DISTINCT l.file FROM lake_index l JOIN events e"
            " ON e.source = l.source AND e.message_id = l.message_id"
            " WHERE e.profile_id = ANY(%s) ORDER BY 1",
            (ids,),
        )
    ]
    segment_ids = [
        row[0]
        for row in conn.execute(
            "SELECT DISTINCT segment_id FROM analytics.segment_members"
            " WHERE profile_id = ANY(%s) ORDER BY 1",
            (ids,),
        )
    ]
    counts: dict[str, Any] = dict(messages)
    counts["webchat"] = chats
    for name, sql in _DEPENDENTS:
        counts[name] = conn.execute(sql, {"ids": ids}).rowcount
    conn.execute("UPDATE profiles SET merged_into = NULL WHERE profile_id = ANY(%s)", (ids,))
    counts["profiles"] = conn.execute(
        "DELETE FROM profiles WHERE profile_id = ANY(%s)", (ids,)
    ).rowcount
    counts["profile_ids"] = [str(i) for i in ids]
    counts["segments"] = _recompute_segments(conn, segment_ids, region)
    # no lake file holds their events (none reached the lake): nothing is left to rewrite
    counts["lake"] = {"status": "pending" if lake_files else "done", "files": lake_files}
    return counts


def _addresses(
    conn: psycopg.Connection, ids: list[Any], doc: dict[str, Any]
) -> set[tuple[str, str]]:
    """(channel, address) pairs, lower-cased, where the person was reached or wrote from: the
    addresses notifications would use (identifiers and traits, as the scheduler picks them)
    and those of their conversations with the agents (a web-chat visitor's conversation id)."""
    found: set[tuple[str, str]] = set()
    traits = doc.get("traits") or {}
    for channel, (id_types, trait_names) in ADDRESS_SOURCES.items():
        for ident in doc.get("identifiers") or ():
            if ident.get("type") in id_types and ident.get("value"):
                found.add((channel, str(ident["value"]).lower()))
        for name in trait_names:
            value = traits.get(name)
            if isinstance(value, str) and value.strip():
                found.add((channel, value.strip().lower()))
    for channel, address in conn.execute(
        "SELECT channel, address FROM agents.conversations WHERE profile_id = ANY(%s)", (ids,)
    ):
        found.add((channel, address.lower()))
    return found


def _erase_messages(
    conn: psycopg.Connection, ids: list[Any], addresses: set[tuple[str, str]]
) -> dict[str, int]:
    """Delete what c360 sent the person (deliveries and their history) and what they sent
    (inbound messages); how many of each."""
    pairs = {"ids": ids, "channels": [c for c, _ in addresses], "to": [a for _, a in addresses]}
    to_them = "SELECT * FROM unnest(%(channels)s::text[], %(to)s::text[])"  # (channel, address)
    deliveries = conn.execute(
        "DELETE FROM channels.deliveries WHERE profile_id = ANY(%(ids)s)"
        f" OR (channel, lower(address)) IN ({to_them})",
        pairs,
    ).rowcount
    inbound = conn.execute(
        f"DELETE FROM channels.inbound WHERE (channel, lower(sender)) IN ({to_them})", pairs
    ).rowcount
    # test sends to their address (no profile named; theirs go with the profile)
    tests = conn.execute(
        "DELETE FROM notify.sends WHERE profile_id IS NULL"
        f" AND (channel, lower(address)) IN ({to_them})",
        pairs,
    ).rowcount
    return {"deliveries": deliveries, "inbound": inbound, "test_sends": tests}


def _recompute_segments(conn: psycopg.Connection, segment_ids: list[int], region: str) -> int:
    """Recompute the saved segments the erased profiles were in: their memberships went with
    the profiles (ON DELETE CASCADE), but member_count did not. Returns how many."""
    now = datetime.now(UTC)
    for segment_id, spec in conn.execute(
        "SELECT segment_id, spec FROM analytics.segments WHERE segment_id = ANY(%s)",
        (segment_ids,),
    ).fetchall():
        try:
            compute_full(conn, segment_id, parse(spec, region), now)
        except SpecError:  # a filter that no longer reads: at least count who is left
            conn.execute(
                "UPDATE analytics.segments SET member_count = (SELECT count(*) FROM"
                " analytics.segment_members WHERE segment_id = %s) WHERE segment_id = %s",
                (segment_id, segment_id),
            )
    return len(segment_ids)


def _finish(
    conn: psycopg.Connection,
    request_id: int,
    status: str,
    counts: dict[str, Any],
    error: Any,
    reference: str = "",
) -> None:
    conn.execute(
        "UPDATE governance.deletion_requests SET status = %s, counts = %s, error = %s,"
        " finished_at = clock_timestamp() WHERE request_id = %s",
        (status, Jsonb(counts), error, request_id),
    )
    if status == "done":  # the person is gone: the request no longer names them in full
        conn.execute(
            "UPDATE governance.deletion_requests SET reference = %s WHERE request_id = %s",
            (redacted(reference), request_id),
        )


def redacted(reference: Any) -> Any:
    """A reference as a finished request keeps it and lists show it: enough to tell requests
    apart (`l***@example.vn`, `le***`), not enough to name the person again. Redacting twice
    changes nothing."""
    if not isinstance(reference, str) or reference.endswith(_REDACTED):
        return reference
    if "@" in reference:
        return mask_email(reference)
    shown = reference[:2] if len(reference) > 6 else ""
    return f"{shown}{_REDACTED}"


_REDACTED = "***"


def _forget_chats(runtime: Runtime, conversation_ids: list[str]) -> None:
    """Drop the web-chat transcripts kept in Valkey for these conversations (a reconnecting
    widget would otherwise show them again)."""
    from c360.plugins.channel_webchat import forget_conversation  # Valkey keys of web chat

    for conversation_id in conversation_ids:
        try:
            forget_conversation(runtime.valkey, conversation_id)
        except (redis.RedisError, OSError) as exc:  # they expire with the chat's idle time
            log.warning("Could not drop web chat %r: %s", conversation_id, exc)


def _forget_cached(runtime: Runtime, profile_ids: list[str]) -> None:
    try:
        runtime.cache.forget(profile_ids)
    except AdapterError as exc:  # the entry expires with the cache TTL
        log.warning("Could not drop erased profiles %r from the cache: %s", profile_ids, exc)
