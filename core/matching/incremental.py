"""Matching one record against every record already indexed, in PostgreSQL.

The index (tables `match_records`, `match_keys`, `match_terms`, migration 0003) holds each
record's standardised fields, one hashed row per blocking key, and per-value counts for the
term-frequency weights. Matching a new record is: standardise it, look up the records sharing
any of its blocking keys (skipping blocks larger than `max_block`, as the batch path does),
compare and score each candidate with the trained model, best first.

Functions take an open psycopg connection and never commit: the caller owns the transaction.
"""

from __future__ import annotations

import dataclasses
import io
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import polars as pl
import psycopg
from psycopg.types.json import Jsonb

from c360.matching.blocking import key_frame, keys_of
from c360.matching.compare import (
    count_address_once,
    level_count,
    mark_swapped_names,
    similarity_levels,
)
from c360.matching.model import Model, probability, tf_bits
from c360.matching.spec import MatchSpec, spec_from_json, spec_to_json
from c360.matching.standardise import standardise_one

#: `match_terms` row holding a field's total (no standardised value is empty).
_TOTAL = ""
#: How a blocking key (column `k`) becomes `match_keys.key_hash`: PostgreSQL's own stable
#: 64-bit text hash, so the bulk loader and single inserts can never disagree.
_HASH = "hashtextextended(k, 0)"
#: Rows per COPY of blocking keys (a million records have tens of millions of keys).
_COPY_ROWS = 2_000_000


@dataclasses.dataclass(slots=True)
class Candidate:
    """An indexed record scored against the new one."""

    record_id: uuid.UUID
    probability: float
    bits: float
    fields: dict[str, dict[str, Any]]  # field -> level, bits, both values: the evidence

    def held(self, spec: MatchSpec) -> bool:
        """True when a `review_on_disagreement` field disagrees outright and no `vouched_by`
        field agrees exactly: the batch path's `held_for_review`, for one candidate."""

        def level(name: str) -> int:
            return int(self.fields.get(name, {}).get("level", 0))

        kinds = {field.name: field.kind for field in spec.fields}
        vouched = any(level(name) == level_count(kinds[name]) - 1 for name in spec.vouched_by)
        return not vouched and any(level(name) == 1 for name in spec.review_on_disagreement)

    def evidence(self, model_name: str) -> dict[str, Any]:
        """What matched, for the merge's evidence."""
        return {
            "rule": "probabilistic",
            "model": model_name,
            "score": round(self.probability, 6),
            "bits": round(self.bits, 3),
            "fields": self.fields,
        }


def save_model(conn: psycopg.Connection, name: str, spec: MatchSpec, model: Model) -> None:
    """Store a trained model under a name (replacing the previous one)."""
    conn.execute(
        "INSERT INTO match_models (name, spec, model) VALUES (%s, %s, %s)"
        " ON CONFLICT (name) DO UPDATE SET spec = EXCLUDED.spec, model = EXCLUDED.model,"
        " trained_at = now()",
        (name, Jsonb(spec_to_json(spec)), Jsonb(model.to_json())),
    )


def load_model(conn: psycopg.Connection, name: str) -> tuple[MatchSpec, Model] | None:
    """The spec and model stored under a name, or None."""
    row = conn.execute("SELECT spec, model FROM match_models WHERE name = %s", (name,)).fetchone()
    if row is None:
        return None
    return spec_from_json(row[0]), Model.from_json(row[1])


def index_records(
    conn: psycopg.Connection,
    spec: MatchSpec,
    records: Sequence[tuple[uuid.UUID, dict[str, str | None]]],
) -> None:
    """Add or replace standardised records in the index (keys and term counts follow)."""
    if not records:
        return
    ids = [record_id for record_id, _ in records]
    _forget_terms(conn, spec, ids)
    conn.execute("DELETE FROM match_keys WHERE record_id = ANY(%s)", (ids,))
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO match_records (record_id, fields) VALUES (%s, %s)"
            " ON CONFLICT (record_id) DO UPDATE SET fields = EXCLUDED.fields, updated_at = now()",
            [(record_id, Jsonb(values)) for record_id, values in records],
        )
        keys = sorted(
            {
                (key, record_id)
                for record_id, values in records
                for key in keys_of(values, spec.blocking)
            }
        )
        cur.execute(
            f"INSERT INTO match_keys (key_hash, record_id) SELECT DISTINCT {_HASH}, r"
            " FROM unnest(%s::text[], %s::uuid[]) AS x(k, r) ON CONFLICT DO NOTHING",
            ([key for key, _ in keys], [record_id for _, record_id in keys]),
        )
    _count_terms(conn, spec, [values for _, values in records], +1)


def bulk_index(
    conn: psycopg.Connection, spec: MatchSpec, standard: pl.DataFrame, ids: Sequence[uuid.UUID]
) -> None:
    """Index a whole standardised table at once (a bulk load into an empty index), by COPY."""
    names = [field.name for field in spec.fields]
    records = pl.DataFrame({"record_id": [str(record_id) for record_id in ids]}).with_columns(
        standard.select(pl.struct(names).struct.json_encode().alias("fields"))
    )
    _copy(conn, "match_records (record_id, fields)", records)
    conn.execute("DROP TABLE IF EXISTS match_keys_load")
    conn.execute("CREATE TEMP TABLE match_keys_load (k text, r uuid)")
    keys = key_frame(standard, spec.blocking)
    id_column = records.get_column("record_id")
    for start in range(0, keys.height, _COPY_ROWS):
        chunk = keys.slice(start, _COPY_ROWS)
        chunk = chunk.select(pl.col("key"), id_column.gather(chunk.get_column("row")))
        _copy(conn, "match_keys_load (k, r)", chunk)
    empty = conn.execute("SELECT NOT EXISTS (SELECT 1 FROM match_keys)").fetchone()[0]
    if empty:
        # tens of millions of rows: filling the table and then building its indexes in one sort
        # each is many times faster than updating two b-trees row by row
        conn.execute("ALTER TABLE match_keys DROP CONSTRAINT match_keys_pkey")
        conn.execute("DROP INDEX match_keys_record")
        conn.execute(
            f"INSERT INTO match_keys (key_hash, record_id) SELECT {_HASH}, r FROM match_keys_load"
        )
        conn.execute("ALTER TABLE match_keys ADD PRIMARY KEY (key_hash, record_id)")
        conn.execute("CREATE INDEX match_keys_record ON match_keys (record_id)")
    else:
        conn.execute(
            f"INSERT INTO match_keys (key_hash, record_id) SELECT DISTINCT {_HASH}, r"
            " FROM match_keys_load ON CONFLICT DO NOTHING"
        )
    conn.execute("DROP TABLE match_keys_load")
    for field in spec.fields:
        if field.term_frequencies:
            counts = standard.get_column(field.name).drop_nulls().value_counts(name="records")
            total = pl.DataFrame({field.name: [_TOTAL], "records": [int(counts["records"].sum())]})
            rows = pl.concat([counts, total], how="vertical_relaxed").select(
                pl.lit(field.name).alias("field"), pl.col(field.name).alias("value"), "records"
            )
            _copy(conn, "match_terms (field, value, records)", rows)


def _copy(conn: psycopg.Connection, target: str, frame: pl.DataFrame) -> None:
    buffer = io.BytesIO()
    frame.write_csv(buffer, include_header=False)
    with conn.cursor().copy(f"COPY {target} FROM STDIN WITH (FORMAT csv)") as copy:
        copy.write(buffer.getvalue())


def remove_records(conn: psycopg.Connection, spec: MatchSpec, ids: Sequence[uuid.UUID]) -> None:
    """Take records out of the index (a profile merged away)."""
    _forget_terms(conn, spec, list(ids))
    conn.execute("DELETE FROM match_keys WHERE record_id = ANY(%s)", (list(ids),))
    conn.execute("DELETE FROM match_records WHERE record_id = ANY(%s)", (list(ids),))


def match_record(
    conn: psycopg.Connection,
    spec: MatchSpec,
    model: Model,
    record: dict[str, Any],
    exclude: Iterable[uuid.UUID] = (),
) -> list[Candidate]:
    """Indexed records scored against a raw record, best first (all scores, no threshold)."""
    values = standardise_one(record, spec)
    return match_standardised(conn, spec, model, values, exclude)


def match_standardised(
    conn: psycopg.Connection,
    spec: MatchSpec,
    model: Model,
    values: dict[str, str | None],
    exclude: Iterable[uuid.UUID] = (),
) -> list[Candidate]:
    """As `match_record`, for a record already standardised."""
    candidates = _candidates(conn, spec, values, set(exclude))
    if not candidates:
        return []
    totals = _term_totals(conn, spec, values)
    scored = score_candidates(spec, model, values, candidates, totals)
    return sorted(scored, key=lambda candidate: -candidate.bits)


def score_candidates(
    spec: MatchSpec,
    model: Model,
    values: dict[str, str | None],
    candidates: Sequence[tuple[uuid.UUID, dict[str, str | None]]],
    term_frequency: dict[str, float],
) -> list[Candidate]:
    """Score a standardised record against candidates with the model (pure, no database):
    the same levels and weights as the batch path."""
    count = len(candidates)
    theirs = {
        field.name: [other.get(field.name) for _, other in candidates] for field in spec.fields
    }
    levels = np.zeros((count, len(spec.fields)), dtype=np.int8)
    for index, field in enumerate(spec.fields):
        levels[:, index] = _levels(field.kind, values.get(field.name), theirs[field.name])
    swap = spec.name_columns()
    if swap is not None:
        given, surname = (spec.fields[index].name for index in swap)
        mine = ([values.get(given)] * count, [values.get(surname)] * count)
        mark_swapped_names(levels, swap, (*mine, theirs[given], theirs[surname]))
    address = spec.address_columns()
    if address is not None:
        count_address_once(levels, *address)

    bits = np.full(count, model.prior_bits())
    evidence: list[dict[str, dict[str, Any]]] = [{} for _ in range(count)]
    for index, (field, params) in enumerate(zip(spec.fields, model.fields, strict=True)):
        field_bits = params.bits()[levels[:, index]]
        mine = values.get(field.name)
        if params.term_frequencies and field.name in term_frequency:
            exact = levels[:, index] == level_count(field.kind) - 1
            field_bits[exact] += tf_bits(params, np.array([term_frequency[field.name]]))[0]
        bits += field_bits
        for row in np.flatnonzero(levels[:, index]).tolist():
            evidence[row][field.name] = {
                "level": int(levels[row, index]),
                "bits": round(float(field_bits[row]), 3),
                "values": [mine, theirs[field.name][row]],
            }
    chances = probability(bits)
    return [
        Candidate(record_id, float(chances[row]), float(bits[row]), evidence[row])
        for row, (record_id, _) in enumerate(candidates)
    ]


def _levels(kind: str, mine: str | None, theirs: list[str | None]) -> np.ndarray:
    levels = np.zeros(len(theirs), dtype=np.int8)
    if mine is None:
        return levels
    top = level_count(kind) - 1
    different = []
    for row, other in enumerate(theirs):
        if other is None:
            continue
        if other == mine:
            levels[row] = top
        else:
            different.append(row)
    if different:
        others = [theirs[row] for row in different]
        levels[different] = similarity_levels(kind, [mine] * len(others), others)
    return levels


def _candidates(
    conn: psycopg.Connection,
    spec: MatchSpec,
    values: dict[str, str | None],
    exclude: set[uuid.UUID],
) -> list[tuple[uuid.UUID, dict[str, str | None]]]:
    keys = sorted(set(keys_of(values, spec.blocking)))
    if not keys:
        return []
    # each key's block, cut off one past the limit so an oversized block can be recognised
    rows = conn.execute(
        f"SELECT x.k, b.record_id FROM unnest(%s::text[]) AS x(k),"
        f" LATERAL (SELECT record_id FROM match_keys WHERE key_hash = {_HASH} LIMIT %s) b",
        (keys, spec.max_block + 1),
    ).fetchall()
    blocks: dict[int, list[uuid.UUID]] = {}
    for key, record_id in rows:
        blocks.setdefault(key, []).append(record_id)
    ids = {
        record_id
        for members in blocks.values()
        if len(members) <= spec.max_block
        for record_id in members
    } - exclude
    if not ids:
        return []
    found = conn.execute(
        "SELECT record_id, fields FROM match_records WHERE record_id = ANY(%s)", (sorted(ids),)
    ).fetchall()
    return [(row[0], row[1]) for row in found]


def _term_totals(
    conn: psycopg.Connection, spec: MatchSpec, values: dict[str, str | None]
) -> dict[str, float]:
    """Term frequency of the record's value of each term-frequency field."""
    wanted = [
        (field.name, values[field.name])
        for field in spec.fields
        if field.term_frequencies and values.get(field.name) is not None
    ]
    if not wanted:
        return {}
    names = [name for name, _ in wanted]
    rows = conn.execute(
        "SELECT field, value, records FROM match_terms"
        " WHERE (field, value) IN (SELECT * FROM unnest(%s::text[], %s::text[]))",
        (names + names, [value for _, value in wanted] + [_TOTAL] * len(names)),
    ).fetchall()
    counts = {(field, value): records for field, value, records in rows}
    result = {}
    for name, value in wanted:
        total = counts.get((name, _TOTAL), 0)
        if total:
            result[name] = max(counts.get((name, value), 0), 1) / total
    return result


def _count_terms(
    conn: psycopg.Connection, spec: MatchSpec, records: Sequence[dict[str, Any]], sign: int
) -> None:
    counts: dict[tuple[str, str], int] = {}
    for field in spec.fields:
        if not field.term_frequencies:
            continue
        for values in records:
            value = values.get(field.name)
            if value is None:
                continue
            for key in ((field.name, value), (field.name, _TOTAL)):
                counts[key] = counts.get(key, 0) + sign
    if counts:
        conn.cursor().executemany(
            "INSERT INTO match_terms (field, value, records) VALUES (%s, %s, %s)"
            " ON CONFLICT (field, value) DO UPDATE"
            " SET records = match_terms.records + EXCLUDED.records",
            [(field, value, count) for (field, value), count in sorted(counts.items())],
        )


def _forget_terms(conn: psycopg.Connection, spec: MatchSpec, ids: list[uuid.UUID]) -> None:
    rows = conn.execute(
        "SELECT fields FROM match_records WHERE record_id = ANY(%s)", (ids,)
    ).fetchall()
    _count_terms(conn, spec, [row[0] for row in rows], -1)
