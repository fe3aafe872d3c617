"""Sharing saved segments and reports with roles or single users (`analytics.shares`), and
which of them a principal may see: its own, those shared with its role or with it, or every
one for the admin role. Sharing grants sight only: what a viewer reads still passes through
their own permissions and masking. Every share and unshare is written to the audit log in the
same transaction. Touches analytics.shares and governance.audit_log; reads the owners.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from c360 import audit
from c360.access import Principal
from c360.errors import InputError

#: Kinds of objects that can be shared: the table and key column that hold them, and how the
#: table's `owner` column names a principal (segments: its actor text, `user:lan`; saved
#: reports: the owner's user_id).
OBJECT_TABLES: dict[str, tuple[str, str, Callable[[Principal], object]]] = {
    "segment": ("analytics.segments", "segment_id", lambda principal: principal.actor),
    "report": ("analytics.saved_reports", "report_id", lambda principal: principal.user_id),
}

#: The role that sees every shared object, so nothing is lost when its owner leaves.
SEES_ALL_ROLE = "admin"


class ShareError(InputError):
    """A share that cannot be made or found."""


class ShareNotFound(ShareError):
    """No such share on this object."""

    status_code = 404


@dataclass(frozen=True, slots=True)
class Share:
    """One grant: the object is visible to `role` or to the user `user_id`."""

    share_id: int
    object_type: str
    object_id: int
    role: str | None
    user_id: int | None
    shared_by: str
    shared_at: datetime

    def as_dict(self) -> dict[str, Any]:
        """The share as the JSON API answers it."""
        return {
            "share_id": self.share_id,
            "object_type": self.object_type,
            "object_id": self.object_id,
            "role": self.role,
            "user_id": self.user_id,
            "shared_by": self.shared_by,
            "shared_at": self.shared_at,
        }


def share(
    conn: psycopg.Connection,
    actor: str,
    object_type: str,
    object_id: int,
    role: str | None = None,
    user_id: int | None = None,
) -> Share:
    """Share an object with a role or a user (exactly one). Sharing again what is already
    shared returns the existing share and writes nothing. The caller checks that `actor` may
    share the object (its owner, or an admin)."""
    _check_type(object_type)
    if (role is None) == (user_id is None):
        raise ShareError(
            "share_target", "share with a role or with a user: give exactly one of role, user_id"
        )
    with conn.transaction():
        _check_grantee(conn, role, user_id)
        existing = _find(conn, object_type, object_id, role, user_id)
        if existing is not None:
            return existing
        found = _rows(
            conn,
            "INSERT INTO analytics.shares (object_type, object_id, role, user_id, shared_by)"
            " VALUES (%s, %s, %s, %s, %s) RETURNING *",
            (object_type, object_id, role, user_id, actor),
        )[0]
        audit.record(
            conn,
            actor=actor,
            action=f"{object_type}.share",
            target=f"{object_type}:{object_id}",
            after=_grantee(found),
        )
    return found


def unshare(
    conn: psycopg.Connection, actor: str, object_type: str, object_id: int, share_id: int
) -> Share:
    """Withdraw one share of this object; ShareNotFound if it has no such share."""
    _check_type(object_type)
    with conn.transaction():
        rows = _rows(
            conn,
            "DELETE FROM analytics.shares"
            " WHERE share_id = %s AND object_type = %s AND object_id = %s RETURNING *",
            (share_id, object_type, object_id),
        )
        if not rows:
            raise ShareNotFound(
                "share_not_found", f"{object_type} {object_id} has no share {share_id}"
            )
        audit.record(
            conn,
            actor=actor,
            action=f"{object_type}.unshare",
            target=f"{object_type}:{object_id}",
            before=_grantee(rows[0]),
        )
    return rows[0]


def shares_of(conn: psycopg.Connection, object_type: str, object_id: int) -> list[Share]:
    """The object's shares, oldest first."""
    _check_type(object_type)
    return _rows(
        conn,
        "SELECT * FROM analytics.shares WHERE object_type = %s AND object_id = %s"
        " ORDER BY share_id",
        (object_type, object_id),
    )


def forget(conn: psycopg.Connection, object_type: str, object_id: int) -> int:
    """Remove every share of a deleted object (in the deleting transaction); returns how many.
    The deletion's own audit entry covers them."""
    _check_type(object_type)
    cur = conn.execute(
        "DELETE FROM analytics.shares WHERE object_type = %s AND object_id = %s",
        (object_type, object_id),
    )
    return cur.rowcount


def visible_ids(conn: psycopg.Connection, object_type: str, principal: Principal) -> set[int]:
    """Ids of the objects of this type the principal may see: its own, those shared with its
    role or with it as a user; all of them for the admin role."""
    table, key, owner_of = _table(object_type)
    if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0] is None:
        return set()  # the kind's table is not there yet (its migration is not applied)
    if principal.role == SEES_ALL_ROLE:
        rows = conn.execute(f"SELECT {key} FROM {table}").fetchall()
        return {row[0] for row in rows}
    rows = conn.execute(
        f"SELECT {key} FROM {table} WHERE owner = %(owner)s"
        " UNION SELECT object_id FROM analytics.shares WHERE object_type = %(type)s"
        " AND (role = %(role)s OR user_id = %(user)s)"
        f" AND object_id IN (SELECT {key} FROM {table})",
        {
            "owner": owner_of(principal),
            "type": object_type,
            "role": principal.role,
            "user": principal.user_id,
        },
    ).fetchall()
    return {row[0] for row in rows}


def can_see(
    conn: psycopg.Connection, object_type: str, object_id: int, principal: Principal
) -> bool:
    """Whether the principal may see this one object."""
    return object_id in visible_ids(conn, object_type, principal)


def _check_type(object_type: str) -> None:
    _table(object_type)


def _table(object_type: str) -> tuple[str, str, Callable[[Principal], object]]:
    if object_type not in OBJECT_TABLES:
        raise ShareError(
            "share_object_type",
            f"only {' and '.join(OBJECT_TABLES)} objects can be shared; got {object_type!r}",
        )
    return OBJECT_TABLES[object_type]


def _check_grantee(conn: psycopg.Connection, role: str | None, user_id: int | None) -> None:
    """The role or user must exist; a typo would share with nobody and look done."""
    if role is not None:
        if conn.execute("SELECT 1 FROM governance.roles WHERE name = %s", (role,)).fetchone():
            return
        raise ShareError("share_unknown_role", f"there is no role {role!r}; check its name")
    if not isinstance(user_id, int) or isinstance(user_id, bool):
        raise ShareError("share_unknown_user", f"user_id must be a user's number; got {user_id!r}")
    if conn.execute("SELECT to_regclass('governance.users')").fetchone()[0] is None:
        return  # TODO: drop once migration 0006 (accounts) is always present with this one
    if conn.execute("SELECT 1 FROM governance.users WHERE user_id = %s", (user_id,)).fetchone():
        return
    raise ShareError("share_unknown_user", f"there is no user {user_id}; check the number")


def _find(
    conn: psycopg.Connection,
    object_type: str,
    object_id: int,
    role: str | None,
    user_id: int | None,
) -> Share | None:
    rows = _rows(
        conn,
        "SELECT * FROM analytics.shares WHERE object_type = %s AND object_id = %s"
        " AND role IS NOT DISTINCT FROM %s AND user_id IS NOT DISTINCT FROM %s",
        (object_type, object_id, role, user_id),
    )
    return rows[0] if rows else None


def _rows(conn: psycopg.Connection, query: str, params: tuple) -> list[Share]:
    with conn.cursor(row_factory=dict_row) as cur:
        return [Share(**row) for row in cur.execute(query, params).fetchall()]


def _grantee(found: Share) -> dict[str, Any]:
    return {"share_id": found.share_id, "role": found.role, "user_id": found.user_id}
