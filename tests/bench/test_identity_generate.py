"""The generated customer records: truth that follows the people, corruption that is there,
and the same records for the same seed."""

from __future__ import annotations

import numpy as np
import pytest
from _identity_common import pairs_within_groups
from identity_generate import FIELDS, generate, generate_labelled

N = 2_000


@pytest.fixture(scope="module")
def labelled():
    return generate_labelled(N, seed=11)


def same_person_pairs(labelled):
    dataset, _ = labelled
    records = dataset.records.set_index("unique_id")
    return records.loc[dataset.truth_left], records.loc[dataset.truth_right]


def differs(left, right, column):
    a = left[column].to_numpy()
    b = right[column].to_numpy()
    both = np.array([x is not None and y is not None for x, y in zip(a, b, strict=True)])
    changed = np.array([str(x).casefold() != str(y).casefold() for x, y in zip(a, b, strict=True)])
    return (changed & both).mean()


def test_records_are_numbered_in_order_and_carry_only_the_fields(labelled):
    dataset, _ = labelled

    assert dataset.records["unique_id"].tolist() == list(range(N))
    assert list(dataset.records.columns) == ["unique_id", *FIELDS]
    assert not dataset.link_only


def test_true_pairs_are_exactly_the_pairs_of_records_of_one_person(labelled):
    dataset, person = labelled

    left, right = pairs_within_groups(person)

    assert np.array_equal(dataset.truth_left, left)
    assert np.array_equal(dataset.truth_right, right)
    assert (dataset.truth_left < dataset.truth_right).all()
    assert (person[dataset.truth_left] == person[dataset.truth_right]).all()


def test_most_people_have_one_record_and_some_have_several(labelled):
    _, person = labelled

    counts = np.bincount(np.unique(person, return_inverse=True)[1])

    assert N / 1.8 < len(counts) < N / 1.4
    assert (counts == 1).mean() > 0.5
    assert counts.max() >= 4


def test_records_of_one_person_disagree_the_ways_real_records_do(labelled):
    left, right = same_person_pairs(labelled)

    assert differs(left, right, "given_name") > 0.05
    assert differs(left, right, "surname") > 0.05
    assert differs(left, right, "date_of_birth") > 0.03
    assert differs(left, right, "email") > 0.05
    assert differs(left, right, "address_1") > 0.05
    # The same number written another way is the rule, not the exception.
    assert differs(left, right, "phone") > 0.3


def test_every_field_has_missing_values_and_some_names_are_vietnamese(labelled):
    dataset, _ = labelled
    records = dataset.records

    for field in FIELDS:
        assert records[field].isna().any(), field
        assert records[field].dropna().map(type).eq(str).all(), field
    assert records["surname"].eq("Nguyễn").any()


def test_the_same_seed_gives_the_same_records_and_another_seed_others():
    first, second, other = generate(500, seed=3), generate(500, seed=3), generate(500, seed=4)

    assert first.records.equals(second.records)
    assert np.array_equal(first.truth_left, second.truth_left)
    assert not first.records.equals(other.records)
