"""SQL over the local lake with the embedded ClickHouse engine (chdb) via clickhouse-connect.

chdb allows one engine per process, so each process builds at most one of these.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from c360.errors import AdapterError


class ChdbLakeQuery:
    """Runs SQL in which `{lake}` reads every Parquet file of the lake."""

    def __init__(self, lake_root: Path) -> None:
        self._lake_root = lake_root
        self._client: Any = None

    def query(self, sql: str) -> list[tuple]:
        """Rows of the query; an empty lake reads as no rows."""
        if not any(self._lake_root.glob("*/*/*.parquet")):
            return []
        lake = f"file('{self._lake_root}/**/*.parquet', Parquet)"
        try:
            return list(self._connect().query(sql.replace("{lake}", lake)).result_rows)
        except Exception as exc:  # clickhouse-connect raises several unrelated types
            raise AdapterError(f"lake query failed: {exc}") from exc

    def _connect(self) -> Any:
        if self._client is None:
            import clickhouse_connect

            self._client = clickhouse_connect.get_client(dsn="chdb://memory")
        return self._client
