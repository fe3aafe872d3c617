"""SQL over the raw lake with ClickHouse: a server over HTTP, or the embedded engine (chdb).

Both are reached through clickhouse-connect, so one class runs the same SQL on either. In that
SQL `{lake}` reads every Parquet file of the lake (the lake's own `clickhouse_source()`, with
the `dt` and `event_type` partition columns) and `{recent}` the events received in the last
`recent_events_days`, each once, with the same columns.

A server keeps those recent events in `c360_recent_events`, a ReplacingMergeTree the lake sink
fills after each batch, keyed by (source, message_id) so a re-delivered batch counts once, and
emptied by a TTL. The embedded engine keeps no such table: chdb runs one engine per process,
and the sink runs in the worker processes while queries run in the gateway's, so a table in
one process would never be seen by the other; there `{recent}` reads the lake by receipt time.
"""

from __future__ import annotations

import logging
import threading
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any

import pyarrow as pa

from c360.adapters.lake import Lake
from c360.adapters.lake_parquet import SCHEMA, table_of
from c360.errors import AdapterError
from c360.events.model import Event
from c360.settings import Settings

log = logging.getLogger(__name__)

#: The MergeTree table of recent events on a ClickHouse server.
RECENT_TABLE = "c360_recent_events"

#: The embedded engine: in memory, since a folder on disk could be opened by one process only.
EMBEDDED_DSN = "chdb://memory"

#: A server that does not answer within this many seconds is reported down, not waited for.
CONNECT_TIMEOUT_S = 10

#: Lake columns every event has; the others can be empty (NULL).
_REQUIRED = frozenset(
    ("source", "message_id", "type", "customer_key", "timestamp", "received_at", "payload")
)

#: Digits of a second kept by a timestamp of each Arrow unit.
_PRECISION = {"s": 0, "ms": 3, "us": 6, "ns": 9}

ClientFactory = Callable[[], Any]


class ClickHouseLakeQuery:
    """Runs SQL over the lake on one ClickHouse engine; see the module docstring for `{lake}`
    and `{recent}`. The client is made on first use, so building this connects to nothing."""

    def __init__(
        self,
        connect: ClientFactory,
        lake: Lake,
        *,
        recent_days: int = 7,
        keeps_recent: bool = False,
        engine: str = "the embedded ClickHouse engine (chdb)",
    ) -> None:
        self._connect = connect
        self._lake = lake
        self.recent_days = recent_days
        self.keeps_recent = keeps_recent
        self.engine = engine
        self._client: Any = None
        self._recent_ready = False
        self._lock = threading.Lock()

    def query(self, sql: str) -> list[tuple]:
        """Rows of the query; while the lake holds no file, SQL over it reads as no rows."""
        source = self._lake.clickhouse_source()
        reads_lake = "{lake}" in sql or "{recent}" in sql
        if source is None and reads_lake:
            return []
        if "{recent}" in sql and self.keeps_recent:
            self.ensure_recent_table()
        text = sql
        if source is not None:
            text = text.replace("{lake}", source).replace("{recent}", self._recent(source))
        try:
            return list(self._client_or_connect().query(text).result_rows)
        except Exception as exc:  # clickhouse-connect and chdb raise several unrelated types
            raise self._failure("lake query", exc, source) from exc

    def insert_recent(self, events: Sequence[Event]) -> int:
        """Add the events to the recent table; an event already there still counts once.
        Returns how many rows were sent (none where this engine keeps no recent table)."""
        if not self.keeps_recent or not events:
            return 0
        self.ensure_recent_table()
        try:
            self._client_or_connect().insert_arrow(RECENT_TABLE, table_of(events))
        except Exception as exc:  # as in `query`
            raise self._failure("insert into the recent-events table", exc, None) from exc
        return len(events)

    def ensure_recent_table(self) -> None:
        """Create the recent table if absent, and set its TTL to `recent_days` if it differs."""
        with self._lock:
            if self._recent_ready:
                return
            try:
                self._create_recent_table()
            except Exception as exc:  # as in `query`
                raise self._failure("creating the recent-events table", exc, None) from exc
            self._recent_ready = True

    def _create_recent_table(self) -> None:
        client = self._client_or_connect()
        ttl = f"toDateTime(received_at) + INTERVAL {self.recent_days} DAY"
        client.command(
            f"CREATE TABLE IF NOT EXISTS {RECENT_TABLE} ({recent_columns()})"
            " ENGINE = ReplacingMergeTree PARTITION BY toDate(received_at)"
            f" ORDER BY (source, message_id) TTL {ttl} SETTINGS ttl_only_drop_parts = 1"
        )
        engine_full = client.query(
            "SELECT engine_full FROM system.tables"
            f" WHERE database = currentDatabase() AND name = '{RECENT_TABLE}'"
        ).result_rows[0][0]
        if f"toIntervalDay({self.recent_days})" not in engine_full:
            client.command(f"ALTER TABLE {RECENT_TABLE} MODIFY TTL {ttl}")
            log.info("Recent-events table now keeps %d days of events.", self.recent_days)

    def _recent(self, source: str) -> str:
        """The `{recent}` subquery: the server's table, else the lake itself."""
        columns = ", ".join(SCHEMA.names)
        since = f"received_at >= now64(6) - INTERVAL {self.recent_days} DAY"
        if self.keeps_recent:
            return (
                f"(SELECT {columns}, toDate(received_at) AS dt, type AS event_type"
                f" FROM {RECENT_TABLE} FINAL WHERE {since})"
            )
        return f"(SELECT {columns}, dt, event_type FROM {source} WHERE {since})"

    def _client_or_connect(self) -> Any:
        if self._client is None:
            self._client = self._connect()
        return self._client

    def _failure(self, action: str, exc: Exception, source: str | None) -> AdapterError:
        """An AdapterError naming the engine (and its setting), with the driver's message; the
        lake's table function is shown as `{lake}`, since an S3 one carries its secret."""
        from clickhouse_connect.driver.exceptions import OperationalError

        detail = str(exc)
        if source:
            detail = detail.replace(source, "{lake}")
        if isinstance(exc, OperationalError):
            return AdapterError(f"{action} failed: cannot reach {self.engine}: {detail}")
        return AdapterError(f"{action} failed on {self.engine}: {detail}")


def lake_query_for(settings: Settings, lake: Lake) -> ClickHouseLakeQuery:
    """The ClickHouse server at `clickhouse_url` when it is set, else the embedded engine."""
    if settings.clickhouse_url:
        shown = settings.redacted()["clickhouse_url"]
        return ClickHouseLakeQuery(
            server_client(settings.clickhouse_url),
            lake,
            recent_days=settings.recent_events_days,
            keeps_recent=True,
            engine=f"the ClickHouse server {shown} (C360_CLICKHOUSE_URL)",
        )
    return ClickHouseLakeQuery(embedded_client, lake, recent_days=settings.recent_events_days)


def server_client(url: str) -> ClientFactory:
    """A factory of clickhouse-connect HTTP clients for a server URL such as
    `http://user:password@127.0.0.1:8123/c360` (checked by the settings)."""
    parts = urllib.parse.urlsplit(url)
    secure = parts.scheme == "https"
    options = {
        "host": parts.hostname,
        "port": parts.port or (8443 if secure else 8123),
        "username": urllib.parse.unquote(parts.username or "default"),
        "password": urllib.parse.unquote(parts.password or ""),
        "database": parts.path.strip("/") or "default",
        "secure": secure,
        # no HTTP session: the sink's threads share one client, and ClickHouse runs one query
        # at a time in a session, failing the others
        "autogenerate_session_id": False,
        "connect_timeout": CONNECT_TIMEOUT_S,
    }

    def connect() -> Any:
        import clickhouse_connect

        return clickhouse_connect.get_client(**options)

    return connect


def embedded_client() -> Any:
    """A clickhouse-connect client on this process's embedded engine (chdb, in memory)."""
    import clickhouse_connect  # chdb itself loads only here, and only once per process

    return clickhouse_connect.get_client(dsn=EMBEDDED_DSN)


def recent_columns() -> str:
    """The recent table's columns: the lake's schema in ClickHouse types."""
    return ", ".join(f"{field.name} {_clickhouse_type(field)}" for field in SCHEMA)


def _clickhouse_type(field: pa.Field) -> str:
    if pa.types.is_timestamp(field.type):
        return f"DateTime64({_PRECISION[field.type.unit]}, '{field.type.tz or 'UTC'}')"
    if not pa.types.is_string(field.type):
        raise TypeError(f"no ClickHouse type for lake column {field.name!r} ({field.type})")
    return "String" if field.name in _REQUIRED else "Nullable(String)"
