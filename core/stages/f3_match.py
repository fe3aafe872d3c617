"""F3's probabilistic half: profiles that share no identifier but describe the same person.

After F3 resolves a batch, each touched profile whose traits hold something to match on
(names, birthday, email, phone, address) is written to the match index and matched against
every other indexed profile with the trained model (`c360 identity train` stores it as
"profiles"). A candidate at or above the merge threshold is merged into (through
`c360.merges.merge_profiles`, whose guards still hold: different userIds or CRM ids, or a pair
kept apart, refuse the merge); one between the review and merge thresholds is queued for a
person. Without a trained model nothing happens: deterministic rules alone decide.

Also here: training the model over the whole index, and deduplicating it in one batch (a CRM
bulk load), both run by the `c360 identity` command.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Iterable
from typing import Any

import numpy as np
import polars as pl
import psycopg

from c360 import merges
from c360.matching.batch import match
from c360.matching.incremental import (
    index_records,
    load_model,
    match_standardised,
    remove_records,
    save_model,
)
from c360.matching.model import Model
from c360.matching.spec import MatchSpec, spec_for
from c360.matching.standardise import standardise_one
from c360.plugins_manager import default_manager

log = logging.getLogger(__name__)

#: Name of the trained model F3 uses for profiles.
PROFILE_MODEL = "profiles"

#: Fewest filled fields worth matching on: an email alone is the deterministic rules' job.
MIN_FIELDS = 3


@dataclasses.dataclass(slots=True)
class Outcome:
    """What matching a batch of profiles did."""

    merged_away: list[uuid.UUID] = dataclasses.field(default_factory=list)
    reviews: int = 0
    refused: int = 0


def profile_fields() -> dict[str, tuple[str, list[str]]]:
    """field -> (role, trait paths), from every plugin implementing c360_profile_match_fields."""
    fields: dict[str, tuple[str, list[str]]] = {}
    for found in default_manager().hook.c360_profile_match_fields():
        for name, role, paths in found:
            fields[name] = (role, list(paths))
    return fields


def profile_spec(region: str) -> MatchSpec:
    """The spec of profiles' match records (phones without a country code are `region`'s)."""
    return spec_for({name: role for name, (role, _) in profile_fields().items()}, region=region)


def profile_record(
    traits: dict[str, Any], fields: dict[str, tuple[str, list[str]]]
) -> dict[str, str | None]:
    """A profile's raw match record from its traits (`fields` as `profile_fields` gives them);
    a field missing from the traits is None."""
    return {name: _first_text(traits, paths) for name, (_role, paths) in fields.items()}


def match_profiles(conn: psycopg.Connection, profile_ids: Iterable[uuid.UUID]) -> Outcome:
    """Index the profiles and merge or queue what the model finds (nothing without a model)."""
    stored = load_model(conn, PROFILE_MODEL)
    if stored is None:
        return Outcome()
    spec, model = stored
    outcome = Outcome()
    for profile_id, values in _match_records(conn, spec, profile_ids):
        with conn.transaction():
            index_records(conn, spec, [(profile_id, values)])
            _match_one(conn, spec, model, profile_id, values, outcome)
    return outcome


def _match_one(
    conn: psycopg.Connection,
    spec: MatchSpec,
    model: Model,
    profile_id: uuid.UUID,
    values: dict[str, str | None],
    outcome: Outcome,
) -> None:
    for candidate in match_standardised(conn, spec, model, values, exclude=[profile_id]):
        if candidate.probability < spec.review_threshold:
            break
        evidence = candidate.evidence(PROFILE_MODEL)
        evidence["source_records"] = [str(candidate.record_id), str(profile_id)]
        oversized = _cluster_size(conn, [candidate.record_id, profile_id]) > spec.max_cluster
        if oversized:  # a chain of near matches must not snowball into one giant profile
            evidence["review_reason"] = f"the merged profile would hold over {spec.max_cluster}"
        held = candidate.held(spec)
        if held:  # twins: everything alike but the given name
            evidence["review_reason"] = "the given names disagree and no email vouches"
        if candidate.probability < spec.merge_threshold or oversized or held:
            outcome.reviews += (
                merges.enqueue_review(
                    conn, candidate.record_id, profile_id, candidate.probability, evidence
                )
                is not None
            )
            continue
        try:  # the indexed (older) profile survives
            merges.merge_profiles(conn, candidate.record_id, profile_id, "probabilistic", evidence)
        except merges.MergeRefused as refused:
            log.info(
                "Probabilistic merge of %s into %s refused: %s",
                profile_id,
                candidate.record_id,
                refused,
            )
            outcome.refused += 1
            continue
        remove_records(conn, spec, [profile_id])
        outcome.merged_away.append(profile_id)
        return  # merged: its record is gone from the index


def _cluster_size(conn: psycopg.Connection, profile_ids: list[uuid.UUID]) -> int:
    """Profiles (live and merged away) in the clusters of these profiles, together."""
    row = conn.execute(
        "WITH roots AS (SELECT DISTINCT coalesce(merged_into, profile_id) AS root FROM profiles"
        " WHERE profile_id = ANY(%s))"
        " SELECT count(*) FROM profiles p JOIN roots ON p.profile_id = roots.root"
        " OR p.merged_into = roots.root",
        (profile_ids,),
    ).fetchone()
    return int(row[0])


def _match_records(
    conn: psycopg.Connection, spec: MatchSpec, profile_ids: Iterable[uuid.UUID]
) -> list[tuple[uuid.UUID, dict[str, str | None]]]:
    rows = conn.execute(
        "SELECT profile_id, traits FROM profiles WHERE profile_id = ANY(%s)"
        " AND merged_into IS NULL ORDER BY profile_id",
        (sorted(set(profile_ids)),),
    ).fetchall()
    fields = profile_fields()  # once per batch: it asks every plugin
    found = []
    for profile_id, traits in rows:
        values = standardise_one(profile_record(traits or {}, fields), spec)
        if sum(value is not None for value in values.values()) >= MIN_FIELDS:
            found.append((profile_id, values))
    return found


def train_profiles(conn: psycopg.Connection, default_region: str) -> dict[str, Any]:
    """Index every live profile, train the model over the index and store it."""
    spec = profile_spec(default_region)
    records = _index_all(conn, spec)
    if records.height < 2:
        raise ValueError(
            "too few profiles with names, birthday, email, phone or address to train on "
            f"({records.height}); load profiles first"
        )
    result = match(records.drop("record_id"), spec)
    save_model(conn, PROFILE_MODEL, result.effective_spec, result.model)
    return {
        "records": records.height,
        "candidate_pairs": len(result.candidates.left),
        "prior": result.model.prior,
    }


#: Pairs shown in a dedupe summary, strongest first, for a person to check before --apply.
EXAMPLES = 20


def dedupe_profiles(
    conn: psycopg.Connection, apply: bool
) -> tuple[dict[str, Any], list[uuid.UUID]]:
    """Deduplicate the whole index in one batch; with `apply`, merge and queue what it finds.
    Returns a summary (counts, the strongest pairs as examples) and the profiles changed."""
    stored = load_model(conn, PROFILE_MODEL)
    if stored is None:
        raise ValueError("no trained model: run `c360 identity train` first")
    spec, _model = stored
    records = _index_all(conn, spec)
    result = match(records.drop("record_id"), spec)
    ids = [uuid.UUID(text) for text in records.get_column("record_id").to_list()]
    pairs = result.matches[np.argsort(-result.bits[result.matches])].tolist()
    changed: list[uuid.UUID] = []
    refused = 0
    examples = []
    for pair in pairs:
        left, right = ids[result.candidates.left[pair]], ids[result.candidates.right[pair]]
        evidence = _batch_evidence(result, records, pair)
        reason = merges.refusal(conn, left, right)
        if len(examples) < EXAMPLES:
            examples.append({"profiles": [str(left), str(right)], "refused": reason, **evidence})
        if reason is not None:
            refused += reason != "they are already one profile"
            continue
        if apply:
            merges.merge_profiles(conn, left, right, "probabilistic", evidence)
            changed += [left, right]
    queued = _queue_reviews(conn, result, ids, records) if apply else 0
    summary = {
        "records": records.height,
        "pairs_to_merge": len(pairs),
        "pairs_to_review": len(result.reviews),
        "refused": refused,
        "merged": len(changed) // 2,
        "new_reviews": queued,
        "applied": apply,
        "examples": examples,
    }
    return summary, changed


def _queue_reviews(
    conn: psycopg.Connection, result: Any, ids: list[uuid.UUID], records: pl.DataFrame
) -> int:
    """Queue the result's review pairs; how many were not queued already."""
    before = conn.execute("SELECT count(*) FROM match_reviews").fetchone()[0]
    for pair in result.reviews.tolist():
        left, right = ids[result.candidates.left[pair]], ids[result.candidates.right[pair]]
        evidence = _batch_evidence(result, records, pair)
        merges.enqueue_review(conn, left, right, evidence["score"], evidence)
    return conn.execute("SELECT count(*) FROM match_reviews").fetchone()[0] - before


def _batch_evidence(result: Any, records: pl.DataFrame, pair: int) -> dict[str, Any]:
    """What matched in one pair of a batch: each field's level, weight and both values."""
    left, right = int(result.candidates.left[pair]), int(result.candidates.right[pair])
    fields = {}
    for index, field in enumerate(result.model.fields):
        level = int(result.levels[pair, index])
        if level:
            fields[field.name] = {
                "level": level,
                "bits": round(float(field.bits()[level]), 3),
                "values": [records[left, field.name], records[right, field.name]],
            }
    return {
        "rule": "probabilistic batch",
        "model": PROFILE_MODEL,
        "score": round(float(result.probability[pair]), 6),
        "bits": round(float(result.bits[pair]), 3),
        "fields": fields,
        "source_records": [records[left, "record_id"], records[right, "record_id"]],
    }


def _index_all(conn: psycopg.Connection, spec: MatchSpec) -> pl.DataFrame:
    """Every live profile with enough to match on, indexed; its standardised records."""
    ids = [
        row[0]
        for row in conn.execute(
            "SELECT profile_id FROM profiles WHERE merged_into IS NULL"
        ).fetchall()
    ]
    records = _match_records(conn, spec, ids)
    index_records(conn, spec, records)
    names = [field.name for field in spec.fields]
    return pl.DataFrame(
        {
            "record_id": [str(profile_id) for profile_id, _ in records],
            **{name: [values.get(name) for _, values in records] for name in names},
        },
        schema={"record_id": pl.String, **dict.fromkeys(names, pl.String)},
    )


def _first_text(traits: dict[str, Any], paths: list[str]) -> str | None:
    """The first trait path holding a plain value (paths may go into nested traits)."""
    for path in paths:
        value: Any = traits
        for key in path.split("."):
            value = value.get(key) if isinstance(value, dict) else None
        if value is not None and not isinstance(value, (dict, list)) and str(value).strip():
            return str(value)
    return None
