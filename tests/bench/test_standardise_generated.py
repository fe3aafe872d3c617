"""The one-record standardiser agrees with the table one on generated customer records (every
kind of corruption the generator makes)."""

from __future__ import annotations

import polars as pl
from identity_generate import generate

from c360.matching.spec import spec_for
from c360.matching.standardise import standardise, standardise_one


def test_generated_records_standardise_the_same_one_by_one() -> None:
    dataset = generate(3_000, 5)
    columns = list(dataset.fields)
    records = pl.from_pandas(
        dataset.records[columns].astype(object), schema_overrides=dict.fromkeys(columns, pl.String)
    )
    spec = spec_for(dataset.fields, region="AU")
    table = standardise(records, spec).rows(named=True)
    for row, raw in enumerate(records.rows(named=True)):
        assert standardise_one(raw, spec) == table[row], raw
