"""What the identity benchmark passes around: a dataset with its truth, and a matcher's answer.

Shared by the fixture script, the generator, the matcher runners and the harness, so each of
them can be run or tested alone.
"""

from __future__ import annotations

import dataclasses

import numpy
import pandas

#: The roles a column may play; matchers choose comparisons by role, never by column name.
ROLES = frozenset(
    {
        "given_name",
        "surname",
        "full_name",
        "date_of_birth",
        "email",
        "phone",
        "street_number",
        "address",
        "suburb",
        "city",
        "postcode",
        "state",
        "national_id",
        "text",
        "category",
    }
)


@dataclasses.dataclass
class Dataset:
    """Records to deduplicate or link, and the pairs that truly match."""

    name: str
    """"febrl3", "febrl4", "fodors_zagat" or "synthetic_1m"."""
    records: pandas.DataFrame
    """"unique_id" int64 0..n-1 (after shuffling), "source_dataset" ("a"/"b") for link tasks
    only, field columns as str with missing values as None; no truth columns."""
    link_only: bool
    """True when only pairs across the two sources are asked for."""
    truth_left: numpy.ndarray
    """int64 unique_ids; truth_left < truth_right, no pair twice."""
    truth_right: numpy.ndarray
    fields: dict[str, str]
    """Column -> role (one of ROLES)."""


@dataclasses.dataclass
class Prediction:
    """A matcher's answer on one dataset."""

    left: numpy.ndarray
    """Predicted matching pairs (unique_ids), in any order."""
    right: numpy.ndarray
    seconds: float
    """Matching time only, data loading excluded."""
    clusters: numpy.ndarray | None = None
    """Cluster id per record, aligned with the records' row order."""
    candidates: tuple[numpy.ndarray, numpy.ndarray] | None = None
    """Blocking output, for pair completeness."""
    setup: str = ""
    """A line saying how the matcher was configured."""


def pairs_within_groups(group: numpy.ndarray) -> tuple[numpy.ndarray, numpy.ndarray]:
    """Every pair of row numbers (the unique_ids) whose rows share a group label."""
    order = numpy.argsort(group, kind="stable")
    sorted_group = group[order]
    starts = numpy.flatnonzero(numpy.r_[True, sorted_group[1:] != sorted_group[:-1]])
    sizes = numpy.diff(numpy.r_[starts, len(group)])
    lefts, rights = [numpy.empty(0, numpy.int64)], [numpy.empty(0, numpy.int64)]
    for size in numpy.unique(sizes[sizes > 1]):
        # All groups of one size at once: a (groups, size) matrix of row numbers.
        members = order[starts[sizes == size][:, None] + numpy.arange(size)]
        i, j = numpy.triu_indices(size, k=1)
        lefts.append(members[:, i].ravel())
        rights.append(members[:, j].ravel())
    return ordered_unique(numpy.concatenate(lefts), numpy.concatenate(rights))


def ordered_unique(
    left: numpy.ndarray, right: numpy.ndarray
) -> tuple[numpy.ndarray, numpy.ndarray]:
    """The pairs as int64 with left < right, each once, sorted."""
    pairs = numpy.sort(numpy.c_[left, right].astype(numpy.int64), axis=1)
    pairs = numpy.unique(pairs[pairs[:, 0] != pairs[:, 1]], axis=0)
    return pairs[:, 0].copy(), pairs[:, 1].copy()
