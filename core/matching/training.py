"""Training the model the way that stays right at a million records: u fixed from random
pairs, m learnt by EM in sessions blocked on one field each, and the prior from the expected
number of matches among all pairs.

Why sessions: pairs blocked on a field always agree on it, so that field's m cannot be learnt
from them, and the other fields, compared between records that share only that one field,
show how matches and non-matches differ. Two sessions on different fields (date of birth and
email for people; phone and city for places) learn every field's m once or twice; u never
moves from what random pairs showed, so EM cannot mistake a household sharing an address for
one person, which it does when it is free to redefine "non-match" in the candidate space.
"""

from __future__ import annotations

import copy

import numpy as np

from c360.matching.blocking import rule_pairs_of
from c360.matching.model import FLOOR, Model, expectation_maximisation, initial_model
from c360.matching.pairs import compare_pairs
from c360.matching.prepare import Prepared
from c360.matching.spec import MatchSpec

#: Fields to block EM sessions on, by role, most useful first; the first two present are used.
SESSION_ROLES = ("date_of_birth", "email", "phone", "postcode", "city", "suburb", "national_id")
#: Pairs sampled per session: enough for stable shares, bounded at any scale.
SESSION_PAIRS = 2_000_000
#: Blocks larger than this are left out of a session (a placeholder date such as 1900-01-01).
SESSION_MAX_BLOCK = 5_000


def session_fields(spec: MatchSpec) -> list[str]:
    """The (at most two) fields EM sessions are blocked on."""
    chosen = []
    for role in SESSION_ROLES:
        for field in spec.fields:
            if field.role == role and len(chosen) < 2:
                chosen.append(field.name)
    return chosen


def train_in_sessions(prep: Prepared, candidate_levels: np.ndarray, seed: int = 360) -> Model:
    """The trained model: m from the sessions, u from random pairs, the prior from how many
    of the candidate pairs the model expects to be matches."""
    model = initial_model(prep, seed)
    learnt: dict[int, list[list[float]]] = {}
    rng = np.random.default_rng(seed)
    for name in session_fields(prep.spec):
        left, right = _session_pairs(prep, name, rng)
        if len(left) == 0:
            continue
        session = copy.deepcopy(model)
        fixed = frozenset({_index(prep.spec, name)})
        levels = compare_pairs(prep, left, right)
        expectation_maximisation(session, levels, learn_u=False, fixed=fixed, blocked=fixed)
        model.iterations += session.iterations
        for index, field in enumerate(session.fields):
            if index not in fixed:
                learnt.setdefault(index, []).append(field.m)
    for index, estimates in learnt.items():
        model.fields[index].m = np.mean(np.asarray(estimates), axis=0).tolist()
    model.prior = _global_prior(prep, model, candidate_levels)
    return model


def _global_prior(prep: Prepared, model: Model, candidate_levels: np.ndarray) -> float:
    """Matches expected among the candidates, over all the pairs there are."""
    if len(candidate_levels) == 0:
        return FLOOR
    fitted = copy.deepcopy(model)
    everything = frozenset(range(len(model.fields)))
    expectation_maximisation(fitted, candidate_levels, learn_u=False, fixed=everything)
    expected = fitted.prior * len(candidate_levels)
    n = len(prep)
    if prep.source is None:
        total = n * (n - 1) / 2
    else:
        total = float((prep.source == 0).sum()) * float((prep.source == 1).sum())
    return float(np.clip(expected / max(total, 1.0), FLOOR, 0.5))


def _session_pairs(
    prep: Prepared, name: str, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    left, right = rule_pairs_of(prep, ((name, ""),), SESSION_MAX_BLOCK)
    if len(left) > SESSION_PAIRS:
        keep = rng.choice(len(left), SESSION_PAIRS, replace=False)
        left, right = left[keep], right[keep]
    return left, right


def _index(spec: MatchSpec, name: str) -> int:
    return [field.name for field in spec.fields].index(name)
