"""Levels of candidate pairs: every field compared, then the cross-field corrections (names
written the wrong way round, an address's locality counted once). Shared by the batch matcher
and the trainer."""

from __future__ import annotations

import numpy as np

from c360.matching.compare import compare_codes, count_address_once, mark_swapped_names
from c360.matching.prepare import Prepared


def compare_pairs(prep: Prepared, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Levels of every field for every pair, as a (pairs, fields) int8 matrix."""
    columns = [
        compare_codes(field.kind, prep.code_values[field.name], prep.codes[field.name], left, right)
        for field in prep.spec.fields
    ]
    if not columns:
        return np.zeros((len(left), 0), dtype=np.int8)
    levels = np.stack(columns, axis=1)
    swap = prep.spec.name_columns()
    if swap is not None:
        mark_swapped_names(levels, swap, _names_of_pairs(prep, swap, left, right))
    address = prep.spec.address_columns()
    if address is not None:
        count_address_once(levels, *address)
    return levels


def _names_of_pairs(
    prep: Prepared, columns: tuple[int, int], left: np.ndarray, right: np.ndarray
) -> tuple[_Values, _Values, _Values, _Values]:
    given, surname = (prep.spec.fields[index].name for index in columns)
    return (
        _Values(prep, given, left),
        _Values(prep, surname, left),
        _Values(prep, given, right),
        _Values(prep, surname, right),
    )


class _Values:
    """A field's value for each pair's left (or right) row, looked up only when read."""

    def __init__(self, prep: Prepared, field: str, rows: np.ndarray) -> None:
        self.codes = prep.codes[field]
        self.values = prep.code_values[field]
        self.rows = rows

    def __getitem__(self, pair: int) -> str | None:
        code = self.codes[self.rows[pair]]
        return self.values[code] if code >= 0 else None
