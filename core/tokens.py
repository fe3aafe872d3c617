"""Scoped API read tokens for machines that call the F5 API: created with a label, a set of
permissions (scopes) and an optional expiry, shown once, stored only as a SHA-256, revoked at
will. Tokens listed in the `api_tokens` setting keep working with the permissions the F5 API
always gave them.

Touches `governance.api_tokens` (and `governance.audit_log` beside every change).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

from c360 import audit
from c360.access import PERMISSIONS, SETTINGS_TOKEN_PERMISSIONS, Principal, unknown_permissions
from c360.accounts import AccountError, UnknownAccount, require_may_grant

#: Every token starts so, which lets secret scanners and people recognise one.
TOKEN_PREFIX = "c360t_"
#: A token may not manage users, roles or tokens: a leaked token must not mint others.
FORBIDDEN_SCOPES = ("users:write",)
#: How often last_used_at is written for a busy token: one write per request would be waste.
LAST_USED_RESOLUTION_S = 60

#: The principal of a token from the `api_tokens` setting.
SETTINGS_PRINCIPAL = Principal(
    kind="token", name="settings", role="api", permissions=frozenset(SETTINGS_TOKEN_PERMISSIONS)
)


@dataclass(frozen=True)
class ApiToken:
    """A token as the admin pages show it (never the token itself)."""

    token_id: int
    label: str
    scopes: tuple[str, ...]
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    def as_json(self) -> dict[str, Any]:
        """The token for a JSON answer or an audit entry."""
        return {**asdict(self), "scopes": list(self.scopes)}


_COLUMNS = "token_id, label, scopes, created_by, created_at, expires_at, revoked_at, last_used_at"


def create_token(
    conn: psycopg.Connection,
    actor: str,
    label: str,
    scopes: list[str],
    expires_at: datetime | None = None,
) -> tuple[str, ApiToken]:
    """Make a token; returns it (the only time it is seen) with its record."""
    _check(label, scopes, expires_at)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with conn.transaction():
        require_may_grant(conn, actor, list(scopes))
        row = conn.execute(
            "INSERT INTO governance.api_tokens (label, token_sha256, scopes, created_by,"
            f" expires_at) VALUES (%s, %s, %s, %s, %s) RETURNING {_COLUMNS}",
            (label, _digest(token), _ordered(scopes), actor, expires_at),
        ).fetchone()
        record = _token(row)
        audit.record(
            conn,
            actor=actor,
            action="token.create",
            target=f"token:{record.token_id}",
            after=record.as_json(),
        )
    return token, record


def revoke_token(conn: psycopg.Connection, actor: str, token_id: int) -> ApiToken:
    """Stop a token from working, for good (revoking twice changes nothing)."""
    with conn.transaction():
        before = _get(conn, token_id)
        if before.revoked_at is not None:  # already done: no second audit entry for nothing
            return before
        row = conn.execute(
            "UPDATE governance.api_tokens SET revoked_at = coalesce(revoked_at, now())"
            f" WHERE token_id = %s RETURNING {_COLUMNS}",
            (token_id,),
        ).fetchone()
        after = _token(row)
        audit.record(
            conn,
            actor=actor,
            action="token.revoke",
            target=f"token:{token_id}",
            before=before.as_json(),
            after=after.as_json(),
        )
    return after


def list_tokens(conn: psycopg.Connection) -> list[ApiToken]:
    """Every token, newest first, revoked and expired ones included."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM governance.api_tokens ORDER BY token_id DESC"
    ).fetchall()
    return [_token(row) for row in rows]


def principal_for_token(conn: psycopg.Connection, token: str) -> Principal | None:
    """The principal a presented token acts as, or None when it is unknown, revoked or
    expired. Notes when the token was last used."""
    conn.execute(
        "UPDATE governance.api_tokens SET last_used_at = now()"
        " WHERE token_sha256 = %s AND revoked_at IS NULL"
        " AND (expires_at IS NULL OR expires_at > now())"
        " AND (last_used_at IS NULL OR last_used_at < now() - make_interval(secs => %s))",
        (_digest(token), LAST_USED_RESOLUTION_S),
    )
    row = conn.execute(
        "SELECT token_id, label, scopes FROM governance.api_tokens WHERE token_sha256 = %s"
        " AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())",
        (_digest(token),),
    ).fetchone()
    if row is None:
        return None
    _, label, scopes = row
    return Principal(kind="token", name=label, role="token", permissions=frozenset(scopes))


def _check(label: str, scopes: list[str], expires_at: datetime | None) -> None:
    if not isinstance(label, str) or not label.strip() or len(label) > 100:
        raise AccountError("invalid_label", "give the token a label of 1 to 100 characters")
    if not isinstance(scopes, list | tuple) or not scopes:
        raise AccountError(
            "invalid_scopes", 'give the token at least one scope, e.g. ["profiles:read"]'
        )
    unknown = unknown_permissions([str(scope) for scope in scopes])
    if unknown:
        raise AccountError(
            "unknown_permission",
            f"unknown scope {', '.join(unknown)}; the scopes are {', '.join(_ALLOWED)}",
        )
    refused = [scope for scope in scopes if scope in FORBIDDEN_SCOPES]
    if refused:
        raise AccountError(
            "forbidden_scope",
            f"a token cannot hold {', '.join(refused)}: users and tokens are managed by "
            "signed-in administrators only",
        )
    if expires_at is not None and expires_at <= datetime.now(UTC):
        raise AccountError("invalid_expiry", "the expiry must be in the future")


_ALLOWED = tuple(name for name in PERMISSIONS if name not in FORBIDDEN_SCOPES)


def _get(conn: psycopg.Connection, token_id: int) -> ApiToken:
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM governance.api_tokens WHERE token_id = %s", (token_id,)
    ).fetchone()
    if row is None:
        raise UnknownAccount("unknown_token", f"there is no API token with id {token_id}")
    return _token(row)


def _token(row: Any) -> ApiToken:
    token_id, label, scopes, created_by, created_at, expires_at, revoked_at, last_used = row
    return ApiToken(
        token_id, label, tuple(scopes), created_by, created_at, expires_at, revoked_at, last_used
    )


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _ordered(scopes: list[str]) -> list[str]:
    return [name for name in PERMISSIONS if name in set(scopes)]
