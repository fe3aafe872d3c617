"""Shared fixtures: one embedded PostgreSQL and one embedded Valkey per test session (real
engines, started by c360's own code), and a clean database and bus for every test that asks."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis

from c360 import migrate
from c360.appliance.engines import EmbeddedPostgres, EmbeddedValkey
from c360.runtime import Runtime
from c360.settings import Settings, load_settings

# the local peers that speak SaaS providers' wire protocols (tests/peers) import as `peers.*`
sys.path.insert(0, str(Path(__file__).parent))

WRITE_KEY = "test-write-key-1"
OTHER_WRITE_KEY = "test-write-key-2"
API_TOKEN = "test-api-token"

#: Tables a test's clean slate keeps: the migration record and the built-in roles.
_KEPT = ("public.schema_migrations", "governance.roles")


@pytest.fixture(scope="session")
def engines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(postgres DSN, valkey URL) of engines running for the whole session."""
    data_dir = tmp_path_factory.mktemp("engines")
    postgres = EmbeddedPostgres(data_dir)
    valkey = EmbeddedValkey(data_dir)
    postgres.start()
    valkey.start()
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        migrate.upgrade(conn)
    try:
        yield postgres.dsn, valkey.url
    finally:
        valkey.stop()
        postgres.stop()


@pytest.fixture
def settings(engines: tuple[str, str], tmp_path: Path) -> Settings:
    """Settings pointing at the session's engines, with a fresh lake folder per test."""
    dsn, url = engines
    return load_settings(
        {
            "data_dir": tmp_path / "data",
            "postgres_dsn": dsn,
            "valkey_url": url,
            "write_keys": {WRITE_KEY: "web", OTHER_WRITE_KEY: "ios"},
            "api_tokens": (API_TOKEN,),
            "bus_partitions": 4,
        },
        environ={},
    )


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    """A runtime on clean engines: empty tables, empty Valkey."""
    _clean(settings)
    rt = Runtime(settings)
    try:
        yield rt
    finally:
        rt.close()


def with_settings(settings: Settings, **changes: object) -> Settings:
    """A copy of settings with some fields changed."""
    return dataclasses.replace(settings, **changes)


def _clean(settings: Settings) -> None:
    with psycopg.connect(settings.postgres_dsn, autocommit=True) as conn:
        tables = [
            f"{schema}.{name}"
            for schema, name in conn.execute(
                "SELECT schemaname, tablename FROM pg_tables"
                " WHERE schemaname IN ('public', 'governance', 'analytics', 'knowledge',"
                " 'channels', 'agents', 'notify')"
            ).fetchall()
            if f"{schema}.{name}" not in _KEPT
        ]
        # the audit log refuses TRUNCATE by trigger; a test's clean slate may skip triggers
        conn.execute("SET session_replication_role = replica")
        conn.execute(f"TRUNCATE {', '.join(tables)} CASCADE")
        conn.execute("DELETE FROM governance.roles WHERE NOT built_in")
    client = redis.Redis.from_url(settings.valkey_url)
    client.flushall()
    client.close()


@pytest.fixture
def client(runtime: Runtime) -> Iterator[object]:
    """A Litestar test client on the gateway and F5 API, over the clean engines of `runtime`."""
    from litestar.testing import TestClient

    from c360.api.app import create_app

    with TestClient(app=create_app(runtime.settings)) as test_client:
        yield test_client


@pytest.fixture
def smtp() -> Iterator[object]:
    """A local SMTP server (tests/peers/smtp_peer.py) that keeps what it accepts."""
    from peers.smtp_peer import SmtpPeer

    with SmtpPeer() as peer:
        yield peer
