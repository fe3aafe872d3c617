"""Records made ready for matching: standardised values as dense integer codes.

Equal values get equal codes, so exact agreement is an integer comparison, term frequencies are
a count per code, and similarity is computed on each distinct pair of values only once.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl

from c360.matching.spec import MatchSpec
from c360.matching.standardise import standardise


@dataclasses.dataclass(slots=True)
class Prepared:
    """Standardised records of one matching job."""

    spec: MatchSpec
    frame: pl.DataFrame  # standardised values, one column per field, original row order
    codes: dict[str, np.ndarray]  # field -> int32 code per row, -1 when missing
    code_values: dict[str, list[str]]  # field -> value of each code
    counts: dict[str, np.ndarray]  # field -> rows holding each code
    source: np.ndarray | None  # per row, which side of a link job (0 / 1); None to deduplicate

    def __len__(self) -> int:
        return self.frame.height

    def term_frequency(self, field: str) -> np.ndarray:
        """Share of the rows with a value that hold each code."""
        counts = self.counts[field]
        return counts / max(int(counts.sum()), 1)


def prepare(records: pl.DataFrame, spec: MatchSpec, source: np.ndarray | None = None) -> Prepared:
    """Standardise the records' fields and code them."""
    frame = standardise(records, spec)
    codes, code_values, counts = {}, {}, {}
    for field in spec.fields:
        codes[field.name], code_values[field.name] = encode(frame.get_column(field.name))
        present = codes[field.name][codes[field.name] >= 0]
        counts[field.name] = np.bincount(present, minlength=len(code_values[field.name]))
    return Prepared(spec, frame, codes, code_values, counts, source)


def encode(column: pl.Series) -> tuple[np.ndarray, list[str]]:
    """Dense codes (in sorted value order, -1 for null) and the value of each code."""
    ranks = column.rank("dense")
    codes = (ranks.fill_null(0).cast(pl.Int64) - 1).to_numpy().astype(np.int32)
    values = column.drop_nulls().unique().sort().to_list()
    return codes, values
