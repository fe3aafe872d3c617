"""Blocking: which pairs of records are worth comparing.

Each rule pairs the records that agree on all its keys; the candidate pairs are the union over
rules, so a true pair is found if any one rule keeps it. Blocks larger than `max_block` (a
placeholder value, a very common name) are skipped rather than compared all against all.
"""

from __future__ import annotations

import dataclasses

import jellyfish
import numpy as np
import polars as pl

from c360.matching.prepare import Prepared, encode
from c360.matching.spec import BlockingRule, KeyPart

#: Every rule may pair this many candidates whatever the number of records.
_MIN_RULE_BUDGET = 200_000

TRANSFORMS = {
    "soundex": jellyfish.soundex,
    "prefix3": lambda value: value[:3],
    "prefix5": lambda value: value[:5],
    "first_token": lambda value: value.split(" ", 1)[0],
    "sorted_tokens": lambda value: " ".join(sorted(value.split())),
    "year": lambda value: value[:4],
}


@dataclasses.dataclass(slots=True)
class Candidates:
    """Candidate pairs of rows (left < right when deduplicating) and blocking statistics."""

    left: np.ndarray
    right: np.ndarray
    pairs_by_rule: dict[str, int]
    skipped_blocks: int
    skipped_rules: list[str] = dataclasses.field(default_factory=list)


def candidate_pairs(prep: Prepared) -> Candidates:
    """The union of every rule's pairs, each pair once."""
    n = len(prep)
    packed: list[np.ndarray] = []
    by_rule: dict[str, int] = {}
    skipped = 0
    skipped_rules = []
    budget = max(int(prep.spec.max_pairs_per_record * n), _MIN_RULE_BUDGET)
    keys_cache: dict[KeyPart, np.ndarray] = {}
    for rule in prep.spec.blocking:
        keys = [_key_codes(prep, part, keys_cache) for part in rule]
        found = _rule_pairs(keys, prep.source, prep.spec.max_block, budget)
        if found is None:
            skipped_rules.append(rule_name(rule))
            continue
        left, right, rule_skipped = found
        by_rule[rule_name(rule)] = len(left)
        skipped += rule_skipped
        packed.append(left.astype(np.int64) * n + right)
    if not packed:
        empty = np.zeros(0, np.int64)
        return Candidates(empty, empty, by_rule, skipped, skipped_rules)
    unique = pl.Series(np.concatenate(packed)).unique().to_numpy()
    return Candidates(unique // n, unique % n, by_rule, skipped, skipped_rules)


def rule_pairs_of(
    prep: Prepared, rule: BlockingRule, max_block: int
) -> tuple[np.ndarray, np.ndarray]:
    """All pairs of one rule (blocks up to `max_block`), whatever their number."""
    keys = [_key_codes(prep, part, {}) for part in rule]
    found = _rule_pairs(keys, prep.source, max_block, budget=2**62)
    assert found is not None  # no budget to exceed
    return found[0], found[1]


def keys_of(values: dict[str, str | None], rules: tuple[BlockingRule, ...]) -> list[str]:
    """Every blocking key of one standardised record, as text (for an index of records)."""
    found = []
    for rule in rules:
        parts = []
        for field, transform in rule:
            texts = [values.get(name) for name in field.split("|")]
            if any(text is None for text in texts):
                break
            text = " ".join(texts)  # type: ignore[arg-type]
            parts.append(TRANSFORMS[transform](text) if transform else text)
        else:
            found.append(rule_name(rule) + "=" + "\x1f".join(parts))
    return found


def key_frame(frame: pl.DataFrame, rules: tuple[BlockingRule, ...]) -> pl.DataFrame:
    """(row, key) for every blocking key of every row of a standardised frame: `keys_of` for a
    whole table at once, giving the same texts."""
    parts_cache: dict[KeyPart, pl.Series] = {}
    keyed = []
    for rule in rules:
        parts = [_key_texts(frame, part, parts_cache) for part in rule]
        prefix = pl.lit(rule_name(rule) + "=")
        key = pl.concat_str([prefix, pl.concat_str(parts, separator="\x1f")])
        keyed.append(
            frame.select(
                pl.int_range(frame.height, dtype=pl.Int64).alias("row"), key.alias("key")
            ).drop_nulls("key")
        )
    if not keyed:
        return pl.DataFrame(schema={"row": pl.Int64, "key": pl.String})
    return pl.concat(keyed)


def _key_texts(frame: pl.DataFrame, part: KeyPart, cache: dict[KeyPart, pl.Series]) -> pl.Series:
    if part not in cache:
        field, transform = part
        text = frame.select(
            pl.concat_str([pl.col(name) for name in field.split("|")], separator=" ")
        ).to_series()
        if transform:
            distinct = text.drop_nulls().unique()
            changed = [TRANSFORMS[transform](value) for value in distinct.to_list()]
            text = text.replace_strict(distinct, pl.Series(changed, dtype=pl.String), default=None)
        cache[part] = text
    return cache[part]


def rule_name(rule: BlockingRule) -> str:
    """A readable name for a rule, e.g. `surname+soundex(given_name)`."""
    return "+".join(f"{transform}({field})" if transform else field for field, transform in rule)


def _key_codes(prep: Prepared, part: KeyPart, cache: dict[KeyPart, np.ndarray]) -> np.ndarray:
    if part in cache:
        return cache[part]
    field, transform = part
    if "|" in field:  # several fields read as one text, e.g. names that may be swapped
        names = field.split("|")
        joined = prep.frame.select(pl.concat_str([pl.col(n) for n in names], separator=" "))
        codes, values = encode(joined.to_series())
        changed = [TRANSFORMS[transform](value) for value in values] if transform else values
        value_codes, _ = encode(pl.Series(changed, dtype=pl.String))
        codes = np.where(codes >= 0, value_codes[np.maximum(codes, 0)], -1).astype(np.int32)
        cache[part] = codes
        return codes
    codes = prep.codes[field]
    if transform:
        changed = [TRANSFORMS[transform](value) for value in prep.code_values[field]]
        value_codes, _ = encode(pl.Series(changed, dtype=pl.String))
        codes = np.where(codes >= 0, value_codes[np.maximum(codes, 0)], -1).astype(np.int32)
    cache[part] = codes
    return codes


def _rule_pairs(
    keys: list[np.ndarray], source: np.ndarray | None, max_block: int, budget: int
) -> tuple[np.ndarray, np.ndarray, int] | None:
    """The rule's pairs and the number of oversized blocks; None when over the budget."""
    names = [f"k{i}" for i in range(len(keys))]
    frame = pl.DataFrame({name: key for name, key in zip(names, keys, strict=True)})
    frame = frame.with_row_index("row").filter(pl.all_horizontal(pl.col(names) >= 0))
    if source is None:
        left = right = frame
    else:
        sides = pl.Series(source[frame.get_column("row").to_numpy()])
        left, right = frame.filter(sides == 0), frame.filter(sides == 1)
    sizes = left.group_by(names).len("n_left").join(right.group_by(names).len("n_right"), on=names)
    block = pl.col("n_left") * pl.col("n_right")
    kept = sizes.filter((block <= max_block * max_block) & (block > (1 if source is None else 0)))
    skipped = (
        sizes.height - kept.height - (sizes.filter(block <= 1).height if source is None else 0)
    )
    # a self-join counts each pair twice (and each record with itself)
    if int(kept.select(block.sum()).item() or 0) > budget * (2 if source is None else 1):
        return None
    left = left.join(kept.select(names), on=names, how="semi")
    right = right.join(kept.select(names), on=names, how="semi")
    pairs = left.join(right, on=names, suffix="_r")
    if source is None:
        pairs = pairs.filter(pl.col("row") < pl.col("row_r"))
    return (
        pairs.get_column("row").to_numpy().astype(np.int64),
        pairs.get_column("row_r").to_numpy().astype(np.int64),
        skipped,
    )
