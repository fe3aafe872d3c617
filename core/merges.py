"""Merges outside F3's batch, their history and evidence, unmerge, and the review queue.

Each public function is one step in one transaction (a savepoint inside the caller's) over
profiles, events, identifiers, merges, identity_separations and match_reviews. Refreshing the
cache afterwards is the caller's job: the functions return the profile ids that changed.

A cluster is a live profile (merged_into NULL) and the profiles whose merged_into points at it.
Every event and identifier keeps `origin_profile`, the profile it first joined, so an unmerge
can split a cluster back along the merges that remain.

IdentityError                 a merge, unmerge or review the rules refuse
├── ProfileNotFound           no profile has this id
├── MergeRefused              the two profiles must not merge; `reason` says why
├── MergeNotFound             no merge has this id
├── AlreadyUndone             the merge was undone before
├── ReviewNotFound            no review has this id
└── AlreadyDecided            the review was decided before
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import msgspec
import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from c360.errors import C360Error
from c360.events.identifiers import UNIQUE_PER_PROFILE
from c360.governance import attributes, consent
from c360.profiles import (
    FACT_COLUMNS,
    ProfileState,
    apply_event,
    fact_from_row,
    merge_into,
    state_from_row,
)
from c360.stages.f3_resolve import write_profiles

log = logging.getLogger(__name__)

_JSON = msgspec.json.Encoder(decimal_format="number")  # as F3 writes: Decimal as exact numbers

#: Review states; a review starts pending and is decided once.
REVIEW_STATUSES = ("pending", "accepted", "rejected")

#: A cluster that changes under us (a concurrent merge or unmerge) is looked up again this often.
_LOCK_ATTEMPTS = 5

_MERGE_COLUMNS = (
    "merge_id, surviving_id, merged_id, rule, score, evidence, source_records, source,"
    " message_id, created_at, decided_by, undone_at, undone_by"
)


class IdentityError(C360Error):
    """A merge, unmerge or review decision the identity rules refuse; `code` is stable."""

    code = "identity_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ProfileNotFound(IdentityError):
    """No profile has this id."""

    code = "unknown_profile"


class MergeRefused(IdentityError):
    """The two profiles must not merge; `reason` says why."""

    code = "merge_refused"

    def __init__(self, reason: str) -> None:
        super().__init__(f"these profiles cannot be merged: {reason}")
        self.reason = reason


class MergeNotFound(IdentityError):
    """No merge has this id."""

    code = "unknown_merge"


class AlreadyUndone(IdentityError):
    """The merge was undone before."""

    code = "already_undone"


class ReviewNotFound(IdentityError):
    """No review has this id."""

    code = "unknown_review"


class AlreadyDecided(IdentityError):
    """The review was decided before."""

    code = "already_decided"


def merge_profiles(
    conn: psycopg.Connection,
    surviving_id: uuid.UUID,
    merged_id: uuid.UUID,
    rule: str,
    evidence: dict[str, Any],
    decided_by: str | None = None,
) -> int:
    """Fold `merged_id`'s cluster into `surviving_id`'s (both followed to their live profiles)
    and record the merge with its evidence; returns the merge id. `evidence` may hold `score`
    and `source_records` ([[source, messageId], ...] or record ids), stored in their columns.
    Raises MergeRefused when they are one profile, were kept apart, or hold different unique
    identifiers (userId, CRM id)."""
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        roots, rows = _lock_live(cur, [surviving_id, merged_id])
        surviving, merged = roots[surviving_id], roots[merged_id]
        reason = _refusal(cur, surviving, merged)
        if reason:
            raise MergeRefused(reason)

        target = state_from_row(rows[surviving])
        merge_into(target, state_from_row(rows[merged]))
        write_profiles(cur, [target])
        _repoint(cur, merged, surviving)
        _refresh_governed(cur, [surviving])
        merge_id = _insert_merge(cur, surviving, merged, rule, evidence, decided_by)
    log.info("Merged profile %r into %r by %r (merge %d).", merged, surviving, rule, merge_id)
    return merge_id


def refusal(conn: psycopg.Connection, a: uuid.UUID, b: uuid.UUID) -> str | None:
    """Why `merge_profiles` would refuse to merge these two now, or None (nothing locked)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return _refusal(cur, _root(cur, a), _root(cur, b))


def merge_history(conn: psycopg.Connection, profile_id: uuid.UUID) -> list[dict[str, Any]]:
    """Every merge in the profile's cluster, undone ones included, oldest first, with evidence."""
    with conn.cursor(row_factory=dict_row) as cur:
        members = _members(cur, _root(cur, profile_id))
        return cur.execute(
            f"SELECT {_MERGE_COLUMNS} FROM merges"
            " WHERE surviving_id = ANY(%(m)s) OR merged_id = ANY(%(m)s)"
            " ORDER BY created_at, merge_id",
            {"m": members},
        ).fetchall()


def unmerge(
    conn: psycopg.Connection, merge_id: int, undone_by: str | None = None
) -> tuple[uuid.UUID, uuid.UUID]:
    """Undo one merge: the merged profile (with what was merged into it before) gets its id,
    events and identifiers back, both sides' aggregates are recomputed from their events, and
    the pair is kept apart from now on. Returns (the surviving side's live id, the merged id)."""
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        merge = _lock_merge(cur, merge_id)
        root, members = _lock_cluster(cur, merge["surviving_id"])
        cur.execute(
            "UPDATE merges SET undone_at = clock_timestamp(), undone_by = %s WHERE merge_id = %s",
            (undone_by, merge_id),
        )

        merged = merge["merged_id"]
        if merged not in members:  # merges and merged_into disagree: nothing safe to undo
            raise IdentityError(f"merge {merge_id} is not part of its survivor's cluster")
        split = _component(cur, merged, members)
        _detach(cur, merged, split)
        _follow_identifiers(cur, root, merged)
        _recompute(cur, root)
        _recompute(cur, merged)
        consent.rebuild(cur, [root, merged])  # each side's choices come from its own events
        _refresh_governed(cur, [root, merged])
        _separate(
            cur,
            merge["surviving_id"],
            merged,
            f"merge {merge_id} undone",
            undone_by,
            merge_id=merge_id,
        )
    log.info("Undid merge %d: profile %r split from %r.", merge_id, merged, root)
    return root, merged


def review_queue(
    conn: psycopg.Connection, status: str = "pending", limit: int = 50, offset: int = 0
) -> list[dict[str, Any]]:
    """Reviews with this status, oldest first."""
    if status not in REVIEW_STATUSES:
        raise ValueError(f"status must be one of {', '.join(REVIEW_STATUSES)}; got {status!r}")
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT * FROM match_reviews WHERE status = %s"
            " ORDER BY created_at, review_id LIMIT %s OFFSET %s",
            (status, limit, offset),
        ).fetchall()


def enqueue_review(
    conn: psycopg.Connection,
    a: uuid.UUID,
    b: uuid.UUID,
    score: float | None,
    evidence: dict[str, Any],
) -> int | None:
    """Queue a pair for a person to decide; returns the pending review's id (the existing one
    when the pair is already queued), or None when there is nothing to decide: the pair is
    one profile already, or was kept apart (rejected before, or unmerged)."""
    first, second = sorted((a, b))
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        root_a, root_b = _root(cur, first), _root(cur, second)
        if root_a == root_b or _separated(cur, root_a, root_b):
            return None
        row = cur.execute(
            "INSERT INTO match_reviews (profile_a, profile_b, score, evidence)"
            " VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (profile_a, profile_b) WHERE status = 'pending' DO NOTHING"
            " RETURNING review_id",
            (first, second, score, Jsonb(evidence)),
        ).fetchone()
        if row is None:
            row = cur.execute(
                "SELECT review_id FROM match_reviews"
                " WHERE profile_a = %s AND profile_b = %s AND status = 'pending'",
                (first, second),
            ).fetchone()
    return row["review_id"]


def decide_review(
    conn: psycopg.Connection,
    review_id: int,
    accept: bool,
    decided_by: str | None = None,
    note: str | None = None,
) -> dict[str, Any]:
    """Accept (merge the pair, rule "review", with the review's evidence and the decision) or
    reject (keep the pair apart for good) a pending review; returns the decided review. An
    accepted pair the guards refuse raises MergeRefused and stays pending."""
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        review = _lock_review(cur, review_id)
        decision = {"review_id": review_id, "decided_by": decided_by, "note": note}
        merge_id = None
        if accept:
            evidence = {**review["evidence"], "score": review["score"], "review": decision}
            surviving, merged = _larger_first(cur, review["profile_a"], review["profile_b"])
            merge_id = merge_profiles(conn, surviving, merged, "review", evidence, decided_by)
        else:
            _separate(
                cur,
                review["profile_a"],
                review["profile_b"],
                f"review {review_id} rejected",
                decided_by,
                review_id=review_id,
            )
        return cur.execute(
            "UPDATE match_reviews SET status = %s, decided_at = clock_timestamp(),"
            " decided_by = %s, note = %s, merge_id = %s WHERE review_id = %s RETURNING *",
            ("accepted" if accept else "rejected", decided_by, note, merge_id, review_id),
        ).fetchone()


def _lock_live(
    cur: psycopg.Cursor, profile_ids: list[uuid.UUID]
) -> tuple[dict[uuid.UUID, uuid.UUID], dict[uuid.UUID, dict[str, Any]]]:
    """Each id's live profile, locked in profile-id order as F3 locks them, with its row."""
    for _attempt in range(_LOCK_ATTEMPTS):
        roots = {profile_id: _root(cur, profile_id) for profile_id in profile_ids}
        rows = cur.execute(
            "SELECT * FROM profiles WHERE profile_id = ANY(%s) ORDER BY profile_id FOR UPDATE",
            (sorted(set(roots.values())),),
        ).fetchall()
        if all(row["merged_into"] is None for row in rows):  # none merged while we waited
            return roots, {row["profile_id"]: row for row in rows}
    raise IdentityError("these profiles keep changing under concurrent merges; try again")


def _lock_cluster(cur: psycopg.Cursor, profile_id: uuid.UUID) -> tuple[uuid.UUID, list[uuid.UUID]]:
    """The live profile of `profile_id`'s cluster and all its members, locked in id order."""
    for _attempt in range(_LOCK_ATTEMPTS):
        root = _root(cur, profile_id)
        locked = [
            row["profile_id"]
            for row in cur.execute(
                "SELECT profile_id FROM profiles WHERE profile_id = %(r)s OR merged_into = %(r)s"
                " ORDER BY profile_id FOR UPDATE",
                {"r": root},
            )
        ]
        # a statement sees what committed while we waited: check nothing joined or left
        if _root(cur, profile_id) == root and _members(cur, root) == locked:
            return root, locked
    raise IdentityError("this cluster keeps changing under concurrent merges; try again")


def _root(cur: psycopg.Cursor, profile_id: uuid.UUID) -> uuid.UUID:
    row = cur.execute(
        "SELECT coalesce(merged_into, profile_id) AS root FROM profiles WHERE profile_id = %s",
        (profile_id,),
    ).fetchone()
    if row is None:
        raise ProfileNotFound(f"no profile has the id {str(profile_id)!r}")
    return row["root"]


def _members(cur: psycopg.Cursor, root: uuid.UUID) -> list[uuid.UUID]:
    rows = cur.execute(
        "SELECT profile_id FROM profiles WHERE profile_id = %(r)s OR merged_into = %(r)s"
        " ORDER BY profile_id",
        {"r": root},
    ).fetchall()
    return [row["profile_id"] for row in rows]


def _refusal(cur: psycopg.Cursor, surviving: uuid.UUID, merged: uuid.UUID) -> str | None:
    if surviving == merged:
        return "they are already one profile"
    if _separated(cur, surviving, merged):
        return "they were kept apart (an unmerge or a rejected review separated them)"
    clash = _unique_clash(cur, surviving, merged)
    if clash:
        return f"they hold different {clash} values"
    return None


def _separated(cur: psycopg.Cursor, a: uuid.UUID, b: uuid.UUID) -> bool:
    """True when a separation joins any member of a's cluster to any member of b's."""
    row = cur.execute(
        "WITH ma AS (SELECT profile_id FROM profiles WHERE profile_id = %(a)s"
        " OR merged_into = %(a)s),"
        " mb AS (SELECT profile_id FROM profiles WHERE profile_id = %(b)s"
        " OR merged_into = %(b)s)"
        " SELECT EXISTS (SELECT 1 FROM identity_separations s WHERE"
        " (s.profile_a IN (SELECT * FROM ma) AND s.profile_b IN (SELECT * FROM mb))"
        " OR (s.profile_a IN (SELECT * FROM mb) AND s.profile_b IN (SELECT * FROM ma))) AS x",
        {"a": a, "b": b},
    ).fetchone()
    return bool(row["x"])


def _unique_clash(cur: psycopg.Cursor, a: uuid.UUID, b: uuid.UUID) -> str | None:
    """The unique identifier type (userId, CRM id) the two hold different values of."""
    rows = cur.execute(
        "SELECT profile_id, id_type, id_value FROM identifiers"
        " WHERE profile_id IN (%s, %s) AND id_type = ANY(%s)",
        (a, b, sorted(UNIQUE_PER_PROFILE)),
    ).fetchall()
    held: dict[tuple[uuid.UUID, str], set[str]] = {}
    for row in rows:
        held.setdefault((row["profile_id"], row["id_type"]), set()).add(row["id_value"])
    for kind in sorted(UNIQUE_PER_PROFILE):
        mine, theirs = held.get((a, kind)), held.get((b, kind))
        if mine and theirs and mine != theirs:
            return kind
    return None


def _repoint(cur: psycopg.Cursor, merged: uuid.UUID, surviving: uuid.UUID) -> None:
    """The merged cluster's profiles, identifiers and events now belong to the survivor."""
    cur.execute(
        "UPDATE profiles SET merged_into = %(s)s, updated_at = clock_timestamp()"
        " WHERE profile_id = %(m)s OR merged_into = %(m)s",
        {"s": surviving, "m": merged},
    )
    cur.execute("UPDATE identifiers SET profile_id = %s WHERE profile_id = %s", (surviving, merged))
    cur.execute("UPDATE events SET profile_id = %s WHERE profile_id = %s", (surviving, merged))
    consent.fold(cur, merged, surviving)


def _refresh_governed(cur: psycopg.Cursor, profile_ids: list[uuid.UUID]) -> None:
    """Recompute the defined attributes (F0's) of profiles whose events just moved, as F3
    would for new events; without it a merge made here leaves them stale until a back-fill."""
    definitions = attributes.active_definitions(cur.connection)
    attributes.apply_to_profiles(cur.connection, definitions, profile_ids)


def _insert_merge(
    cur: psycopg.Cursor,
    surviving: uuid.UUID,
    merged: uuid.UUID,
    rule: str,
    evidence: dict[str, Any],
    decided_by: str | None,
) -> int:
    score = evidence.get("score")
    row = cur.execute(
        "INSERT INTO merges (surviving_id, merged_id, rule, evidence, score, source_records,"
        " decided_by) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING merge_id",
        (
            surviving,
            merged,
            rule,
            Jsonb(evidence, dumps=_dumps),
            float(score) if isinstance(score, int | float) else None,
            Jsonb(list(evidence.get("source_records") or []), dumps=_dumps),
            decided_by,
        ),
    ).fetchone()
    return row["merge_id"]


def _lock_merge(cur: psycopg.Cursor, merge_id: int) -> dict[str, Any]:
    row = cur.execute("SELECT * FROM merges WHERE merge_id = %s FOR UPDATE", (merge_id,)).fetchone()
    if row is None:
        raise MergeNotFound(f"no merge has the id {merge_id}")
    if row["undone_at"] is not None:
        raise AlreadyUndone(
            f"merge {merge_id} was undone at {row['undone_at'].isoformat()}"
            f" by {row['undone_by'] or 'an unnamed caller'}"
        )
    return row


def _component(cur: psycopg.Cursor, start: uuid.UUID, members: list[uuid.UUID]) -> list[uuid.UUID]:
    """The members still joined to `start` by merges that are not undone."""
    edges = cur.execute(
        "SELECT surviving_id, merged_id FROM merges"
        " WHERE undone_at IS NULL AND merged_id = ANY(%(m)s) AND surviving_id = ANY(%(m)s)",
        {"m": members},
    ).fetchall()
    neighbours: dict[uuid.UUID, set[uuid.UUID]] = {}
    for edge in edges:
        neighbours.setdefault(edge["surviving_id"], set()).add(edge["merged_id"])
        neighbours.setdefault(edge["merged_id"], set()).add(edge["surviving_id"])
    seen, todo = {start}, [start]
    while todo:
        for other in neighbours.get(todo.pop(), ()):
            if other not in seen:
                seen.add(other)
                todo.append(other)
    return sorted(seen)


def _detach(cur: psycopg.Cursor, merged: uuid.UUID, split: list[uuid.UUID]) -> None:
    """`merged` is live again and heads its part; that part's events and identifiers follow
    their origin profiles back to it."""
    cur.execute(
        "UPDATE profiles SET updated_at = clock_timestamp(),"
        " merged_into = CASE WHEN profile_id = %(m)s THEN NULL ELSE %(m)s::uuid END"
        " WHERE profile_id = ANY(%(s)s)",
        {"m": merged, "s": split},
    )
    cur.execute(
        "UPDATE identifiers SET profile_id = %s WHERE origin_profile = ANY(%s)", (merged, split)
    )
    cur.execute("UPDATE events SET profile_id = %s WHERE origin_profile = ANY(%s)", (merged, split))


def _follow_identifiers(cur: psycopg.Cursor, root: uuid.UUID, merged: uuid.UUID) -> None:
    """Events that arrived while the two were one profile go where their identifiers now are:
    an event carrying only the restored side's identifiers (its anonymousId, its email) moves
    to it; one carrying identifiers of both sides stays with the survivor."""
    cur.execute(
        "UPDATE events e SET profile_id = %(m)s WHERE e.profile_id = %(r)s"
        " AND EXISTS (SELECT 1 FROM jsonb_array_elements(e.identifiers) x JOIN identifiers i"
        "   ON i.id_type = x->>0 AND i.id_value = x->>1 WHERE i.profile_id = %(m)s)"
        " AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(e.identifiers) x JOIN identifiers i"
        "   ON i.id_type = x->>0 AND i.id_value = x->>1 WHERE i.profile_id = %(r)s)",
        {"m": merged, "r": root},
    )


def _recompute(cur: psycopg.Cursor, profile_id: uuid.UUID) -> None:
    """Rebuild a live profile's aggregates and traits by replaying its events in order, as F3
    applied them; its attributes are kept."""
    row = cur.execute("SELECT attributes FROM profiles WHERE profile_id = %s", (profile_id,))
    state = ProfileState(profile_id=profile_id, attributes=dict(row.fetchone()["attributes"]))
    with cur.connection.cursor() as plain:  # tuples, as fact_from_row reads them
        facts = plain.execute(
            f"SELECT {FACT_COLUMNS} FROM events WHERE profile_id = %s"
            " ORDER BY event_time, received_at, message_id",
            (profile_id,),
        ).fetchall()
    for fact in facts:
        apply_event(state, fact_from_row(fact))
    write_profiles(cur, [state])


def _separate(
    cur: psycopg.Cursor,
    a: uuid.UUID,
    b: uuid.UUID,
    reason: str,
    created_by: str | None,
    *,
    merge_id: int | None = None,
    review_id: int | None = None,
) -> None:
    first, second = sorted((a, b))
    cur.execute(
        "INSERT INTO identity_separations (profile_a, profile_b, reason, merge_id, review_id,"
        " created_by) VALUES (%s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (profile_a, profile_b) DO NOTHING",
        (first, second, reason, merge_id, review_id, created_by),
    )


def _lock_review(cur: psycopg.Cursor, review_id: int) -> dict[str, Any]:
    row = cur.execute(
        "SELECT * FROM match_reviews WHERE review_id = %s FOR UPDATE", (review_id,)
    ).fetchone()
    if row is None:
        raise ReviewNotFound(f"no review has the id {review_id}")
    if row["status"] != "pending":
        raise AlreadyDecided(
            f"review {review_id} was {row['status']} at {row['decided_at'].isoformat()}"
            f" by {row['decided_by'] or 'an unnamed reviewer'}"
        )
    return row


def _larger_first(cur: psycopg.Cursor, a: uuid.UUID, b: uuid.UUID) -> tuple[uuid.UUID, uuid.UUID]:
    """The pair with the cluster holding more events first: it survives, so fewer rows move."""
    rows = cur.execute(
        "SELECT p.profile_id, live.event_count FROM profiles p"
        " JOIN profiles live ON live.profile_id = coalesce(p.merged_into, p.profile_id)"
        " WHERE p.profile_id IN (%s, %s)",
        (a, b),
    ).fetchall()
    counts = {row["profile_id"]: row["event_count"] for row in rows}
    return (b, a) if counts.get(b, 0) > counts.get(a, 0) else (a, b)


def _dumps(value: Any) -> str:
    return _JSON.encode(value).decode()
