"""Incremental matching benchmark: one record against 1,000,000 indexed profiles.

A throwaway embedded PostgreSQL (c360's own) holds the match index (migration 0003) of every
record of the dataset, bulk-loaded by `c360.matching.incremental.bulk_index`; the model and
the blocking rules are those the batch matcher trains and keeps on the same records. Then each
of QUERIES records, chosen at random, is matched against all the others exactly as F3 does for
a new profile (standardise, look up the blocks, score), one at a time, and the latency of each
is recorded.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import psycopg
from _identity_common import Dataset

from c360 import migrate
from c360.appliance.engines import EmbeddedPostgres
from c360.matching.batch import match
from c360.matching.incremental import bulk_index, match_standardised
from c360.matching.spec import spec_for
from c360.matching.standardise import standardise, standardise_one

QUERIES = 1_000
SEED = 11


def run(dataset: Dataset) -> dict[str, Any]:
    """Latency percentiles of single-record matches, and how often the best match is right."""
    columns = list(dataset.fields)
    records = pl.from_pandas(
        dataset.records[columns].astype(object), schema_overrides=dict.fromkeys(columns, pl.String)
    )
    spec = spec_for(dataset.fields, region="AU")
    rng = np.random.default_rng(SEED)
    trained = match(records, spec)  # as `c360 identity train` does: the model, and the rules
    spec, model = trained.effective_spec, trained.model  # selective at this scale

    ids = [_record_id(row) for row in range(records.height)]
    truth = _truth_partners(dataset)
    with tempfile.TemporaryDirectory(prefix="c360-incremental-") as folder:
        postgres = EmbeddedPostgres(Path(folder))
        postgres.start()
        try:
            with psycopg.connect(postgres.dsn, autocommit=True) as conn:
                migrate.upgrade(conn)
            with psycopg.connect(postgres.dsn) as conn:
                started = time.perf_counter()
                bulk_index(conn, spec, standardise(records, spec), ids)
                conn.commit()
                conn.execute("ANALYZE")
                load_seconds = time.perf_counter() - started
                queries = rng.choice(records.height, QUERIES, replace=False)
                latencies, right, with_partner, found = [], 0, 0, 0
                for row in queries.tolist():
                    raw = records.row(row, named=True)
                    started = time.perf_counter()
                    values = standardise_one(raw, spec)
                    best = match_standardised(conn, spec, model, values, exclude=[ids[row]])
                    latencies.append(time.perf_counter() - started)
                    merged = [c for c in best if c.probability >= spec.merge_threshold]
                    partners = truth.get(row, set())
                    with_partner += bool(partners)
                    if merged:
                        found += 1
                        right += _row_of(merged[0].record_id) in partners
        finally:
            postgres.stop()
    milliseconds = np.array(latencies) * 1000
    return {
        "profiles": records.height,
        "queries": QUERIES,
        "p50_ms": round(float(np.percentile(milliseconds, 50)), 2),
        "p99_ms": round(float(np.percentile(milliseconds, 99)), 2),
        "max_ms": round(float(milliseconds.max()), 2),
        "index_load_seconds": round(load_seconds, 1),
        "best_match_precision": round(right / found, 4) if found else None,
        "queries_with_a_true_partner": with_partner,
        "queries_merged": found,
    }


def _record_id(row: int) -> uuid.UUID:
    return uuid.UUID(int=row + 1)  # stable and readable: row 0 is ...0001


def _row_of(record_id: uuid.UUID) -> int:
    return record_id.int - 1


def _truth_partners(dataset: Dataset) -> dict[int, set[int]]:
    """unique_id -> its true matches (the generator's unique_id is the row number)."""
    partners: dict[int, set[int]] = {}
    for a, b in zip(dataset.truth_left.tolist(), dataset.truth_right.tolist(), strict=True):
        partners.setdefault(a, set()).add(b)
        partners.setdefault(b, set()).add(a)
    return partners
