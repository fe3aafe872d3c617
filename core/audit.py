"""The audit log: every administrative change (who, what, when, before and after) and every
read of personal data through the UI or the API, in `governance.audit_log`.

The table refuses UPDATE, DELETE and TRUNCATE (a trigger in migration 0005), so an entry, once
written, stays. Write the entry in the same transaction as the change it records, so a change
is never without its entry and an entry never without its change.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from c360.events.model import encode


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One line of the audit log."""

    audit_id: int
    at: datetime
    actor: str
    action: str
    target: str
    before: Any
    after: Any
    detail: dict[str, Any]


def record(
    conn: psycopg.Connection,
    *,
    actor: str,
    action: str,
    target: str,
    before: Any = None,
    after: Any = None,
    detail: dict[str, Any] | None = None,
) -> int:
    """Append one entry; `action` is a dotted verb such as `user.create` or `source.rotate`,
    `target` what it acted on (`user:lan`). Secrets must already be left out of before/after.
    Returns the entry's id."""
    row = conn.execute(
        "INSERT INTO governance.audit_log (actor, action, target, before, after, detail)"
        " VALUES (%s, %s, %s, %s, %s, %s) RETURNING audit_id",
        (actor, action, target, _json(before), _json(after), Jsonb(detail or {}, dumps=_dumps)),
    ).fetchone()
    assert row is not None
    return int(row[0])


def record_pii_read(
    conn: psycopg.Connection, *, actor: str, profile_ids: list[str], fields: list[str], via: str
) -> int:
    """Record that `actor` saw the personal data `fields` of these profiles through `via`
    (`ui:/customers/...`, `api:/v1/profiles/...`, `export:segment/12`)."""
    return record(
        conn,
        actor=actor,
        action="pii.read",
        target=via,
        detail={
            "profiles": profile_ids[:1000],
            "profile_count": len(profile_ids),
            "fields": sorted(fields),
        },
    )


def entries(
    conn: psycopg.Connection,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    action_prefix: str | None = None,
    actor: str | None = None,
    limit: int = 200,
    offset: int = 0,
) -> list[AuditEntry]:
    """Entries newest first, filtered by time window, action prefix (`user.`) and actor."""
    clauses, params = [], []
    if since is not None:
        clauses.append("at >= %s")
        params.append(since)
    if until is not None:
        clauses.append("at < %s")
        params.append(until)
    if action_prefix:
        clauses.append("action LIKE %s")
        params.append(action_prefix.replace("%", r"\%").replace("_", r"\_") + "%")
    if actor:
        clauses.append("actor = %s")
        params.append(actor)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = conn.execute(
        "SELECT audit_id, at, actor, action, target, before, after, detail"
        f" FROM governance.audit_log {where} ORDER BY audit_id DESC LIMIT %s OFFSET %s",
        (*params, limit, offset),
    ).fetchall()
    return [AuditEntry(*row) for row in rows]


def _dumps(value: Any) -> str:
    return encode(value).decode()


def _json(value: Any) -> Jsonb | None:
    return None if value is None else Jsonb(value, dumps=_dumps)
