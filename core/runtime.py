"""The runtime: settings plus the adapters a process uses, built in one place from settings.

Nothing above this module knows which bus, lake, store or cache implementation it has.
"""

from __future__ import annotations

import dataclasses
from functools import cached_property
from typing import cast

import pluggy
import redis
import redis.asyncio as aioredis
from psycopg_pool import ConnectionPool

from c360.adapters.bus import AsyncEventBus, EventBus
from c360.adapters.bus_valkey import AsyncValkeyBus, ValkeyBus
from c360.adapters.cache import ProfileCache
from c360.adapters.cache_valkey import ValkeyProfileCache
from c360.adapters.lake import Lake, LakeQuery
from c360.adapters.lake_clickhouse import lake_query_for
from c360.adapters.lake_parquet import LocalParquetLake
from c360.errors import SettingsError
from c360.plugins_manager import default_manager
from c360.settings import Settings


@dataclasses.dataclass
class Runtime:
    """Adapters built lazily from settings; one per process."""

    settings: Settings
    pool_size: int = 4

    def __post_init__(self) -> None:
        if not self.settings.postgres_dsn:
            raise SettingsError(
                "postgres_dsn is not set: start the embedded engines or set C360_POSTGRES_DSN"
            )
        if not self.settings.valkey_url:
            raise SettingsError(
                "valkey_url is not set: start the embedded engines or set C360_VALKEY_URL"
            )

    @cached_property
    def pool(self) -> ConnectionPool:
        """PostgreSQL connections (dict rows off; callers choose)."""
        pool = ConnectionPool(
            self.settings.postgres_dsn,
            min_size=1,
            max_size=self.pool_size,
            open=True,
            kwargs={"autocommit": True},
        )
        pool.wait(timeout=30)
        return pool

    @cached_property
    def valkey(self) -> redis.Redis:
        """A Valkey client for the bus and the cache."""
        return redis.Redis.from_url(self.settings.valkey_url, health_check_interval=30)

    @cached_property
    def bus(self) -> EventBus:
        """The event bus: Kafka-protocol brokers when `kafka_bootstrap` is set, else Valkey."""
        if self.settings.kafka_bootstrap:
            from c360.adapters.bus_kafka import KafkaBus  # kafka-python only when asked for

            return KafkaBus(
                self.settings.kafka_bootstrap,
                self.settings.bus_partitions,
                retention_ms=self.settings.bus_retention_hours * 3_600_000,
            )
        return ValkeyBus(self.valkey, self.settings.bus_partitions)

    def async_bus(self, valkey: aioredis.Redis) -> AsyncEventBus:
        """The gateway's publisher, on the same bus as `bus` (counters stay in Valkey)."""
        if self.settings.kafka_bootstrap:
            from c360.adapters.bus_kafka import AsyncKafkaBus, KafkaBus

            return AsyncKafkaBus(cast(KafkaBus, self.bus), valkey)
        return AsyncValkeyBus(valkey, self.settings.bus_partitions)

    @cached_property
    def cache(self) -> ProfileCache:
        """The profile cache."""
        return ValkeyProfileCache(self.valkey, self.settings.cache_ttl_s)

    @cached_property
    def lake(self) -> Lake:
        """The raw lake: an S3 bucket when `lake_s3_endpoint` is set, else the data folder."""
        settings = self.settings
        if settings.lake_s3_endpoint:
            from c360.adapters.lake_s3 import S3Lake  # the minio client only when asked for

            return S3Lake(
                settings.lake_s3_endpoint,
                settings.lake_s3_bucket,
                settings.lake_s3_access_key or "",
                settings.lake_s3_secret_key or "",
                region=settings.lake_s3_region,
                sse=settings.lake_sse,
                retention_days=settings.lake_retention_days,
            )
        return LocalParquetLake(self.settings.lake_dir)

    @cached_property
    def lake_query(self) -> LakeQuery:
        """SQL over the lake: the ClickHouse server at `clickhouse_url`, else chdb."""
        return lake_query_for(self.settings, self.lake)

    @cached_property
    def hooks(self) -> pluggy.HookRelay:
        """Plugin hooks."""
        return default_manager().hook

    def close(self) -> None:
        """Release pools and connections."""
        if "pool" in self.__dict__:
            self.pool.close()
        if "bus" in self.__dict__ and hasattr(self.bus, "close"):
            self.bus.close()  # a Kafka consumer leaves its group, so partitions move at once
        if "valkey" in self.__dict__:
            self.valkey.close()
