"""The analytics answer cache in Valkey, with hit and miss counters for `/metrics`.

Touches Valkey only: keys under `c360:analytics:` (answers and the two counters).

Invalidation. An answer is stored under a key that holds a *data version*, so once new data
is in the stores the next question misses and is computed afresh; nothing has to find and
delete old entries, which simply expire. `settings.analytics_cache_ttl_s` bounds how long any
answer lives, which also covers changes no version sees (a merge or unmerge moves events
between profiles without new events). The version is:

- on the Valkey bus, how many entries of the raw-events topic the lake sink has acknowledged
  and how many of the id-resolution topic F3 has acknowledged (a consumer group's
  `entries-read` less its pending entries, per partition). Stages acknowledge only after their
  writes are committed, so the version moves exactly when events land in the lake or are
  resolved into profiles, and stays put while nothing new arrives;
- on every bus, the counter `c360:analytics:data-version`, which `note_new_data` bumps (a
  Kafka bus keeps its offsets in the brokers, too slow to ask on every question; stages or
  tools that change data outside the bus call it).

Reading the version, the answer and counting the hit is one Lua script: one round trip.

Values are MessagePack with every Decimal as an extension (its exact text), so money comes
back as the same Decimal, never as a float or as an int when it happens to be whole; decoding
is msgspec's C code, which keeps a hit well under a millisecond for a long series.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import msgspec
import redis

from c360.adapters.bus import ID_RESOLUTION, RAW_EVENTS
from c360.adapters.bus_valkey import stream_names
from c360.runtime import Runtime
from c360.stages import F3_GROUP, LAKE_GROUP

log = logging.getLogger(__name__)

PREFIX = "c360:analytics:"
HITS_KEY = PREFIX + "cache:hits"
MISSES_KEY = PREFIX + "cache:misses"
VERSION_KEY = PREFIX + "data-version"

#: Bumped when the layout of cached answers changes, so an upgrade never reads old entries.
FORMAT = "2"

#: The (topic, consumer group) pairs whose acknowledged entries mean data has landed.
_LANDED = ((RAW_EVENTS, LAKE_GROUP), (ID_RESOLUTION, F3_GROUP))

#: The lookup, in Lua so that a hit is one round trip. KEYS: the version counter, the hits and
#: misses counters, then the streams; ARGV: the key's prefix, the parameters' digest, an
#: unused slot, then each stream's consumer group. A group's acknowledged entries are its
#: `entries-read` less its pending ones; a stream or group not there yet counts 0.
_LOOKUP_SCRIPT = """
local parts = {redis.call('GET', KEYS[1]) or '0'}
for i = 4, #KEYS do
    local acked = 0
    if redis.call('EXISTS', KEYS[i]) == 1 then
        for _, group in ipairs(redis.call('XINFO', 'GROUPS', KEYS[i])) do
            local info = {}
            for j = 1, #group, 2 do info[group[j]] = group[j + 1] end
            if info['name'] == ARGV[i] then
                acked = (tonumber(info['entries-read']) or 0) - (tonumber(info['pending']) or 0)
            end
        end
    end
    parts[#parts + 1] = tostring(acked)
end
local version = string.sub(redis.sha1hex(table.concat(parts, ',')), 1, 16)
local key = ARGV[1] .. version .. ':' .. ARGV[2]
local value = redis.call('GET', key)
if value then redis.call('INCR', KEYS[2]) else redis.call('INCR', KEYS[3]) end
return {key, value}
"""

#: The MessagePack extension code of a Decimal.
_DECIMAL_EXT = 1


def cached(
    runtime: Runtime,
    name: str,
    params: dict[str, Any],
    compute: Callable[[], Any],
    ttl_s: int | None = None,
) -> Any:
    """The answer to question `name` with `params` (plain JSON values), from the cache if it
    holds one for the current data version, else from `compute()`, which is then stored for
    `ttl_s` seconds (default `settings.analytics_cache_ttl_s`)."""
    key, stored = _lookup(runtime, name, params)
    if stored is not None:
        return loads(stored)
    value = compute()
    ttl = ttl_s if ttl_s is not None else runtime.settings.analytics_cache_ttl_s
    runtime.valkey.set(key, dumps(value), ex=max(1, ttl))
    return value


def params_digest(params: dict[str, Any]) -> str:
    """A digest of the parameters written canonically (sorted keys, no spaces), so equal
    questions share an entry."""
    canonical = json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def _lookup(runtime: Runtime, name: str, params: dict[str, Any]) -> tuple[str, bytes | None]:
    """(key, stored answer or None) in one round trip: a script reads the data version, builds
    the key `c360:analytics:<format>:<name>:<version>:<params digest>`, reads it, and counts
    the hit or the miss."""
    streams: list[str] = []
    groups: list[str] = []
    if not runtime.settings.kafka_bootstrap:
        for topic, group in _LANDED:
            names = stream_names(topic, runtime.settings.bus_partitions)
            streams.extend(names)
            groups.extend([group] * len(names))
    keys = [VERSION_KEY, HITS_KEY, MISSES_KEY, *streams]
    args = [f"{PREFIX}{FORMAT}:{name}:", params_digest(params), "", *groups]
    # EVALSHA, loading the script on first use (and again after a Valkey restart)
    key, stored = runtime.valkey.register_script(_LOOKUP_SCRIPT)(keys=keys, args=args)
    return key.decode(), stored


def note_new_data(client: redis.Redis) -> None:
    """Tell the cache that data changed in a way the bus does not show (a back-fill, an
    unmerge, events written on a Kafka bus): every answer computed before is stale."""
    client.incr(VERSION_KEY)


def counts(client: redis.Redis) -> tuple[int, int]:
    """(hits, misses) of the cache so far, across every process."""
    hits, misses = client.mget(HITS_KEY, MISSES_KEY)
    return int(hits or 0), int(misses or 0)


def dumps(value: Any) -> bytes:
    """MessagePack with Decimals as extensions, so they read back exactly."""
    return _ENCODER.encode(_tagged(value))


def loads(data: bytes) -> Any:
    """The value `dumps` wrote."""
    return _DECODER.decode(data)


def _tagged(value: Any) -> Any:
    if isinstance(value, Decimal):
        return msgspec.msgpack.Ext(_DECIMAL_EXT, str(value).encode())
    if isinstance(value, dict):
        return {key: _tagged(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_tagged(item) for item in value]
    return value


def _untag(code: int, data: memoryview) -> Any:
    if code != _DECIMAL_EXT:
        raise ValueError(f"unknown extension {code} in a cached analytics answer")
    return Decimal(bytes(data).decode())


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(ext_hook=_untag)
