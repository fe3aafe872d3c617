"""Apply and roll back the SQL migrations in `c360/migrations`, each in its own transaction.

The store is PostgreSQL 16 or newer with the pgvector extension, at any DSN: the embedded
engine or an operator's server. `check_server` refuses anything else before a migration runs,
with a message that says what to install or whom to ask.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources

import psycopg

from c360.errors import AdapterError

log = logging.getLogger(__name__)

_NAME = re.compile(r"^(\d{4})_(\w+)\.(up|down)\.sql$")
_LOCK_KEY = 3_600_360  # advisory lock so two processes never migrate at once
#: The oldest PostgreSQL c360 runs on (server_version_num).
MIN_SERVER_VERSION = 160000
_DROP_TABLE = re.compile(r"DROP\s+TABLE\s+(?:IF\s+EXISTS\s+)?([\w.]+)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Migration:
    """One numbered schema change with its up and down SQL."""

    version: int
    name: str
    up: str
    down: str


def available() -> list[Migration]:
    """All migrations shipped with c360, oldest first."""
    files = {item.name: item for item in resources.files("c360.migrations").iterdir()}
    found = {}
    for name in files:
        match = _NAME.match(name)
        if match and match.group(3) == "up":
            version, label = int(match.group(1)), match.group(2)
            down_name = f"{match.group(1)}_{label}.down.sql"
            found[version] = Migration(
                version, label, files[name].read_text(), files[down_name].read_text()
            )
    return [found[version] for version in sorted(found)]


def applied(conn: psycopg.Connection) -> list[int]:
    """Versions already applied to this database."""
    _ensure_table(conn)
    rows = conn.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
    return [row[0] for row in rows]


def upgrade(conn: psycopg.Connection, target: int | None = None) -> list[int]:
    """Apply every pending migration up to `target`; returns the versions applied."""
    check_server(conn)
    done = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        current = set(applied(conn))
    for migration in available():
        if migration.version in current or (target is not None and migration.version > target):
            continue
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            if migration.version in set(applied(conn)):
                continue
            _apply(conn, migration)
            conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                (migration.version, migration.name),
            )
        log.info("Applied migration %04d %r.", migration.version, migration.name)
        done.append(migration.version)
    return done


def check_server(conn: psycopg.Connection) -> None:
    """Refuse a server older than PostgreSQL 16 or without pgvector, naming the fix."""
    has_vector = conn.execute(
        "SELECT 1 FROM pg_available_extensions WHERE name = 'vector'"
    ).fetchone()
    require_supported(conn.info.server_version, has_vector is not None)


def require_supported(server_version: int, has_vector: bool) -> None:
    """The rule behind `check_server`, given what the server reported."""
    if server_version < MIN_SERVER_VERSION:
        raise AdapterError(
            f"PostgreSQL {_version_name(server_version)} is too old: c360 needs 16 or newer "
            "with the pgvector extension; point C360_POSTGRES_DSN at a newer server"
        )
    if not has_vector:
        raise AdapterError(
            "the PostgreSQL server has no pgvector extension: install it on the server "
            "(Debian: postgresql-<version>-pgvector) or use the embedded engine"
        )


def _apply(conn: psycopg.Connection, migration: Migration) -> None:
    """Run one migration's up SQL; a role that may not create pgvector is told who can."""
    try:
        conn.execute(migration.up)
    except psycopg.errors.InsufficientPrivilege as exc:
        database = conn.info.dbname
        raise AdapterError(
            f"migration {migration.version:04d} {migration.name!r} needs a privilege the role "
            f"{conn.info.user!r} lacks ({exc.diag.message_primary}); a superuser can run "
            f"`CREATE EXTENSION IF NOT EXISTS vector;` in database {database!r} once, or make "
            "the role the database's owner"
        ) from exc


def _version_name(version: int) -> str:
    """160004 -> '16.4'; 90624 -> '9.6.24' (the numbering before 10)."""
    if version >= 100000:
        return f"{version // 10000}.{version % 10000}"
    return f"{version // 10000}.{version // 100 % 100}.{version % 100}"


def downgrade(conn: psycopg.Connection, target: int) -> list[int]:
    """Roll back applied migrations newer than `target`, newest first."""
    undone = []
    by_version = {migration.version: migration for migration in available()}
    for version in sorted(applied(conn), reverse=True):
        if version <= target:
            break
        with conn.transaction():
            conn.execute(by_version[version].down)
            conn.execute("DELETE FROM schema_migrations WHERE version = %s", (version,))
        log.info("Rolled back migration %04d.", version)
        undone.append(version)
    return undone


def rolled_back_by(target: int) -> list[Migration]:
    """The shipped migrations a `downgrade(conn, target)` would undo (if applied), newest
    first: what to show before asking someone to confirm."""
    return [m for m in reversed(available()) if m.version > target]


def tables_dropped(migrations: list[Migration]) -> list[str]:
    """Tables the down SQL of these migrations drops, with every row in them."""
    return [name for m in migrations for name in _DROP_TABLE.findall(m.down)]


def _ensure_table(conn: psycopg.Connection) -> None:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version integer PRIMARY KEY, name text NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now())"
    )
