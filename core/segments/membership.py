"""Keeping saved segments current: members computed in full when a segment is saved, then
re-evaluated for just the profiles F3 reports as updated. Idempotent: evaluating the same
profiles again changes nothing, so a redelivered batch is harmless. Touches
analytics.segment_members and analytics.segments (member_count, computed_at).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import psycopg

from c360.segments.spec import Node, SpecError, parse
from c360.segments.sql import matching_ids

log = logging.getLogger(__name__)


def compute_full(conn: psycopg.Connection, segment_id: int, node: Node, now: datetime) -> int:
    """Make the segment's members exactly the live profiles matching `node` (those already in
    keep their `since`); returns the member count. Run it inside the saving transaction."""
    hit, params = matching_ids(node, now)
    row = conn.execute(
        f"WITH hit AS ({hit}),"
        " gone AS (DELETE FROM analytics.segment_members m WHERE m.segment_id = %s"
        " AND m.profile_id NOT IN (SELECT profile_id FROM hit)),"
        " added AS (INSERT INTO analytics.segment_members (segment_id, profile_id, since)"
        " SELECT %s, profile_id, %s FROM hit ON CONFLICT DO NOTHING)"
        " UPDATE analytics.segments SET member_count = (SELECT count(*) FROM hit),"
        " computed_at = %s WHERE segment_id = %s RETURNING member_count",
        [*params, segment_id, segment_id, now, now, segment_id],
    ).fetchone()
    return int(row[0]) if row else 0


def recompute_all(
    conn: psycopg.Connection, region: str, now: datetime | None = None
) -> dict[int, int]:
    """Compute every saved segment's members in full, each in its own transaction; returns
    the member count by segment id. For filters with a moving window (`within_days`), whose
    members change as time passes even when no profile does: run it on a schedule."""
    now = now or datetime.now(UTC)
    counts = {}
    for segment_id, spec in conn.execute(
        "SELECT segment_id, spec FROM analytics.segments ORDER BY segment_id"
    ).fetchall():
        node = _node(segment_id, spec, region)
        if node is not None:
            with conn.transaction():
                counts[segment_id] = compute_full(conn, segment_id, node, now)
    return counts


def refresh(
    conn: psycopg.Connection,
    profile_ids: Iterable[Any],
    region: str,
    now: datetime | None = None,
) -> int:
    """Re-evaluate every saved segment for these profiles (and the profiles merged into
    them, which leave every segment): one statement per segment, each segment in its own
    short transaction. Returns how many memberships began or ended."""
    now = now or datetime.now(UTC)
    ids = _with_merged(conn, [uuid.UUID(str(profile_id)) for profile_id in profile_ids])
    if not ids:
        return 0
    changed = 0
    for segment_id, spec in conn.execute(
        "SELECT segment_id, spec FROM analytics.segments ORDER BY segment_id"
    ).fetchall():
        node = _node(segment_id, spec, region)
        if node is not None:
            changed += _refresh_segment(conn, segment_id, node, ids, now)
    return changed


def _refresh_segment(
    conn: psycopg.Connection, segment_id: int, node: Node, ids: list[uuid.UUID], now: datetime
) -> int:
    """Members among `ids` follow the filter; member_count moves by exactly the rows that
    changed (each insert or delete counted once, whatever runs beside it)."""
    hit, params = matching_ids(node, now, among=ids)
    with conn.transaction():
        row = conn.execute(
            f"WITH hit AS ({hit}),"
            " gone AS (DELETE FROM analytics.segment_members m WHERE m.segment_id = %s"
            " AND m.profile_id = ANY(%s) AND m.profile_id NOT IN (SELECT profile_id FROM hit)"
            " RETURNING 1),"
            " added AS (INSERT INTO analytics.segment_members (segment_id, profile_id, since)"
            " SELECT %s, profile_id, %s FROM hit ON CONFLICT DO NOTHING RETURNING 1),"
            " delta AS (SELECT (SELECT count(*) FROM added) AS added,"
            " (SELECT count(*) FROM gone) AS gone)"
            " UPDATE analytics.segments s SET member_count = s.member_count + d.added - d.gone,"
            " computed_at = %s FROM delta d WHERE s.segment_id = %s RETURNING d.added + d.gone",
            [*params, segment_id, ids, segment_id, now, now, segment_id],
        ).fetchone()
    return int(row[0]) if row else 0  # no row: the segment was deleted meanwhile


def _with_merged(conn: psycopg.Connection, ids: list[uuid.UUID]) -> list[uuid.UUID]:
    """The ids plus every profile merged into one of them: F3 publishes only the survivor of
    a merge, and the merged-away profile must leave the segments it was in."""
    if not ids:
        return []
    rows = conn.execute(
        "SELECT profile_id FROM profiles WHERE merged_into = ANY(%s)", (ids,)
    ).fetchall()
    return sorted({*ids, *(row[0] for row in rows)})


def _node(segment_id: int, spec: Any, region: str) -> Node | None:
    """The saved filter; one that no longer reads (an older model) is skipped, not fatal."""
    try:
        return parse(spec, region)
    except SpecError as exc:
        log.warning("Saved segment %r has a filter that no longer reads: %s", segment_id, exc)
        return None
