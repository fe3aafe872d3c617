"""The lake-query role's contract: one set of tests on each way c360 builds the role, over the
local Parquet lake and over the S3 lake (SeaweedFS on 127.0.0.1, read with ClickHouse's `s3()`).

- `embedded`: chdb through clickhouse-connect's `chdb://memory` DSN, as `c360 trial` builds it
  from settings without `clickhouse_url`.
- `server-path-on-chdb`: the server path as `c360 up` builds it from a `clickhouse_url` (the
  URL's user, password, host, port, database and TLS handed to `clickhouse_connect.get_client`),
  with the recent-events MergeTree table the lake sink fills. No current ClickHouse server
  installs on this machine (Debian's is 18.16, from 2018) and chdb serves no HTTP, so
  `get_client` is replaced here by one that records its arguments and returns a chdb client on
  a database of the test's own. The server path's SQL (MergeTree, TTL, FINAL, inserts) thus
  runs on chdb's ClickHouse engine, not on a server: the HTTP transport, a server's auth and
  its version are not exercised, except by one test that goes over HTTP to a closed port on
  127.0.0.1.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import clickhouse_connect
import pytest

from c360.adapters.lake import Lake
from c360.adapters.lake_clickhouse import (
    EMBEDDED_DSN,
    RECENT_TABLE,
    ClickHouseLakeQuery,
    lake_query_for,
)
from c360.adapters.lake_parquet import LocalParquetLake
from c360.adapters.lake_s3 import S3Lake
from c360.appliance.engines import free_port
from c360.errors import AdapterError, SettingsError
from c360.events.model import Event, encode
from c360.runtime import Runtime
from c360.settings import Settings, load_settings
from c360.stages import lake_sink

#: Days the recent window spans in these tests (the setting's default).
DAYS = 7

#: Revenue SQL: c360 keeps money as JSON numbers, read here as exact decimals.
REVENUE = "toDecimal128(JSONExtractRaw(payload, 'properties', 'revenue'), 2)"
HAS_REVENUE = "JSONHas(payload, 'properties', 'revenue')"

PASSWORD = "s3cret-pw"

pytestmark = pytest.mark.timeout(120)


@dataclass
class ServerOnChdb:
    """The server path's `get_client`, answered by chdb on a database made for one test."""

    url: str
    calls: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Role:
    """One way of building the lake-query role, over a fresh lake."""

    lake: Lake
    settings: Settings

    def query(self, **changes: Any) -> ClickHouseLakeQuery:
        """The role as the runtime builds it from (these) settings."""
        return lake_query_for(dataclasses.replace(self.settings, **changes), self.lake)


@pytest.fixture
def server_on_chdb(monkeypatch: pytest.MonkeyPatch) -> Iterator[ServerOnChdb]:
    """A database that stands for the server's, as compose's CLICKHOUSE_DB makes it."""
    real_get_client = clickhouse_connect.get_client
    database = f"c360_contract_{uuid.uuid4().hex[:10]}"
    admin = real_get_client(dsn=EMBEDDED_DSN)
    admin.command(f"CREATE DATABASE {database}")
    server = ServerOnChdb(url=f"http://c360:{PASSWORD}@127.0.0.1:8123/{database}")

    def get_client(**options: Any) -> Any:
        assert "dsn" not in options, "the server path must not ask for the embedded engine"
        server.calls.append(options)
        return real_get_client(dsn=EMBEDDED_DSN, database=options["database"])

    monkeypatch.setattr(clickhouse_connect, "get_client", get_client)
    try:
        yield server
    finally:
        admin.command(f"DROP DATABASE IF EXISTS {database}")


@pytest.fixture(
    params=[
        "embedded",
        "embedded-s3-lake",
        "server-path-on-chdb",
        "server-path-on-chdb-s3-lake",
    ]
)
def role(request: pytest.FixtureRequest, tmp_path: Path) -> Role:
    """The role on the embedded engine, and on the server path (see the module docstring)."""
    settings = load_settings({"data_dir": tmp_path / "data"}, environ={})
    lake: Lake = LocalParquetLake(settings.lake_dir)
    if request.param.startswith("server-path"):
        url = request.getfixturevalue("server_on_chdb").url
        settings = dataclasses.replace(settings, clickhouse_url=url)
    if request.param.endswith("s3-lake"):
        s3 = request.getfixturevalue("s3_server")
        bucket = f"lake-{uuid.uuid4().hex[:12]}"
        lake = S3Lake(s3.endpoint, bucket, s3.access_key, s3.secret_key)
    return Role(lake, settings)


def deliver(query: ClickHouseLakeQuery, lake: Lake, batch: str, events: list) -> None:
    """What the lake sink does with a batch's events: the lake, then the recent table."""
    lake.write(batch, events)
    if query.keeps_recent:
        query.insert_recent(events)


def make_events(now: datetime) -> list[Event]:
    """Orders, views, identifies and pages received over three days, and one order received
    a month ago (outside the recent window). Amounts a float could not hold exactly."""
    specs = [
        (0, "track", "Order Completed", Decimal("19.99")),
        (0, "track", "Order Completed", Decimal("12345678901234.56")),
        (0, "track", "Product Viewed", None),
        (0, "identify", None, None),
        (1, "track", "Order Completed", Decimal("0.10")),
        (1, "track", "Order Completed", Decimal("7")),
        (1, "page", None, None),
        (2, "track", "Order Completed", Decimal("0.20")),
        (2, "identify", None, None),
        (30, "track", "Order Completed", Decimal("1000.01")),
    ]
    return [
        _event(f"m-{n}", now - timedelta(days=days, minutes=n), kind, name, revenue)
        for n, (days, kind, name, revenue) in enumerate(specs)
    ]


def _event(
    message_id: str, received: datetime, kind: str, name: str | None, revenue: Decimal | None
) -> Event:
    return Event(
        message_id=message_id,
        type=kind,
        source="web",
        customer_key="u-1",
        user_id="u-1",
        event=name,
        received_at=received,
        timestamp=received - timedelta(seconds=3),
        properties={} if revenue is None else {"revenue": revenue, "currency": "VND"},
    )


def recent_of(events: list[Event], now: datetime) -> list[Event]:
    return [e for e in events if e.received_at >= now - timedelta(days=DAYS)]


@pytest.fixture
def written(role: Role) -> tuple[ClickHouseLakeQuery, list[Event], datetime]:
    """The role over a lake holding `make_events` in two batches, as the sink leaves them."""
    query = role.query()
    now = datetime.now(UTC)
    events = make_events(now)
    deliver(query, role.lake, "p0-1-1", events[:5])
    deliver(query, role.lake, "p1-1-1", events[5:])
    return query, events, now


@pytest.mark.parametrize("table", ["{lake}", "{recent}"])
def test_each_event_is_counted_once(written, table):
    query, events, now = written
    expected = events if table == "{lake}" else recent_of(events, now)

    rows = query.query(f"SELECT count(), uniqExact(message_id) FROM {table}")

    assert rows == [(len(expected), len(expected))]


@pytest.mark.parametrize("table", ["{lake}", "{recent}"])
def test_revenue_sums_are_exact_decimals(written, table):
    query, events, now = written
    chosen = events if table == "{lake}" else recent_of(events, now)
    expected = sum(e.properties["revenue"] for e in chosen if "revenue" in e.properties)

    rows = query.query(f"SELECT sum({REVENUE}), count() FROM {table} WHERE {HAS_REVENUE}")

    assert rows == [(expected, sum(1 for e in chosen if "revenue" in e.properties))]
    assert isinstance(rows[0][0], Decimal)


@pytest.mark.parametrize("table", ["{lake}", "{recent}"])
def test_events_are_counted_by_type(written, table):
    query, events, now = written
    chosen = events if table == "{lake}" else recent_of(events, now)

    rows = query.query(f"SELECT event_type, count() FROM {table} GROUP BY event_type")

    assert Counter(dict(rows)) == Counter(e.type for e in chosen)


@pytest.mark.parametrize("table", ["{lake}", "{recent}"])
def test_dt_is_the_day_each_event_was_received(written, table):
    query, events, now = written
    chosen = events if table == "{lake}" else recent_of(events, now)

    rows = query.query(f"SELECT dt, count() FROM {table} GROUP BY dt")

    assert all(isinstance(day, date) for day, _ in rows)
    assert Counter(dict(rows)) == Counter(e.received_at.date() for e in chosen)


def test_a_redelivered_batch_is_counted_once(role):
    query = role.query()
    now = datetime.now(UTC)
    events = make_events(now)[:4]

    for _ in range(3):
        deliver(query, role.lake, "p0-7-7", events)
    again = role.query()  # another process, as a restarted worker would be
    deliver(again, role.lake, "p0-7-7", events)

    assert again.query("SELECT count(), uniqExact(message_id) FROM {recent}") == [(4, 4)]
    assert again.query("SELECT count() FROM {lake}") == [(4,)]
    if query.keeps_recent:
        assert query.query(f"SELECT count() FROM {RECENT_TABLE} FINAL") == [(4,)]


def test_the_recent_table_replaces_by_event_key_and_expires_by_receipt_time(role):
    query = role.query()
    if not query.keeps_recent:
        pytest.skip(
            "the embedded engine keeps no recent table: it lives in one process, and the sink "
            "runs in others; {recent} reads the lake by receipt time instead"
        )
    query.ensure_recent_table()

    table = engine_of(query)
    role.query(recent_events_days=3).ensure_recent_table()

    assert table.startswith("ReplacingMergeTree")
    assert "ORDER BY (source, message_id)" in table
    assert f"TTL toDateTime(received_at) + toIntervalDay({DAYS})" in table
    assert "TTL toDateTime(received_at) + toIntervalDay(3)" in engine_of(query)


def engine_of(query: ClickHouseLakeQuery) -> str:
    rows = query.query(
        "SELECT engine_full FROM system.tables"
        f" WHERE database = currentDatabase() AND name = '{RECENT_TABLE}'"
    )
    return str(rows[0][0])


@pytest.mark.parametrize("table", ["{lake}", "{recent}"])
def test_an_empty_lake_reads_as_no_rows(role, table):
    assert role.query().query(f"SELECT count() FROM {table}") == []


def test_bad_sql_is_an_adapter_error_carrying_the_clickhouse_message(written):
    query, _, _ = written

    with pytest.raises(AdapterError, match="Syntax error") as bad_syntax:
        query.query("SELEC count() FROM {lake}")
    with pytest.raises(AdapterError, match="no_such_column"):
        query.query("SELECT no_such_column FROM {lake}")

    assert query.engine in str(bad_syntax.value)


class SecretLake:
    """A lake whose table function carries its keys, as the S3 lake's `s3(...)` does."""

    def clickhouse_source(self) -> str:
        return "s3('http://127.0.0.1:9/lake/**/*.parquet', 'c360-key', 'S3-SECRET', 'Parquet')"


def test_an_error_shows_the_lake_as_a_placeholder_never_its_keys(role):
    query = lake_query_for(role.settings, SecretLake())

    with pytest.raises(AdapterError, match="Syntax error") as caught:
        query.query("SELEC count() FROM {lake}")

    assert "S3-SECRET" not in str(caught.value)
    assert "{lake}" in str(caught.value)


def test_the_server_path_hands_the_url_parts_to_clickhouse_connect(tmp_path, server_on_chdb):
    settings = load_settings({"data_dir": tmp_path, "clickhouse_url": server_on_chdb.url}, {})
    query = lake_query_for(settings, LocalParquetLake(settings.lake_dir))

    query.query("SELECT 1")

    (options,) = server_on_chdb.calls
    database = server_on_chdb.url.rsplit("/", 1)[1]
    assert options["host"] == "127.0.0.1"
    assert options["port"] == 8123
    assert (options["username"], options["password"]) == ("c360", PASSWORD)
    assert options["database"] == database
    assert options["secure"] is False
    assert options["autogenerate_session_id"] is False
    assert "C360_CLICKHOUSE_URL" in query.engine
    assert PASSWORD not in query.engine


def test_an_unreachable_server_is_an_adapter_error_naming_the_setting(tmp_path):
    """Over HTTP for real: clickhouse-connect's own client against a closed 127.0.0.1 port."""
    url = f"http://c360:{PASSWORD}@127.0.0.1:{free_port()}/c360"
    settings = load_settings({"data_dir": tmp_path, "clickhouse_url": url}, environ={})
    lake = LocalParquetLake(settings.lake_dir)
    query = lake_query_for(settings, lake)
    lake.write("b1", make_events(datetime.now(UTC))[:1])

    with pytest.raises(AdapterError, match=r"cannot reach.*C360_CLICKHOUSE_URL") as down:
        query.query("SELECT count() FROM {lake}")
    with pytest.raises(AdapterError, match="C360_CLICKHOUSE_URL"):
        query.insert_recent(make_events(datetime.now(UTC))[:1])

    assert PASSWORD not in str(down.value)


def test_the_sink_fills_the_recent_table_once_per_event(runtime, server_on_chdb):
    settings = dataclasses.replace(runtime.settings, clickhouse_url=server_on_chdb.url)
    on_server = Runtime(settings)
    batch = [encode(event) for event in make_events(datetime.now(UTC))[:5]]

    try:
        lake_sink.sink(on_server, "p0-1-1", batch)
        lake_sink.sink(on_server, "p0-1-1", batch)  # re-delivered
        lake_sink.sink(on_server, "p0-2-2", batch)  # the same events in another batch
        rows = on_server.lake_query.query(f"SELECT count() FROM {RECENT_TABLE} FINAL")
    finally:
        on_server.close()

    assert rows == [(5,)]


def test_the_runtime_picks_the_engine_from_the_settings(tmp_path):
    base = {
        "data_dir": tmp_path,
        "postgres_dsn": "postgresql://c360@127.0.0.1:5432/c360",
        "valkey_url": "redis://127.0.0.1:6379/0",
    }
    url = f"https://c360:{PASSWORD}@clickhouse.example:8443/c360"

    embedded = Runtime(load_settings(base, environ={})).lake_query
    server = Runtime(load_settings({**base, "clickhouse_url": url}, environ={})).lake_query

    assert (embedded.keeps_recent, server.keeps_recent) == (False, True)
    assert "chdb" in embedded.engine
    assert "https://c360:***@clickhouse.example:8443/c360" in server.engine


@pytest.mark.parametrize(
    "url",
    [
        "clickhouse.example:8123",
        "tcp://127.0.0.1:9000",
        f"http://c360:{PASSWORD}@127.0.0.1:99999/c360",
        f"http://c360:{PASSWORD}@127.0.0.1:8123/c360/extra",
        "http://127.0.0.1:8123/c360?secure=1",
    ],
)
def test_a_clickhouse_url_that_is_not_a_server_url_is_refused_by_name(url):
    with pytest.raises(SettingsError, match="C360_CLICKHOUSE_URL") as refused:
        load_settings({}, environ={"C360_CLICKHOUSE_URL": url})

    assert PASSWORD not in str(refused.value)


def test_the_clickhouse_password_is_masked_and_recent_days_are_checked():
    url = f"http://c360:{PASSWORD}@127.0.0.1:8123/c360"

    shown = load_settings({"clickhouse_url": url}, environ={}).redacted()

    assert shown["clickhouse_url"] == "http://c360:***@127.0.0.1:8123/c360"
    assert load_settings({}, environ={}).recent_events_days == 7
    with pytest.raises(SettingsError, match="C360_RECENT_EVENTS_DAYS"):
        load_settings({}, environ={"C360_RECENT_EVENTS_DAYS": "0"})
