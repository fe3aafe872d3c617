"""The Fellegi-Sunter model: how much each level of agreement says about two records being
the same, learnt without labels.

- u (how often non-matching records agree at each level) starts from random pairs of records:
  exact agreement exactly from term frequencies (the chance two random records share a value),
  the other levels from a random sample.
- m (how often matching records agree) is estimated by expectation-maximisation
  (`expectation_maximisation`; `c360.matching.training` runs it in sessions with u held fixed).
  EM runs on the distinct agreement patterns with their counts, so it costs nothing at scale.
- The prior is the chance that two records picked at random match.
- At scoring time exact agreement on a name or a place is worth more when the value is rare:
  the term-frequency adjustment log2(u_exact / tf(value)).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from c360.matching.compare import compare_codes, level_count
from c360.matching.prepare import Prepared

#: Random pairs sampled to estimate u for the levels below exact agreement: enough for a
#: stable share of near agreements, at most a million.
U_SAMPLE_PER_RECORD = 40
U_SAMPLE_MAX = 1_000_000
#: Nothing is certain: probabilities stay inside [FLOOR, 1 - FLOOR].
FLOOR = 1e-6
EM_ITERATIONS = 200
EM_TOLERANCE = 1e-7
#: Weight, in pairs, of each field's starting shares in every EM step.
SMOOTHING = 2.0
#: A very rare value cannot make one field overwhelm all the others.
MAX_TF_BITS = 8.0


@dataclasses.dataclass(slots=True)
class FieldModel:
    """m and u per level of one field (index = level; level 0 is "no evidence")."""

    name: str
    kind: str
    term_frequencies: bool
    m: list[float]
    u: list[float]
    u_exact_random: float

    def bits(self) -> np.ndarray:
        """log2(m / u) per level; 0 for "no evidence"."""
        m, u = np.asarray(self.m), np.asarray(self.u)
        out = np.log2(np.clip(m, FLOOR, 1) / np.clip(u, FLOOR, 1))
        out[0] = 0.0
        return out


@dataclasses.dataclass(slots=True)
class Model:
    """A trained model: per-field parameters and the prior share of matches."""

    fields: list[FieldModel]
    prior: float
    iterations: int = 0

    def prior_bits(self) -> float:
        """log2 of the prior odds of a match among candidate pairs."""
        return float(np.log2(self.prior / (1 - self.prior)))

    def to_json(self) -> dict[str, Any]:
        """Parameters as plain data (stored with the matcher's state)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Model:
        """The model `to_json` wrote."""
        fields = [FieldModel(**field) for field in data["fields"]]
        return cls(fields=fields, prior=data["prior"], iterations=data.get("iterations", 0))


def initial_model(prep: Prepared, seed: int = 360) -> Model:
    """u from random pairs, m from a generic guess, a prior to be fitted."""
    fields = [
        FieldModel(
            name=field.name,
            kind=field.kind,
            term_frequencies=field.term_frequencies,
            m=list(_initial_m(level_count(field.kind))),
            u=list(u),
            u_exact_random=u[-1],
        )
        for field, u in zip(prep.spec.fields, random_u(prep, seed), strict=True)
    ]
    return Model(fields=fields, prior=0.05)


def random_u(prep: Prepared, seed: int) -> list[np.ndarray]:
    """u per level for each field from random pairs (exact level from term frequencies)."""
    left, right = _random_pairs(prep, seed)
    result = []
    for field in prep.spec.fields:
        count = level_count(field.kind)
        codes = prep.codes[field.name]
        levels = compare_codes(field.kind, prep.code_values[field.name], codes, left, right)
        seen = np.bincount(levels, minlength=count).astype(float)
        exact = _chance_of_agreeing(prep, field.name)
        below = seen[1:-1] / max(seen[1:-1].sum(), 1.0) * (1 - exact)
        u = np.concatenate([[1.0], np.maximum(below, FLOOR), [max(exact, FLOOR)]])
        result.append(u)
    return result


def expectation_maximisation(
    model: Model,
    levels: np.ndarray,
    learn_u: bool = True,
    fixed: frozenset[int] = frozenset(),
    blocked: frozenset[int] = frozenset(),
) -> None:
    """Fit the prior, m (and u unless `learn_u` is False) to pairs' levels in place. The m of
    the fields in `fixed` is left alone; the fields in `blocked` (those the pairs were blocked
    on, so they always agree) say nothing about which pairs match and are left out."""
    patterns, counts = _patterns(levels)
    counts = counts.astype(float)
    total = counts.sum()
    # pseudo-counts pull each share towards its starting value: a level seen a handful of
    # times in a small job cannot claim certainty (u of exactly 0 would be unbeatable)
    m_prior = [np.asarray(field.m) * SMOOTHING for field in model.fields]
    u_prior = [np.asarray(field.u) * SMOOTHING for field in model.fields]
    for iteration in range(1, EM_ITERATIONS + 1):
        weight = _match_weight(model, patterns, blocked)
        previous = model.prior
        model.prior = float(np.clip((counts * weight).sum() / total, FLOOR, 1 - FLOOR))
        for index, field in enumerate(model.fields):
            column = patterns[:, index]
            if index not in fixed:
                field.m = _level_shares(column, counts * weight, m_prior[index])
            if learn_u:
                field.u = _level_shares(column, counts * (1 - weight), u_prior[index])
        model.iterations = iteration
        if abs(model.prior - previous) < EM_TOLERANCE:
            break


def match_bits(model: Model, levels: np.ndarray) -> np.ndarray:
    """Total log2 Bayes factor (with the prior) of each pair, before term frequencies."""
    total = np.full(len(levels), model.prior_bits())
    for index, field in enumerate(model.fields):
        total += field.bits()[levels[:, index]]
    return total


def tf_bits(field: FieldModel, term_frequency: np.ndarray) -> np.ndarray:
    """Extra bits for exact agreement on values with these term frequencies."""
    adjust = np.log2(max(field.u_exact_random, FLOOR) / np.maximum(term_frequency, FLOOR))
    return np.clip(adjust, -MAX_TF_BITS, MAX_TF_BITS)


def probability(bits: np.ndarray) -> np.ndarray:
    """Match probability from total bits."""
    return 1.0 / (1.0 + np.exp2(-np.clip(bits, -60, 60)))


def _match_weight(
    model: Model, patterns: np.ndarray, blocked: frozenset[int] = frozenset()
) -> np.ndarray:
    log_m = np.full(len(patterns), np.log(model.prior))
    log_u = np.full(len(patterns), np.log(1 - model.prior))
    for index, field in enumerate(model.fields):
        if index in blocked:
            continue
        column = patterns[:, index]
        present = column > 0
        log_m[present] += np.log(np.clip(np.asarray(field.m), FLOOR, 1))[column[present]]
        log_u[present] += np.log(np.clip(np.asarray(field.u), FLOOR, 1))[column[present]]
    return 1.0 / (1.0 + np.exp(np.clip(log_u - log_m, -700, 700)))


def _level_shares(column: np.ndarray, weights: np.ndarray, pseudo: np.ndarray) -> list[float]:
    sums = np.bincount(column, weights=weights, minlength=len(pseudo)) + pseudo
    sums[0] = 0.0
    shares = np.maximum(sums / sums.sum(), FLOOR)
    shares[0] = 1.0
    return shares.tolist()


def _patterns(levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows of the level matrix with their counts (rows packed into one integer each:
    levels fit in 4 bits, so up to 16 fields)."""
    if levels.shape[1] > 16:
        return np.unique(levels, axis=0, return_counts=True)
    shifts = np.arange(levels.shape[1], dtype=np.int64) * 4
    packed = (levels.astype(np.int64) << shifts).sum(axis=1)
    distinct, counts = np.unique(packed, return_counts=True)
    patterns = ((distinct[:, None] >> shifts) & 0xF).astype(np.int8)
    return patterns, counts


def _initial_m(count: int) -> np.ndarray:
    # matches mostly agree exactly, less often nearly, rarely not at all
    shares = np.array([0.0, 0.05] + [0.1 / max(count - 3, 1)] * (count - 3) + [0.85])
    shares[0] = 1.0
    return shares


def _chance_of_agreeing(prep: Prepared, field: str) -> float:
    counts = prep.counts[field].astype(float)
    if prep.source is None:
        present = counts.sum()
        return float((counts * (counts - 1)).sum() / max(present * (present - 1), 1.0))
    codes = prep.codes[field]
    left = np.bincount(codes[(prep.source == 0) & (codes >= 0)], minlength=len(counts))
    right = np.bincount(codes[(prep.source == 1) & (codes >= 0)], minlength=len(counts))
    return float((left * right).sum() / max(left.sum() * right.sum(), 1))


def _random_pairs(prep: Prepared, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = len(prep)
    size = min(U_SAMPLE_MAX, U_SAMPLE_PER_RECORD * n)
    if prep.source is None:
        left = rng.integers(0, n, size)
        right = rng.integers(0, n, size)
        keep = left != right
        return left[keep], right[keep]
    first, second = np.flatnonzero(prep.source == 0), np.flatnonzero(prep.source == 1)
    return rng.choice(first, size), rng.choice(second, size)
