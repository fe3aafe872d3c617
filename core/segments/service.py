"""Segments for the JSON API and the UI: the builder's live preview, CSV export, and saved
segments (save, update, delete, list, members, shares, the segments of one profile).

Profiles in every answer pass through the access policies' masking for the principal, so
personal data masked on a page stays masked in a preview, a member list and an export. Every
change to a saved segment is written to the audit log in its own transaction. Touches
analytics.segments, analytics.segment_members, analytics.shares, governance.audit_log; reads
profiles, identifiers and events.
"""

from __future__ import annotations

import csv
import io
import logging
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from c360 import audit, sharing
from c360.access import Principal
from c360.errors import InputError
from c360.events.model import encode
from c360.reports.csv_export import safe_cell
from c360.runtime import Runtime
from c360.segments import membership
from c360.segments.pii import check_pii_filters
from c360.segments.spec import Node, parse
from c360.segments.sql import condition, matching_ids
from c360.stages.f3_resolve import load_documents

log = logging.getLogger(__name__)

#: Largest page of profiles in one answer.
MAX_LIMIT = 1000

#: Deepest offset: beyond it PostgreSQL's OFFSET would scan for minutes.
MAX_OFFSET = 10_000_000

#: Longest segment name and description.
MAX_NAME_CHARS = 200
MAX_DESCRIPTION_CHARS = 2000

#: Profiles loaded and written per step of a CSV export: bounded memory, few round trips.
EXPORT_CHUNK = 500

#: The export's columns: identifiers by type, then the profile's aggregates and traits.
EXPORT_IDENTIFIERS = ("user_id", "email", "phone", "anonymous_id", "crm_id")
EXPORT_AGGREGATES = (
    "first_seen",
    "last_seen",
    "event_count",
    "order_count",
    "revenue",
    "first_order_at",
    "last_order_at",
)
EXPORT_COLUMNS = ("profile_id", *EXPORT_IDENTIFIERS, *EXPORT_AGGREGATES, "traits", "attributes")

#: First characters that make a spreadsheet read a cell as a formula (OWASP's list).
#: Ordering of member and preview pages: most valuable first, stable across pages.
_ORDER = "p.revenue DESC, p.profile_id"

_SEGMENT_COLUMNS = (
    "segment_id, name, spec, description, owner, created_at, updated_at, member_count, computed_at"
)


class SegmentNotFound(InputError):
    """No saved segment with that id that the principal may see."""

    status_code = 404


class SegmentConflict(InputError):
    """The change clashes with another segment (its name is taken)."""

    status_code = 409


class NotOwner(InputError):
    """Only a segment's owner (or an admin) may change, delete or share it."""

    status_code = 403


def preview(
    runtime: Runtime,
    spec: Any,
    limit: int = 50,
    offset: int = 0,
    principal: Principal | None = None,
) -> dict[str, Any]:
    """The builder's live answer for an unsaved filter: `{count, profiles}` (a page of
    profile documents, masked for the principal)."""
    node = parse(spec, runtime.settings.default_region)
    _check_page(limit, offset)
    now = datetime.now(UTC)
    where, params = condition(node, now)
    live = f"FROM profiles p WHERE p.merged_into IS NULL AND ({where})"
    with runtime.pool.connection() as conn:
        check_pii_filters(conn, principal, node)
        total = conn.execute(f"SELECT count(*) {live}", params).fetchone()[0]
        rows = conn.execute(
            f"SELECT p.profile_id {live} ORDER BY {_ORDER} LIMIT %s OFFSET %s",
            [*params, limit, offset],
        ).fetchall()
        profiles = _documents(conn, [row[0] for row in rows], principal, "preview")
    return {"count": total, "limit": limit, "offset": offset, "profiles": profiles}


def count(runtime: Runtime, spec: Any, principal: Principal | None = None) -> int:
    """How many live profiles match an unsaved filter (the builder's count alone)."""
    node = parse(spec, runtime.settings.default_region)
    where, params = condition(node, datetime.now(UTC))
    with runtime.pool.connection() as conn:
        check_pii_filters(conn, principal, node)
        sql = f"SELECT count(*) FROM profiles p WHERE p.merged_into IS NULL AND ({where})"
        return int(conn.execute(sql, params).fetchone()[0])


def save(
    conn: psycopg.Connection,
    actor: str,
    name: str,
    spec: Any,
    description: str = "",
    region: str = "VN",
    principal: Principal | None = None,
) -> dict[str, Any]:
    """Save a filter as a segment owned by `actor` (Principal.actor) and compute its members
    in full, in one transaction with its audit entry. 409 if the name is taken. With the
    principal, a filter on personal data it may not see is refused (403)."""
    node = parse(spec, region)
    name, description = _name(name), _description(description)
    now = datetime.now(UTC)
    check_pii_filters(conn, principal, node)
    with conn.transaction():
        row = _insert(conn, actor, name, spec, description, now)
        membership.compute_full(conn, row["segment_id"], node, now)
        saved = _segment(conn, row["segment_id"])
        audit.record(
            conn,
            actor=actor,
            action="segment.create",
            target=f"segment:{row['segment_id']}",
            after=_audited(saved),
        )
    log.info(
        "Saved segment %r (%r) with %d members.", saved["segment_id"], name, saved["member_count"]
    )
    return saved


def update(
    conn: psycopg.Connection,
    principal: Principal,
    segment_id: int,
    *,
    name: str | None = None,
    spec: Any = None,
    description: str | None = None,
    region: str = "VN",
) -> dict[str, Any]:
    """Change a segment's name, filter or description (its owner or an admin); a new filter
    recomputes the members in full."""
    node = parse(spec, region) if spec is not None else None
    changes = {
        key: value
        for key, value in (
            ("name", None if name is None else _name(name)),
            ("description", None if description is None else _description(description)),
        )
        if value is not None
    }
    with conn.transaction():
        before = _owned(conn, principal, segment_id)
        if node is not None:
            check_pii_filters(conn, principal, node)
        now = datetime.now(UTC)
        _apply_changes(conn, segment_id, changes, spec, now)
        if node is not None:
            membership.compute_full(conn, segment_id, node, now)
        after = _segment(conn, segment_id)
        audit.record(
            conn,
            actor=principal.actor,
            action="segment.update",
            target=f"segment:{segment_id}",
            before=_audited(before),
            after=_audited(after),
        )
    return after


def delete(conn: psycopg.Connection, principal: Principal, segment_id: int) -> None:
    """Delete a segment (its owner or an admin), with its members and shares."""
    with conn.transaction():
        before = _owned(conn, principal, segment_id)
        sharing.forget(conn, "segment", segment_id)
        conn.execute("DELETE FROM analytics.segments WHERE segment_id = %s", (segment_id,))
        audit.record(
            conn,
            actor=principal.actor,
            action="segment.delete",
            target=f"segment:{segment_id}",
            before=_audited(before),
        )


def list_segments(conn: psycopg.Connection, principal: Principal) -> list[dict[str, Any]]:
    """The segments the principal may see (own, shared with its role or with it), by name."""
    ids = sorted(sharing.visible_ids(conn, "segment", principal))
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"SELECT {_SEGMENT_COLUMNS} FROM analytics.segments WHERE segment_id = ANY(%s)"
            " ORDER BY name",
            (ids,),
        ).fetchall()
    return [_with_mine(row, principal) for row in rows]


def get_segment(
    conn: psycopg.Connection, principal: Principal | None, segment_id: int
) -> dict[str, Any]:
    """One segment with its shares; 404 when unknown or not visible to the principal."""
    if principal is not None and not sharing.can_see(conn, "segment", segment_id, principal):
        raise _not_found(segment_id)
    found = _segment(conn, segment_id)
    found["shares"] = [s.as_dict() for s in sharing.shares_of(conn, "segment", segment_id)]
    return _with_mine(found, principal) if principal is not None else found


def members(
    runtime: Runtime,
    segment_id: int,
    limit: int = 50,
    offset: int = 0,
    principal: Principal | None = None,
) -> dict[str, Any]:
    """A page of a saved segment's members, most valuable first, masked for the principal."""
    _check_page(limit, offset)
    with runtime.pool.connection() as conn:
        found = get_segment(conn, principal, segment_id)
        rows = conn.execute(
            "SELECT p.profile_id FROM analytics.segment_members m"
            " JOIN profiles p ON p.profile_id = m.profile_id"
            f" WHERE m.segment_id = %s AND p.merged_into IS NULL ORDER BY {_ORDER}"
            " LIMIT %s OFFSET %s",
            (segment_id, limit, offset),
        ).fetchall()
        via = f"segment/{segment_id}/members"
        profiles = _documents(conn, [row[0] for row in rows], principal, via)
    return {
        "segment_id": segment_id,
        "count": found["member_count"],
        "computed_at": found["computed_at"],
        "limit": limit,
        "offset": offset,
        "profiles": profiles,
    }


def segments_of_profile(
    runtime: Runtime, profile_id: Any, principal: Principal | None = None
) -> list[dict[str, Any]]:
    """The saved segments a profile is in (those the principal may see), by name."""
    with runtime.pool.connection() as conn:
        rows = conn.execute(
            "SELECT s.segment_id, s.name, m.since FROM analytics.segment_members m"
            " JOIN analytics.segments s ON s.segment_id = m.segment_id"
            " WHERE m.profile_id = %s ORDER BY s.name",
            (uuid.UUID(str(profile_id)),),
        ).fetchall()
        visible = None if principal is None else sharing.visible_ids(conn, "segment", principal)
    return [
        {"segment_id": segment_id, "name": name, "since": since}
        for segment_id, name, since in rows
        if visible is None or segment_id in visible
    ]


def share_segment(
    conn: psycopg.Connection,
    principal: Principal,
    segment_id: int,
    role: str | None = None,
    user_id: int | None = None,
) -> sharing.Share:
    """Share a segment with a role or a user (its owner or an admin)."""
    _owned(conn, principal, segment_id)
    return sharing.share(conn, principal.actor, "segment", segment_id, role=role, user_id=user_id)


def unshare_segment(
    conn: psycopg.Connection, principal: Principal, segment_id: int, share_id: int
) -> sharing.Share:
    """Withdraw one share of a segment (its owner or an admin)."""
    _owned(conn, principal, segment_id)
    return sharing.unshare(conn, principal.actor, "segment", segment_id, share_id)


def export_csv(runtime: Runtime, source: Any, principal: Principal | None) -> Iterator[bytes]:
    """The profiles of a saved segment (`source` an int id: its members) or of a filter
    (`source` a spec) as UTF-8 CSV, streamed in chunks; masked for the principal, and every
    text cell safe from spreadsheet formulas. Checks (spec, visibility) run before the first
    chunk, so an error is an error answer, not a broken download."""
    with runtime.pool.connection() as conn:
        if isinstance(source, int) and not isinstance(source, bool):
            get_segment(conn, principal, source)
            ids, via = _member_ids(conn, source), f"export:segment/{source}"
        else:
            node = parse(source, runtime.settings.default_region)
            check_pii_filters(conn, principal, node)
            ids, via = _matching(conn, node), "export:segment-preview"
    return _csv_chunks(runtime, ids, principal, via)


#: One CSV cell, as every export writes it (numbers exact, formulas defused, objects as JSON).
csv_cell = safe_cell


def _csv_chunks(
    runtime: Runtime, ids: list[Any], principal: Principal | None, via: str
) -> Iterator[bytes]:
    yield _csv_rows([EXPORT_COLUMNS])
    for start in range(0, len(ids), EXPORT_CHUNK):
        with runtime.pool.connection() as conn:
            docs = _documents(conn, ids[start : start + EXPORT_CHUNK], principal, via)
        yield _csv_rows([_export_row(doc) for doc in docs])


def _csv_rows(rows: list[Any]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")


def _export_row(doc: dict[str, Any]) -> list[str]:
    by_type: dict[str, list[str]] = {}
    for ident in doc.get("identifiers", []):
        by_type.setdefault(ident["type"], []).append(str(ident["value"]))
    cells = [doc["profile_id"]]
    cells += [" ".join(by_type.get(id_type, [])) for id_type in EXPORT_IDENTIFIERS]
    cells += [doc.get(name) for name in EXPORT_AGGREGATES]
    cells += [doc.get("traits") or {}, doc.get("attributes") or {}]
    return [csv_cell(cell) for cell in cells]


def _documents(
    conn: psycopg.Connection, ids: list[Any], principal: Principal | None, via: str
) -> list[dict[str, Any]]:
    """Profile documents in the order of `ids`, masked; unmasked PII shown is audited."""
    docs = {doc["profile_id"]: doc for doc in load_documents(conn, ids)}
    ordered = [docs[str(profile_id)] for profile_id in ids if str(profile_id) in docs]
    masked, shown = mask_profiles(conn, principal, ordered)
    if principal is not None and shown:
        profile_ids = [doc["profile_id"] for doc in masked]
        audit.record_pii_read(
            conn, actor=principal.actor, profile_ids=profile_ids, fields=sorted(shown), via=via
        )
    return masked


def mask_profiles(
    conn: psycopg.Connection, principal: Principal | None, docs: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], set[str]]:
    """The documents as the principal may see them (c360.governance.policies), and the
    personal-data fields they show unmasked. Internal callers without a principal get the
    documents as they are."""
    if principal is None or not docs:
        return docs, set()
    try:
        from c360.governance import policies
    except ImportError:  # the access policies are not installed: nothing to mask by
        return docs, set()
    masked, shown = policies.mask_profiles(conn, principal, docs)
    return masked, set(shown)


def _member_ids(conn: psycopg.Connection, segment_id: int) -> list[Any]:
    rows = conn.execute(
        "SELECT p.profile_id FROM analytics.segment_members m"
        " JOIN profiles p ON p.profile_id = m.profile_id"
        f" WHERE m.segment_id = %s AND p.merged_into IS NULL ORDER BY {_ORDER}",
        (segment_id,),
    ).fetchall()
    return [row[0] for row in rows]


def _matching(conn: psycopg.Connection, node: Node) -> list[Any]:
    query, params = matching_ids(node, datetime.now(UTC))
    rows = conn.execute(f"{query} ORDER BY {_ORDER}", params).fetchall()
    return [row[0] for row in rows]


def _insert(
    conn: psycopg.Connection, actor: str, name: str, spec: Any, description: str, now: datetime
) -> dict[str, Any]:
    try:
        with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(
                "INSERT INTO analytics.segments"
                " (name, spec, description, owner, created_at, updated_at)"
                " VALUES (%s, %s, %s, %s, %s, %s) RETURNING segment_id",
                (name, _jsonb(spec), description, actor, now, now),
            ).fetchone()
    except psycopg.errors.UniqueViolation:
        raise _name_taken(name) from None


def _apply_changes(
    conn: psycopg.Connection, segment_id: int, changes: dict[str, str], spec: Any, now: datetime
) -> None:
    # column names come from the fixed keys above, never from the caller
    sets, params = [f"{column} = %s" for column in changes], list(changes.values())
    if spec is not None:
        sets.append("spec = %s")
        params.append(_jsonb(spec))
    try:
        with conn.transaction():
            conn.execute(
                f"UPDATE analytics.segments SET {', '.join([*sets, 'updated_at = %s'])}"
                " WHERE segment_id = %s",
                [*params, now, segment_id],
            )
    except psycopg.errors.UniqueViolation:
        raise _name_taken(changes["name"]) from None


def _owned(conn: psycopg.Connection, principal: Principal, segment_id: int) -> dict[str, Any]:
    """The segment, locked, if the principal may change it; else 404 (not visible) or 403."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            f"SELECT {_SEGMENT_COLUMNS} FROM analytics.segments WHERE segment_id = %s FOR UPDATE",
            (segment_id,),
        ).fetchone()
    if row is None or not sharing.can_see(conn, "segment", segment_id, principal):
        raise _not_found(segment_id)
    if row["owner"] != principal.actor and principal.role != sharing.SEES_ALL_ROLE:
        raise NotOwner(
            "not_owner",
            f"segment {segment_id} belongs to {row['owner']}; only its owner or an admin may "
            "change, delete or share it (save a copy under a new name instead)",
        )
    return row


def _segment(conn: psycopg.Connection, segment_id: int) -> dict[str, Any]:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            f"SELECT {_SEGMENT_COLUMNS} FROM analytics.segments WHERE segment_id = %s",
            (segment_id,),
        ).fetchone()
    if row is None:
        raise _not_found(segment_id)
    return row


def _with_mine(row: dict[str, Any], principal: Principal | None) -> dict[str, Any]:
    """The row with `mine`: whether the principal owns it (the UI offers edit and share)."""
    return {**row, "mine": principal is not None and row["owner"] == principal.actor}


def _audited(row: dict[str, Any]) -> dict[str, Any]:
    """What the audit log keeps of a segment: its definition, not its members."""
    keys = ("segment_id", "name", "spec", "description", "owner", "member_count")
    return {key: row[key] for key in keys}


def _check_page(limit: int, offset: int) -> None:
    if not 1 <= limit <= MAX_LIMIT or not 0 <= offset <= MAX_OFFSET:
        raise InputError(
            "invalid_page",
            f"limit must be 1 to {MAX_LIMIT} and offset 0 to {MAX_OFFSET:,}; "
            f"got limit {limit}, offset {offset}",
        )


def _name(name: Any) -> str:
    text = name.strip() if isinstance(name, str) else ""
    if not 1 <= len(text) <= MAX_NAME_CHARS or "\x00" in text:
        raise InputError(
            "invalid_segment_name",
            f"a segment's name must be text of 1 to {MAX_NAME_CHARS} characters",
        )
    return text


def _description(description: Any) -> str:
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION_CHARS:
        raise InputError(
            "invalid_segment_description",
            f"a segment's description must be text of at most {MAX_DESCRIPTION_CHARS} characters",
        )
    if "\x00" in description:
        raise InputError("invalid_segment_description", "a description must not contain NUL")
    return description


def _jsonb(value: Any) -> Jsonb:
    return Jsonb(value, dumps=lambda v: encode(v).decode())


def _name_taken(name: str) -> SegmentConflict:
    return SegmentConflict(
        "segment_name_taken", f"a segment named {name!r} exists already; choose another name"
    )


def _not_found(segment_id: int) -> SegmentNotFound:
    return SegmentNotFound("segment_not_found", f"there is no segment {segment_id} you can see")
