"""A generated raw lake for bench/analytics.py: N events as Parquet files in the lake's own
layout (`dt=YYYY-MM-DD/event_type=.../<name>.parquet`, the lake's schema and compression),
built with vectorised numpy and pyarrow, and kept in a cache folder for the next run.

The generator also returns the figures it wrote (events per event-time day, per type), so the
bench can check that the lake queries it times give the right answers.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from c360.adapters.lake_parquet import COMPRESSION, SCHEMA

#: Bumped when the layout or the distribution changes, so a stale cached lake is rebuilt.
FORMAT = 1

#: Receipt days the generated events span, from START: one file per day and type, so 10M
#: events make 240 files of about 40,000 rows (the sink's own files are one per batch).
DAYS = 60
START = date(2026, 1, 1)

#: (type, event name) of generated events and their shares.
KINDS = (
    ("track", "Order Completed", 0.10),
    ("track", "Product Viewed", 0.45),
    ("page", None, 0.35),
    ("identify", None, 0.10),
)
SOURCES = ("web", "ios", "android", "crm")
COUNTRIES = ("VN", "US", "SG", "TH", "GB", "")

#: The summary file of a complete generated lake (written last, so a crash leaves none).
SUMMARY = "summary.json"


@dataclass(frozen=True)
class GeneratedLake:
    """Where the lake is and what it holds."""

    data_dir: Path  # the lake is data_dir / "lake", as settings.lake_dir has it
    events: int
    per_day: dict[str, int]
    per_key: dict[str, int]


def ensure(cache_dir: Path, events: int, seed: int = 6) -> GeneratedLake:
    """The generated lake of `events` events in `cache_dir`, made once and then reused."""
    data_dir = cache_dir / f"lake-{events}-v{FORMAT}-s{seed}"
    summary = data_dir / SUMMARY
    if summary.exists():
        return _loaded(data_dir, json.loads(summary.read_text()))
    shutil.rmtree(data_dir, ignore_errors=True)
    figures = _generate(data_dir / "lake", events, np.random.default_rng(seed))
    summary.write_text(json.dumps(figures))
    return _loaded(data_dir, figures)


def _generate(root: Path, events: int, rng: np.random.Generator) -> dict:
    """Events spread over DAYS receipt days and the KINDS, one file per partition, as the
    lake sink lays them out (its files are smaller: one per batch)."""
    shares = [share for *_, share in KINDS]
    sizes = rng.multinomial(events, [share / DAYS for share in shares for _ in range(DAYS)])
    per_day = np.zeros(DAYS + 1, dtype=np.int64)
    first = 0
    for index, rows in enumerate(sizes):
        kind, received_day = divmod(index, DAYS)
        if rows:
            event_day = _write_partition(root, first, int(rows), received_day, kind, rng)
            per_day += np.bincount(event_day + 1, minlength=DAYS + 1)
        first += int(rows)
    return {
        "events": events,
        "per_day": {
            (START + timedelta(days=d - 1)).isoformat(): int(n) for d, n in enumerate(per_day) if n
        },
        "per_key": {
            _key(kind): int(sizes[kind * DAYS : (kind + 1) * DAYS].sum())
            for kind in range(len(KINDS))
        },
    }


def _write_partition(
    root: Path, first: int, rows: int, received_day: int, kind: int, rng: np.random.Generator
) -> np.ndarray:
    """One partition's events as one file; returns each event's day (relative to START; -1
    for an event of the evening before its receipt day)."""
    day_us = 86_400_000_000
    start_us = np.datetime64(START.isoformat(), "us").astype(np.int64)
    received = start_us + received_day * day_us + rng.integers(0, day_us, rows)
    # the event happened up to an hour before c360 received it, as F1 would accept it
    event_time = received - rng.integers(0, 3_600_000_000, rows)
    users = pa.array(rng.integers(0, 1_000_000, rows).astype(str))
    ids = pa.array(np.arange(first, first + rows).astype(str))
    country = pa.array(np.array(COUNTRIES)[rng.integers(0, len(COUNTRIES), rows)])
    user_id = pc.binary_join_element_wise("u-", users, "")
    type_, event, _share = KINDS[kind]
    table = pa.table(
        {
            "source": pa.array(np.array(SOURCES)[rng.integers(0, len(SOURCES), rows)]),
            "message_id": pc.binary_join_element_wise("g-", ids, ""),
            "type": pa.array(np.full(rows, type_)),
            "event": pa.array([event] * rows, pa.string()),
            "customer_key": user_id,
            "user_id": user_id,
            "anonymous_id": pa.nulls(rows, pa.string()),
            "timestamp": pa.array(event_time, pa.timestamp("us", tz="UTC")),
            "received_at": pa.array(received, pa.timestamp("us", tz="UTC")),
            "payload": pc.binary_join_element_wise(
                '{"context":{"geo":{"country":"', country, '"}},"messageId":"g-', ids, '"}', ""
            ),
        },
        schema=SCHEMA,
    )
    dt = START + timedelta(days=received_day)
    folder = root / f"dt={dt.isoformat()}" / f"event_type={type_}"
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, folder / f"gen-{kind}-{received_day}.parquet", compression=COMPRESSION)
    return (event_time - start_us) // day_us


def _key(kind: int) -> str:
    """The trends key of a kind: a track event's name, else its type."""
    type_, event, _share = KINDS[kind]
    return event if type_ == "track" and event else type_


def _loaded(data_dir: Path, figures: dict) -> GeneratedLake:
    return GeneratedLake(data_dir, figures["events"], figures["per_day"], figures["per_key"])
