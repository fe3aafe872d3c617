"""Sources and their write keys, kept in `governance.sources` and `governance.write_keys`.

A key is shown once, when it is made, and stored only as its SHA-256 with a short prefix for
people to tell keys apart. Rotation makes a new key and gives the old ones a grace period;
revocation ends a key at once. Every change is audited (by key id and prefix, never the key)
and bumps the keyring version in Valkey, so each gateway process reloads its keys within
`c360.governance.keyring.VERSION_CHECK_S`. Keys from settings (C360_WRITE_KEYS) are not here.

Touches: governance.sources, governance.write_keys, governance.audit_log, one Valkey counter.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import redis

from c360 import audit
from c360.errors import InputError
from c360.runtime import Runtime
from c360.settings import MAX_SOURCE_CHARS

log = logging.getLogger(__name__)

#: Valkey counter every change of keys or tracking plans bumps; gateways watch it.
VERSION_KEY = "c360:keyring:version"

#: How long a rotated key keeps working unless the caller says otherwise: a day lets every
#: deployed client pick up the new key without losing events.
DEFAULT_GRACE = timedelta(hours=24)

#: Longest grace period: a rotation is meant to end the old key.
MAX_GRACE = timedelta(days=30)

#: Every c360 write key starts so, which tells it from a settings key in logs and leaks scans.
KEY_PREFIX = "c360wk_"

#: Characters of a key shown to people (the fixed start plus 8 random characters).
SHOWN_CHARS = len(KEY_PREFIX) + 8

_DESCRIPTION_CHARS = 2000

#: Characters a source name cannot hold: each would split or end the URL path segment that
#: names the source, so the source could never be rotated or revoked.
_PATH_UNSAFE = "/\\?#%"


class SourceNotFound(InputError):
    """No source or key by that name."""

    status_code = 404


class SourceExists(InputError):
    """A source by that name exists already."""

    status_code = 409


@dataclass(frozen=True, slots=True)
class NewKey:
    """A key just made: `key` is shown this once and never stored."""

    source: str
    key_id: str
    key: str
    prefix: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """A stored key as people see it: no secret, just its prefix and dates."""

    key_id: str
    source: str
    prefix: str
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    revoked_at: datetime | None

    def state(self, now: datetime) -> str:
        """`active`, `expiring` (rotated, in its grace period), `expired` or `revoked`."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is None:
            return "active"
        return "expiring" if self.expires_at > now else "expired"

    def as_dict(self, now: datetime) -> dict[str, Any]:
        """The key for a JSON answer, with its state at `now`."""
        return {**asdict(self), "state": self.state(now)}


@dataclass(frozen=True, slots=True)
class Source:
    """A source with its keys, newest first."""

    name: str
    description: str
    created_at: datetime
    created_by: str
    keys: list[KeyInfo]

    def as_dict(self, now: datetime) -> dict[str, Any]:
        """The source for a JSON answer."""
        return {
            "name": self.name,
            "description": self.description,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "keys": [key.as_dict(now) for key in self.keys],
        }


def key_digest(key: str) -> bytes:
    """The SHA-256 a key is stored and looked up by."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


def create_source(runtime: Runtime, name: str, actor: str, description: str = "") -> NewKey:
    """A new source with its first write key (shown once)."""
    name, description = _checked_name(name), _checked_description(description)
    with runtime.pool.connection() as conn, conn.transaction():
        try:
            conn.execute(
                "INSERT INTO governance.sources (name, description, created_by)"
                " VALUES (%s, %s, %s)",
                (name, description, actor),
            )
        except psycopg.errors.UniqueViolation:
            raise SourceExists(
                "source_exists", f"a source named {name!r} exists already: pick another name"
            ) from None
        key = _insert_key(conn, name, actor)
        audit.record(
            conn,
            actor=actor,
            action="source.create",
            target=f"source:{name}",
            after={"name": name, "description": description, "key": _shown(key)},
        )
    bump_version(runtime.valkey)
    return key


def list_sources(runtime: Runtime) -> list[Source]:
    """Every source with its keys, by name."""
    with runtime.pool.connection() as conn:
        sources = conn.execute(
            "SELECT name, description, created_at, created_by FROM governance.sources ORDER BY name"
        ).fetchall()
        keys = _keys(conn, None)
    by_source: dict[str, list[KeyInfo]] = {}
    for key in keys:
        by_source.setdefault(key.source, []).append(key)
    return [Source(*row, keys=by_source.get(row[0], [])) for row in sources]


def get_source(runtime: Runtime, name: str) -> Source:
    """One source with its keys; SourceNotFound when there is none by that name."""
    for source in list_sources(runtime):
        if source.name == name:
            return source
    raise _no_source(name)


def rotate_key(
    runtime: Runtime, source: str, actor: str, grace: timedelta = DEFAULT_GRACE
) -> NewKey:
    """A new key for `source` (shown once); its live keys keep working for `grace`, then end.
    A grace of zero ends them at once."""
    if grace < timedelta(0) or grace > MAX_GRACE:
        raise InputError(
            "invalid_grace",
            f"the grace period must be between 0 and {MAX_GRACE.days} days; "
            f"got {grace.total_seconds():g} seconds",
        )
    with runtime.pool.connection() as conn, conn.transaction():
        _lock_source(conn, source)
        now = _now(conn)
        ends = now + grace
        ending = conn.execute(
            "UPDATE governance.write_keys SET expires_at = %s"
            " WHERE source = %s AND revoked_at IS NULL"
            " AND (expires_at IS NULL OR expires_at > %s)"
            " RETURNING key_id, prefix",
            (ends, source, ends),
        ).fetchall()
        key = _insert_key(conn, source, actor)
        audit.record(
            conn,
            actor=actor,
            action="source.rotate",
            target=f"source:{source}",
            before={"keys": [{"key_id": k, "prefix": p} for k, p in ending]},
            after={"key": _shown(key), "old_keys_expire_at": ends},
            detail={"grace_seconds": grace.total_seconds()},
        )
    bump_version(runtime.valkey)
    return key


def revoke_key(runtime: Runtime, source: str, key_id: str, actor: str) -> KeyInfo:
    """End a key at once; revoking a revoked key changes nothing and is not an error."""
    with runtime.pool.connection() as conn, conn.transaction():
        _lock_source(conn, source)
        before = _key(conn, source, key_id)
        if before.revoked_at is not None:
            return before
        conn.execute(
            "UPDATE governance.write_keys SET revoked_at = now() WHERE key_id = %s", (key_id,)
        )
        after = _key(conn, source, key_id)
        audit.record(
            conn,
            actor=actor,
            action="source.revoke",
            target=f"source:{source}",
            before=_audited(before),
            after=_audited(after),
        )
    bump_version(runtime.valkey)
    return after


def bump_version(client: redis.Redis) -> None:
    """Tell every gateway to reload its keyring. If Valkey is out of reach the gateways still
    reload on their periodic full refresh, so a failure here is logged, not raised."""
    try:
        client.incr(VERSION_KEY)
    except redis.RedisError as exc:
        log.warning("Could not bump the keyring version: %s; gateways reload on schedule.", exc)


def _insert_key(conn: psycopg.Connection, source: str, actor: str) -> NewKey:
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    key_id = "wk_" + secrets.token_hex(8)
    row = conn.execute(
        "INSERT INTO governance.write_keys (key_id, source, key_sha256, prefix, created_by)"
        " VALUES (%s, %s, %s, %s, %s) RETURNING created_at",
        (key_id, source, key_digest(key), key[:SHOWN_CHARS], actor),
    ).fetchone()
    assert row is not None
    return NewKey(source, key_id, key, key[:SHOWN_CHARS], row[0])


def _keys(conn: psycopg.Connection, source: str | None) -> list[KeyInfo]:
    rows = conn.execute(
        "SELECT key_id, source, prefix, created_at, created_by, expires_at, revoked_at"
        " FROM governance.write_keys WHERE %s::text IS NULL OR source = %s"
        " ORDER BY created_at DESC, key_id",
        (source, source),
    ).fetchall()
    return [KeyInfo(*row) for row in rows]


def _key(conn: psycopg.Connection, source: str, key_id: str) -> KeyInfo:
    for key in _keys(conn, source):
        if key.key_id == key_id:
            return key
    raise SourceNotFound(
        "unknown_key", f"source {source!r} has no key {key_id!r}: list its keys to find the id"
    )


def _lock_source(conn: psycopg.Connection, source: str) -> None:
    """Hold the source's row for this transaction, so two rotations cannot interleave."""
    row = conn.execute(
        "SELECT name FROM governance.sources WHERE name = %s FOR UPDATE", (source,)
    ).fetchone()
    if row is None:
        raise _no_source(source)


def _now(conn: psycopg.Connection) -> datetime:
    row = conn.execute("SELECT now()").fetchone()
    assert row is not None
    return row[0].astimezone(UTC)


def _no_source(name: str) -> SourceNotFound:
    return SourceNotFound(
        "unknown_source", f"no source is named {name!r}: create it first, or check the name"
    )


def _checked_name(name: Any) -> str:
    """A source's name, stripped: printable text that is one URL path segment as it is, since
    the admin API names a source in its paths (`/v1/admin/sources/{name}/keys`)."""
    if not isinstance(name, str) or not name.strip():
        raise InputError("invalid_source_name", "a source needs a name, such as `web` or `ios`")
    name = name.strip()
    if len(name) > MAX_SOURCE_CHARS or not name.isprintable():
        raise InputError(
            "invalid_source_name",
            f"a source name is printable text of at most {MAX_SOURCE_CHARS} characters",
        )
    unsafe = sorted(set(name) & set(_PATH_UNSAFE))
    if unsafe or name in (".", ".."):
        what = f"hold {' '.join(unsafe)}" if unsafe else "be `.` or `..`"
        raise InputError(
            "invalid_source_name",
            f"a source name cannot {what} (it must fit in one URL path segment): "
            "use letters, digits, spaces, `-`, `_` or `.`, such as `web-shop`",
        )
    return name


def _checked_description(description: Any) -> str:
    if description is None:
        return ""
    if not isinstance(description, str) or len(description) > _DESCRIPTION_CHARS:
        raise InputError(
            "invalid_description",
            f"a description is text of at most {_DESCRIPTION_CHARS} characters",
        )
    return description


def _shown(key: NewKey) -> dict[str, str]:
    """What the audit log keeps of a new key: never the key itself."""
    return {"key_id": key.key_id, "prefix": key.prefix}


def _audited(key: KeyInfo) -> dict[str, Any]:
    return {
        "key_id": key.key_id,
        "prefix": key.prefix,
        "expires_at": key.expires_at,
        "revoked_at": key.revoked_at,
    }
