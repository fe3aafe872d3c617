"""Comparing two records field by field into agreement levels.

Level 0 means "no evidence" (either value missing) and weighs nothing; level 1 is plain
disagreement; higher levels are closer agreement, and the top level is exact agreement. The
levels of each comparison kind, best first below exact:

- name: Jaro-Winkler >= 0.92, >= 0.80
- full_name: token-set ratio >= 0.9 (one name's words inside the other's), Jaro-Winkler >= 0.85,
  >= 0.70
- date: one edit or one transposition, two edits (a swapped day and month is two edits)
- email, id: one edit or transposition, two edits; phone: one edit or transposition (numbers
  two digits apart are often neighbours in one building)
- code (postcode): one edit
- place, address: Jaro-Winkler >= 0.88 (place); >= 0.92, >= 0.80 (address)
- category: token-set ratio >= 0.8
- numeric: within 1% of the larger value, within 10% (a value that is not a number disagrees)
- exact: nothing between agreement and disagreement

Similarities are computed once per distinct pair of values, by rapidfuzz on all cores.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from rapidfuzz import fuzz, process
from rapidfuzz.distance import OSA, JaroWinkler

Scorer = tuple[Callable[..., float], float, bool]  # (scorer, threshold, True if a similarity)

_JW = JaroWinkler.normalized_similarity
_EDITS = OSA.distance


def _relative_difference(a: str, b: str, **_kwargs: object) -> float:
    try:
        x, y = float(a), float(b)
    except ValueError:
        return float("inf")
    scale = max(abs(x), abs(y))
    return abs(x - y) / scale if scale else 0.0


def _token_set(a: str, b: str, **kwargs: object) -> float:
    return fuzz.token_set_ratio(a, b, **kwargs) / 100.0


#: kind -> scorers for the levels between exact (top) and disagreement (1), best first.
KIND_LEVELS: dict[str, tuple[Scorer, ...]] = {
    "name": ((_JW, 0.92, True), (_JW, 0.80, True)),
    "full_name": ((_token_set, 0.9, True), (_JW, 0.85, True), (_JW, 0.70, True)),
    "date": ((_EDITS, 1, False), (_EDITS, 2, False)),
    "email": ((_EDITS, 1, False), (_EDITS, 2, False)),
    "phone": ((_EDITS, 1, False),),
    "id": ((_EDITS, 1, False), (_EDITS, 2, False)),
    "code": ((_EDITS, 1, False),),
    "place": ((_JW, 0.88, True),),
    "address": ((_JW, 0.92, True), (_JW, 0.80, True)),
    "category": ((_token_set, 0.8, True),),
    "numeric": ((_relative_difference, 0.01, False), (_relative_difference, 0.1, False)),
    "exact": (),
}


def level_count(kind: str) -> int:
    """Number of levels of a kind, counting "no evidence" (0) and exact agreement."""
    return len(KIND_LEVELS[kind]) + 3


def compare_codes(
    kind: str,
    code_values: Sequence[str],
    codes: np.ndarray,
    left: np.ndarray,
    right: np.ndarray,
) -> np.ndarray:
    """Levels (int8) of pairs (left[i], right[i]) of rows, given each row's dense value code
    (-1 when missing) and the value of each code."""
    code_l, code_r = codes[left], codes[right]
    top = level_count(kind) - 1
    levels = np.ones(len(left), dtype=np.int8)
    levels[(code_l < 0) | (code_r < 0)] = 0
    levels[(code_l == code_r) & (code_l >= 0)] = top
    scorers = KIND_LEVELS[kind]
    if not scorers:
        return levels
    todo = np.flatnonzero(levels == 1)
    if len(todo) == 0:
        return levels
    # each distinct pair of values once: names and places repeat across many pairs
    width = np.int64(codes.max() + 1)
    packed = code_l[todo].astype(np.int64) * width + code_r[todo]
    distinct, inverse = np.unique(packed, return_inverse=True)
    first = [code_values[i] for i in (distinct // width)]
    second = [code_values[i] for i in (distinct % width)]
    levels[todo] = similarity_levels(kind, first, second)[inverse]
    return levels


#: Jaro-Winkler both ways at which a given name and surname count as written the wrong way
#: round (they then take the near-agreement level, not disagreement).
SWAP_SIMILARITY = 0.92


def mark_swapped_names(
    levels: np.ndarray,
    columns: tuple[int, int],
    names: tuple[
        Sequence[str | None], Sequence[str | None], Sequence[str | None], Sequence[str | None]
    ],
) -> None:
    """Give near agreement to pairs whose given name and surname are swapped, in place.

    `columns` are the given-name and surname columns of `levels`; `names` holds, per pair, the
    left given name, left surname, right given name and right surname."""
    given, surname = columns
    near = level_count("name") - 2
    both_differ = np.flatnonzero((levels[:, given] == 1) & (levels[:, surname] == 1))
    if len(both_differ) == 0:
        return
    given_l, surname_l, given_r, surname_r = (
        [values[row] for row in both_differ] for values in names
    )
    forth = _pairwise(_JW, given_l, surname_r)
    back = _pairwise(_JW, surname_l, given_r)
    swapped = both_differ[(forth >= SWAP_SIMILARITY) & (back >= SWAP_SIMILARITY)]
    levels[swapped, given] = near
    levels[swapped, surname] = near


def count_address_once(levels: np.ndarray, street: int, locality: Sequence[int]) -> None:
    """Where the street address agrees exactly, its locality (suburb, city, postcode, state)
    becomes "no evidence", in place.

    The parts of one address are not independent: two people of one household agree on all of
    them, and counting each part as separate evidence would merge them on the address alone.
    """
    same_street = levels[:, street] == level_count("address") - 1
    for column in locality:
        levels[same_street, column] = 0


def similarity_levels(kind: str, first: Sequence[str], second: Sequence[str]) -> np.ndarray:
    """Levels of value pairs known to be present and different (so below exact)."""
    scorers = KIND_LEVELS[kind]
    levels = np.ones(len(first), dtype=np.int8)
    top = level_count(kind) - 1
    undecided = np.arange(len(first))
    cache: dict[Callable[..., float], np.ndarray] = {}
    for rank, (scorer, threshold, is_similarity) in enumerate(scorers):
        if len(undecided) == 0:
            break
        if scorer not in cache:
            cache[scorer] = _pairwise(scorer, first, second)
        scores = cache[scorer][undecided]
        hit = scores >= threshold if is_similarity else scores <= threshold
        levels[undecided[hit]] = top - 1 - rank
        undecided = undecided[~hit]
    return levels


def _pairwise(scorer: Callable[..., float], first: Sequence[str], second: Sequence[str]):
    if len(first) == 0:
        return np.zeros(0)
    workers = -1 if len(first) > 10_000 else 1  # threads cost more than a few pairs
    return process.cpdist(first, second, scorer=scorer, workers=workers)
