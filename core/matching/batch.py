"""Matching a whole table in one go: a CRM bulk load to deduplicate, or two sources to link.

    result = match(records, spec)               # deduplicate
    result = match(records, spec, source=side)  # link: only pairs across sides 0 and 1

The chain is prepare -> block -> compare -> train -> score -> cluster; `MatchResult` keeps
every intermediate a caller may want to explain a decision (levels, bits, the model).
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import polars as pl

from c360.matching.blocking import Candidates, candidate_pairs, rule_name
from c360.matching.cluster import Clusters, cluster
from c360.matching.compare import level_count
from c360.matching.model import Model, match_bits, probability, tf_bits
from c360.matching.pairs import compare_pairs
from c360.matching.prepare import Prepared, prepare
from c360.matching.spec import MatchSpec
from c360.matching.training import train_in_sessions


@dataclasses.dataclass(slots=True)
class MatchResult:
    """Candidate pairs with their levels and probabilities, the decisions, and timings."""

    prepared: Prepared
    candidates: Candidates
    levels: np.ndarray  # (pairs, fields) int8
    bits: np.ndarray  # total log2 Bayes factor per pair, term frequencies included
    probability: np.ndarray
    model: Model
    clusters: Clusters
    seconds: dict[str, float]

    @property
    def effective_spec(self) -> MatchSpec:
        """The spec without the blocking rules this data showed unselective: the one to store
        with the model, so the incremental matcher never reads blocks the batch skipped."""
        spec = self.prepared.spec
        skipped = set(self.candidates.skipped_rules)
        kept = tuple(rule for rule in spec.blocking if rule_name(rule) not in skipped)
        return dataclasses.replace(spec, blocking=kept)

    @property
    def matches(self) -> np.ndarray:
        """Indices of candidate pairs merged: above the threshold and allowed by the guards."""
        return np.flatnonzero(self.above_threshold & self.clusters.merged)

    @property
    def above_threshold(self) -> np.ndarray:
        """True per pair at or above the merge threshold."""
        return self.probability >= self.prepared.spec.merge_threshold

    @property
    def held(self) -> np.ndarray:
        """True per pair held for review: a `review_on_disagreement` field disagrees outright
        and no `vouched_by` field agrees."""
        return held_for_review(self.prepared.spec, self.levels)

    @property
    def reviews(self) -> np.ndarray:
        """Indices of pairs for a human: between the thresholds, held by a field that
        disagrees, or refused for size."""
        spec = self.prepared.spec
        between = (self.probability >= spec.review_threshold) & ~self.above_threshold
        held = self.above_threshold & self.held
        return np.flatnonzero(between | held | self.clusters.oversized)


def match(records: pl.DataFrame, spec: MatchSpec, source: np.ndarray | None = None) -> MatchResult:
    """Deduplicate `records` (or link its two sides) as `spec` says."""
    clock = _Clock()
    prep = prepare(records, spec, source)
    clock.lap("prepare")
    candidates = candidate_pairs(prep)
    clock.lap("block")
    levels = compare_pairs(prep, candidates.left, candidates.right)
    clock.lap("compare")
    model = train_in_sessions(prep, levels)
    clock.lap("train")
    bits = score_pairs(prep, model, levels, candidates.left, candidates.right)
    chance = probability(bits)
    clock.lap("score")
    above = np.flatnonzero((chance >= spec.merge_threshold) & ~held_for_review(spec, levels))
    unique = [prep.codes[name] for name in spec.unique]
    joined = cluster(
        len(prep),
        candidates.left[above],
        candidates.right[above],
        bits[above],
        unique,
        spec.max_cluster,
        source,
    )
    clusters = _spread(joined, above, len(chance))
    clock.lap("cluster")
    return MatchResult(prep, candidates, levels, bits, chance, model, clusters, clock.laps)


def held_for_review(spec: MatchSpec, levels: np.ndarray) -> np.ndarray:
    """True per pair whose level on a `review_on_disagreement` field is plain disagreement,
    unless a `vouched_by` field agrees exactly."""
    held = np.zeros(len(levels), dtype=bool)
    names = [field.name for field in spec.fields]
    for name in spec.review_on_disagreement:
        held |= levels[:, names.index(name)] == 1
    for name in spec.vouched_by:
        field = spec.fields[names.index(name)]
        held &= levels[:, names.index(name)] != level_count(field.kind) - 1
    return held


def score_pairs(
    prep: Prepared, model: Model, levels: np.ndarray, left: np.ndarray, right: np.ndarray
) -> np.ndarray:
    """Total bits per pair: the model's weights plus term-frequency adjustments."""
    bits = match_bits(model, levels)
    for index, field in enumerate(model.fields):
        if not field.term_frequencies:
            continue
        exact = np.flatnonzero(levels[:, index] == len(field.m) - 1)
        codes = prep.codes[field.name][left[exact]]
        bits[exact] += tf_bits(field, prep.term_frequency(field.name)[codes])
    return bits


def _spread(joined: Clusters, above: np.ndarray, pairs: int) -> Clusters:
    """Per-pair flags for all candidate pairs from the flags of the pairs above threshold."""
    flags = []
    for values in (joined.merged, joined.conflicting, joined.oversized):
        full = np.zeros(pairs, dtype=bool)
        full[above] = values
        flags.append(full)
    return Clusters(joined.labels, *flags)


class _Clock:
    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = round(now - self._last, 3)
        self._last = now
