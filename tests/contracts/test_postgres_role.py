"""The store role's contract: PostgreSQL 16+ with pgvector at any DSN, schema by migrations.

Two implementations run the same suite, each on a fresh, empty database per test:
- "embedded": the appliance's own engine (the session's, as the superuser c360 runs it with);
- "server": a separate PostgreSQL server at a DSN, as an operator would hand it over: a role
  that is not a superuser, owning its database, with pgvector installed by a superuser.
PostgreSQL from Debian here is 15 without pgvector, so the server is the same PostgreSQL 18
binaries run on their own as a plain server (see DESIGN.md).
"""

from __future__ import annotations

import re
import secrets
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from importlib import resources
from pathlib import Path

import msgspec
import psycopg
import pytest

from c360 import migrate
from c360.appliance.engines import EmbeddedPostgres
from c360.errors import AdapterError
from c360.events.f1 import IngestContext, ParsedRequest, ingest
from c360.events.model import encode
from c360.runtime import Runtime
from c360.settings import load_settings
from c360.stages import f2_persist

APP_ROLE = "c360_app"


class Server:
    """A separately started PostgreSQL and an unprivileged role for c360 on it."""

    def __init__(self, folder: Path) -> None:
        self.engine = EmbeddedPostgres(folder)
        self.password = secrets.token_urlsafe(16)

    def start(self) -> None:
        self.engine.start()
        with psycopg.connect(self.engine.dsn, autocommit=True) as conn:
            conn.execute(
                f"CREATE ROLE {APP_ROLE} LOGIN PASSWORD '{self.password}'"
                " NOSUPERUSER NOCREATEDB NOCREATEROLE"
            )

    def database(self, name: str, *, with_vector: bool = True) -> str:
        """A new database owned by the app role; the DSN c360 would be given."""
        with psycopg.connect(self.engine.dsn, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name} OWNER {APP_ROLE}")
        if with_vector:
            with psycopg.connect(self._as_superuser(name), autocommit=True) as conn:
                conn.execute("CREATE EXTENSION vector")
        return f"postgresql://{APP_ROLE}:{self.password}@127.0.0.1:{self.engine.port}/{name}"

    def _as_superuser(self, name: str) -> str:
        return self.engine.dsn.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    started = Server(tmp_path_factory.mktemp("pg-server"))
    started.start()
    try:
        yield started
    finally:
        started.engine.stop()


@pytest.fixture(params=["embedded", "server"])
def fresh_dsn(request: pytest.FixtureRequest, engines: tuple[str, str]) -> str:
    """An empty database on the implementation under test."""
    name = f"contract_{secrets.token_hex(4)}"
    if request.param == "server":
        return request.getfixturevalue("server").database(name)
    superuser_dsn = engines[0]
    with psycopg.connect(superuser_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return superuser_dsn.rsplit("/", 1)[0] + f"/{name}"


#: The schemas c360's migrations write to, as an SQL list.
C360_SCHEMAS = "'public', 'governance', 'analytics', 'knowledge', 'channels', 'agents', 'notify'"


def shipped_versions() -> list[int]:
    """Migration versions read from the package's file names, not from `migrate`."""
    names = [item.name for item in resources.files("c360.migrations").iterdir()]
    return sorted({int(name[:4]) for name in names if name.endswith(".up.sql")})


def tables_created_by_sql() -> set[str]:
    """Every table the up SQL files create, read from the files themselves."""
    found: set[str] = set()
    for item in resources.files("c360.migrations").iterdir():
        if item.name.endswith(".up.sql"):
            names = re.findall(r"CREATE TABLE (?:IF NOT EXISTS )?([\w.]+)", item.read_text())
            found |= {name if "." in name else f"public.{name}" for name in names}
    return found


def schema_of(conn: psycopg.Connection) -> dict[str, list[tuple]]:
    """What a migration can change: tables, columns, indexes, constraints, extensions, and
    the built-in roles it seeds (a migration may only grant them new permissions)."""
    roles = conn.execute("SELECT to_regclass('governance.roles') IS NOT NULL").fetchone()[0]
    return {
        "built_in_roles": conn.execute(
            "SELECT name, permissions FROM governance.roles WHERE built_in ORDER BY 1"
        ).fetchall()
        if roles
        else [],
        "columns": conn.execute(
            "SELECT table_name, column_name, data_type, is_nullable, column_default"
            f" FROM information_schema.columns WHERE table_schema IN ({C360_SCHEMAS})"
            " ORDER BY 1, 2"
        ).fetchall(),
        "indexes": conn.execute(
            "SELECT tablename, indexname, indexdef FROM pg_indexes"
            f" WHERE schemaname IN ({C360_SCHEMAS}) ORDER BY 1, 2"
        ).fetchall(),
        "constraints": conn.execute(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(c.oid)"
            " FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace"
            f" WHERE n.nspname IN ({C360_SCHEMAS}) ORDER BY 1, 2"
        ).fetchall(),
        "extensions": conn.execute("SELECT extname FROM pg_extension ORDER BY 1").fetchall(),
    }


def public_tables(conn: psycopg.Connection) -> set[str]:
    """Tables in c360's schemas, as schema.name."""
    rows = conn.execute(
        f"SELECT schemaname, tablename FROM pg_tables WHERE schemaname IN ({C360_SCHEMAS})"
    )
    return {f"{schema}.{name}" for schema, name in rows}


def test_upgrade_from_empty_creates_every_table_the_migrations_declare(fresh_dsn):
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        applied = migrate.upgrade(conn)

        assert applied == shipped_versions()
        assert public_tables(conn) == tables_created_by_sql() | {"public.schema_migrations"}
        assert migrate.applied(conn) == shipped_versions()


def test_a_second_upgrade_changes_nothing(fresh_dsn):
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        migrate.upgrade(conn)
        before = schema_of(conn)

        assert migrate.upgrade(conn) == []
        assert schema_of(conn) == before


def test_down_to_zero_leaves_only_the_ledger_and_up_again_rebuilds_the_same_schema(fresh_dsn):
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        migrate.upgrade(conn)
        full = schema_of(conn)

        undone = migrate.downgrade(conn, 0)

        assert undone == sorted(shipped_versions(), reverse=True)
        assert public_tables(conn) == {"public.schema_migrations"}
        assert migrate.applied(conn) == []
        migrate.upgrade(conn)
        assert schema_of(conn) == full


def test_each_migration_down_undoes_exactly_its_up(fresh_dsn):
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        for version in shipped_versions():
            migrate.upgrade(conn, target=version - 1)
            before = schema_of(conn)
            migrate.upgrade(conn, target=version)
            preinstalled = version == 4 and ("vector",) in before["extensions"]
            if not preinstalled:  # an operator's superuser may have installed pgvector already
                assert schema_of(conn) != before, f"migration {version} changed nothing"

            migrate.downgrade(conn, version - 1)

            assert schema_of(conn) == before, f"migration {version}'s down left changes behind"
            migrate.upgrade(conn, target=version)


def test_two_processes_upgrading_at_once_apply_each_migration_once(fresh_dsn):
    results: list[list[int]] = []
    errors: list[BaseException] = []

    def upgrade() -> None:
        try:
            with psycopg.connect(fresh_dsn, autocommit=True) as conn:
                results.append(migrate.upgrade(conn))
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=upgrade) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not errors
    assert sorted(results[0] + results[1]) == shipped_versions()


def test_pgvector_is_usable_after_the_migrations(fresh_dsn):
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        migrate.upgrade(conn)
        conn.execute("CREATE TEMPORARY TABLE t (v vector(3))")
        conn.execute("INSERT INTO t VALUES ('[1,2,3]'), ('[1,2,5]')")

        distance = conn.execute("SELECT max(v <-> '[1,2,3]') FROM t").fetchone()[0]

    assert distance == pytest.approx(2.0)


def test_events_are_stored_once_however_often_a_batch_is_replayed(fresh_dsn, engines):
    with psycopg.connect(fresh_dsn, autocommit=True) as conn:
        migrate.upgrade(conn)
    settings = load_settings(
        {"postgres_dsn": fresh_dsn, "valkey_url": engines[1], "write_keys": {"k" * 8: "web"}},
        environ={},
    )
    runtime = Runtime(settings)
    context = IngestContext(source="web", received_at=datetime(2026, 3, 1, tzinfo=UTC))
    raw = [
        {"type": "track", "event": "Order Completed", "userId": f"u-{n}", "messageId": f"m-{n}",
         "properties": {"revenue": Decimal(f"{n}.25")}}
        for n in range(1, 4)
    ]  # fmt: skip
    result = ingest(ParsedRequest(events=[msgspec.json.encode(e) for e in raw]), context,
                    settings, runtime.hooks)  # fmt: skip
    payloads = [encode(event) for event in result.accepted]
    try:
        f2_persist.persist(runtime, payloads)
        f2_persist.persist(runtime, payloads[::-1])
        with runtime.pool.connection() as conn:
            rows = conn.execute("SELECT message_id, revenue FROM events ORDER BY 1").fetchall()
    finally:
        runtime.close()

    assert rows == [("m-1", Decimal("1.25")), ("m-2", Decimal("2.25")), ("m-3", Decimal("3.25"))]


def test_a_role_that_may_not_create_pgvector_is_told_who_can(server):
    dsn = server.database(f"novector_{secrets.token_hex(4)}", with_vector=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        with pytest.raises(AdapterError, match="CREATE EXTENSION IF NOT EXISTS vector") as caught:
            migrate.upgrade(conn)

        assert "c360_app" in str(caught.value)
        # the migrations before pgvector stay applied; the failed one left nothing half-done
        assert migrate.applied(conn) == [v for v in shipped_versions() if v < 4]


@pytest.mark.parametrize(
    ("version", "shown"), [(150004, "15.4"), (90624, "9.6.24"), (120000, "12.0")]
)
def test_a_server_older_than_16_is_refused_with_its_version(version, shown):
    with pytest.raises(AdapterError, match=rf"PostgreSQL {re.escape(shown)} is too old"):
        migrate.require_supported(version, has_vector=True)


def test_a_server_without_pgvector_is_refused_with_what_to_install():
    with pytest.raises(AdapterError, match="pgvector"):
        migrate.require_supported(180001, has_vector=False)


def test_a_supported_server_passes():
    migrate.require_supported(160000, has_vector=True)
