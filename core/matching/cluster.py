"""From scored pairs to clusters, under the guards.

Pairs above the merge threshold are joined strongest first. A join is refused when the two
clusters hold different values of a unique identifier (two user ids, two national ids): no score
outweighs that. A join that would grow a cluster past `max_cluster` is refused too and the pair
is flagged for review: a chain of near matches must not snowball into one giant profile.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(slots=True)
class Clusters:
    """The outcome of clustering: a cluster per row and what happened to each pair."""

    labels: np.ndarray  # cluster id per row (the row number of the cluster's root)
    merged: np.ndarray  # bool per pair: joined (or already in the same cluster)
    conflicting: np.ndarray  # bool per pair: refused by a unique identifier
    oversized: np.ndarray  # bool per pair: refused by the cluster size limit


def cluster(
    n_rows: int,
    left: np.ndarray,
    right: np.ndarray,
    strength: np.ndarray,
    unique_codes: list[np.ndarray],
    max_cluster: int,
    sides: np.ndarray | None = None,
) -> Clusters:
    """Join the given pairs strongest first; `unique_codes` are -1 where a row has no value.
    With `sides` (linking two sources each free of duplicates), a cluster holds at most one
    record of each side: a record links to its best match on the other side only."""
    parent = np.arange(n_rows)
    size = np.ones(n_rows, dtype=np.int64)
    held = [codes.copy() for codes in unique_codes]  # per root: its cluster's value
    if sides is not None:  # as a unique "identifier": the row's own number on its side
        for side in np.unique(sides).tolist():
            held.append(np.where(sides == side, np.arange(n_rows), -1))
    order = np.argsort(-strength, kind="stable")
    merged = np.zeros(len(left), dtype=bool)
    conflicting = np.zeros(len(left), dtype=bool)
    oversized = np.zeros(len(left), dtype=bool)

    def root(row: int) -> int:
        top = row
        while parent[top] != top:
            top = parent[top]
        while parent[row] != top:  # path compression
            parent[row], row = top, parent[row]
        return top

    for pair in order.tolist():
        a, b = root(int(left[pair])), root(int(right[pair]))
        if a == b:
            merged[pair] = True
            continue
        if any(h[a] >= 0 and h[b] >= 0 and h[a] != h[b] for h in held):
            conflicting[pair] = True
            continue
        if size[a] + size[b] > max_cluster:
            oversized[pair] = True
            continue
        if size[a] < size[b]:
            a, b = b, a
        parent[b] = a
        size[a] += size[b]
        for h in held:
            if h[a] < 0:
                h[a] = h[b]
        merged[pair] = True

    labels = np.fromiter((root(row) for row in range(n_rows)), dtype=np.int64, count=n_rows)
    return Clusters(labels, merged, conflicting, oversized)
