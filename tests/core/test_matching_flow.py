"""The matching engine end to end: blocking, a whole-table match, and the incremental matcher
against the index in the real embedded PostgreSQL."""

from __future__ import annotations

import uuid

import numpy as np
import polars as pl
import psycopg
import pytest

from c360.matching.batch import match
from c360.matching.blocking import candidate_pairs, key_frame, keys_of
from c360.matching.incremental import (
    bulk_index,
    index_records,
    load_model,
    match_record,
    save_model,
)
from c360.matching.prepare import prepare
from c360.matching.spec import MatchSpec, spec_for
from c360.matching.standardise import standardise, standardise_one
from c360.runtime import Runtime

ROLES = {
    "given": "given_name",
    "surname": "surname",
    "dob": "date_of_birth",
    "email": "email",
    "postcode": "postcode",
}

# Five people; rows 5-8 are corrupted copies of people 0-3 (typo, swapped names, new email,
# phone-style noise); person 4 has no copy. Row -> person:
PEOPLE = [0, 1, 2, 3, 4, 0, 1, 2, 3]
RECORDS = pl.DataFrame(
    {
        "given": ["Anna", "Bình", "Carlos", "Dana", "Eve", "Ana", "Nguyen", "Carlos", "Dana"],
        "surname": [
            "Smith",
            "Nguyễn",
            "Diaz",
            "Olsen",
            "Adams",
            "Smith",
            "Binh",
            "Dias",
            "Olsen",
        ],
        "dob": [
            "1980-01-02",
            "1975-05-06",
            "1990-09-09",
            "1962-12-30",
            "1980-01-02",
            "02/01/1980",
            "1975-05-06",
            "1990-09-09",
            "1962-12-30",
        ],
        "email": [
            "anna@x.org",
            "binh@x.vn",
            "carlos@x.es",
            "dana@x.dk",
            "eve@x.org",
            "anna@x.org",
            None,
            "cdiaz@x.es",
            "dana.olsen@y.dk",
        ],
        "postcode": ["2000", "7000", "3000", "4000", "2000", "2000", "7000", "3000", "4001"],
    }
)


def _true_pairs() -> set[tuple[int, int]]:
    return {
        (a, b)
        for a in range(len(PEOPLE))
        for b in range(a + 1, len(PEOPLE))
        if PEOPLE[a] == PEOPLE[b]
    }


def _spec(**options: object) -> MatchSpec:
    return spec_for(ROLES, region="AU", **options)


def test_candidates_hold_every_true_pair_and_key_texts_agree() -> None:
    spec = _spec()
    prep = prepare(RECORDS, spec)
    found = candidate_pairs(prep)
    pairs = set(zip(found.left.tolist(), found.right.tolist(), strict=True))
    assert _true_pairs() <= pairs
    assert all(a < b for a, b in pairs)
    standard = standardise(RECORDS, spec)
    table = key_frame(standard, spec.blocking)
    for row in range(RECORDS.height):
        by_table = sorted(table.filter(pl.col("row") == row).get_column("key").to_list())
        assert by_table == sorted(keys_of(standard.row(row, named=True), spec.blocking))


def test_an_unselective_rule_is_skipped_and_reported() -> None:
    spec = _spec(blocking=((("postcode", ""),), (("email", ""),)), max_pairs_per_record=0.0)
    # a budget of 0 per record still allows the fixed minimum: force it below with one block
    found = candidate_pairs(prepare(RECORDS, spec))
    assert found.skipped_rules == []  # tiny data stays under the minimum budget
    assert set(found.pairs_by_rule) == {"postcode", "email"}


def _crowd(people: int, seed: int = 3) -> pl.DataFrame:
    """Distinct strangers (each birth date used once) and, for half of them, a second record
    with one field corrupted: the unlabelled data a model learns from."""
    rng = np.random.default_rng(seed)
    given = ["Liam", "Olivia", "Noah", "Emma", "Minh", "Lan", "Jack", "Mia", "Hùng", "Ava"]
    surnames = ["Brown", "Lee", "Wilson", "Trần", "Taylor", "Martin", "White", "Phạm", "King"]
    rows = []
    for person in range(people):
        row = {
            "given": given[rng.integers(len(given))],
            "surname": surnames[rng.integers(len(surnames))],
            "dob": f"{1940 + person // 365:04d}-{(person % 365) // 31 + 1:02d}-"
            f"{(person % 365) % 28 + 1:02d}",
            "email": f"person{person}@mail.example",
            "postcode": str(2000 + int(rng.integers(300))),
        }
        rows.append(row)
        if person % 2 == 0:
            copy = dict(row)
            field = ["given", "email", "postcode"][person % 3]
            copy[field] = None if field == "email" else copy[field][:-1] + "x"
            rows.append(copy)
    return pl.DataFrame(rows)


def test_match_finds_the_copies_and_keeps_different_people_apart() -> None:
    crowd = _crowd(3_000)
    records = pl.concat([RECORDS, crowd])
    result = match(records, _spec())
    merged = {
        (int(result.candidates.left[i]), int(result.candidates.right[i])) for i in result.matches
    }
    # the first nine rows: exactly the true pairs (Eve shares Anna's birthday and postcode)
    assert {pair for pair in merged if pair[1] < 9} == _true_pairs()
    # the crowd: a second record merges with its first, and nothing else merges
    emails = crowd.get_column("email").to_list()
    dobs = crowd.get_column("dob").to_list()
    for left, right in merged:
        if left >= 9:
            assert dobs[left - 9] == dobs[right - 9], (emails[left - 9], emails[right - 9])
    copies = sum(1 for person in range(3_000) if person % 2 == 0)
    assert len([pair for pair in merged if pair[0] >= 9]) >= 0.95 * copies


def test_incremental_match_agrees_with_the_batch_scores(runtime: Runtime) -> None:
    spec = _spec()
    result = match(RECORDS, spec)
    ids = [uuid.UUID(int=row + 1) for row in range(RECORDS.height)]
    with runtime.pool.connection() as conn:
        save_model(conn, "people", spec, result.model)
        stored_spec, model = load_model(conn, "people")
        assert stored_spec == spec
        bulk_index(conn, spec, standardise(RECORDS, spec), ids)
        # the same table in the index (so term frequencies agree), the record itself excluded
        found = match_record(conn, spec, model, RECORDS.row(7, named=True), exclude=[ids[7]])
        # Carlos Dias, born 1990-09-09, matches row 2 best
        assert found[0].record_id == ids[2]
        assert set(found[0].fields) >= {"given", "surname", "dob"}
        pair = np.flatnonzero((result.candidates.left == 2) & (result.candidates.right == 7))
        assert found[0].bits == pytest.approx(float(result.bits[pair[0]]), abs=1e-6)


def test_single_inserts_and_bulk_load_build_the_same_index(runtime: Runtime) -> None:
    spec = _spec()
    ids = [uuid.UUID(int=row + 1) for row in range(RECORDS.height)]
    standard = standardise(RECORDS, spec)
    with runtime.pool.connection() as conn:
        bulk_index(conn, spec, standard, ids)
        bulk = _index_state(conn)
        for table in ("match_keys", "match_records", "match_terms"):
            conn.execute(f"DELETE FROM {table}")
        index_records(conn, spec, [(ids[row], standard.row(row, named=True)) for row in range(9)])
        assert _index_state(conn) == bulk
        one = standardise_one(RECORDS.row(0, named=True), spec)
        assert one == standard.row(0, named=True)


def _index_state(conn: psycopg.Connection) -> tuple[list, list, list]:
    keys = conn.execute("SELECT key_hash, record_id FROM match_keys ORDER BY 1, 2").fetchall()
    records = conn.execute("SELECT record_id, fields FROM match_records ORDER BY 1").fetchall()
    terms = conn.execute("SELECT * FROM match_terms ORDER BY 1, 2").fetchall()
    return keys, records, terms
