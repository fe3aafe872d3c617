"""c360's side of the identity benchmark: the batch matcher (`c360.matching.batch.match`) on
a Dataset, configured only by the dataset's column roles and its phone region."""

from __future__ import annotations

import time

import numpy as np
import polars as pl
from _identity_common import Dataset, Prediction

from c360.matching.batch import match
from c360.matching.spec import spec_for

#: Where numbers written without a country code come from (Fodors-Zagat is American; the
#: generator writes Australian numbers, as FEBRL's records are Australian).
REGIONS = {"fodors_zagat": "US"}


def run(dataset: Dataset) -> Prediction:
    """Deduplicate (or link) the dataset; pairs merged and clusters, with the matching time."""
    columns = list(dataset.fields)
    records = pl.from_pandas(
        dataset.records[columns].astype(object),
        schema_overrides={column: pl.String for column in columns},
    )
    source = None
    if dataset.link_only:
        source = (dataset.records["source_dataset"].to_numpy() != "a").astype(np.int8)
    spec = spec_for(dataset.fields, region=REGIONS.get(dataset.name, "AU"))

    started = time.perf_counter()
    result = match(records, spec, source)
    seconds = time.perf_counter() - started

    ids = dataset.records["unique_id"].to_numpy()
    merged = result.matches
    left, right = result.candidates.left, result.candidates.right
    return Prediction(
        left=ids[left[merged]],
        right=ids[right[merged]],
        seconds=seconds,
        clusters=result.clusters.labels,
        candidates=(ids[left], ids[right]),
        setup=(
            f"c360.matching: {len(spec.blocking)} blocking rules from column roles "
            f"({len(result.candidates.skipped_rules)} skipped as unselective), {len(left):,} "
            f"candidate pairs, u from random pairs, m by EM in sessions "
            f"({result.model.iterations} iterations), "
            f"merge at p >= {spec.merge_threshold}; steps {result.seconds}"
        ),
    )
