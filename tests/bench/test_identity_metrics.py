"""Pair and cluster scores of the identity benchmark, on examples worked out by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _identity_common import Dataset, Prediction, pairs_within_groups
from _identity_metrics import (
    clustered,
    clusters_from_pairs,
    cross_source,
    pair_completeness,
    pair_keys,
    pairwise,
)

SHIFT = 1 << 32


def ids(*values: int) -> np.ndarray:
    return np.asarray(values, dtype=np.int64)


def test_a_pair_is_unordered_counted_once_and_never_with_itself():
    keys = pair_keys(ids(3, 7, 7, 5), ids(7, 3, 7, 1))

    assert keys.tolist() == [1 * SHIFT + 5, 3 * SHIFT + 7]


def test_pairwise_scores_count_hits_among_predicted_and_true_pairs():
    # predicted {1-2, 2-3, 4-5}, true {1-2, 1-3, 2-3}: two hits of three each way.
    scores = pairwise(ids(1, 3, 4), ids(2, 2, 5), ids(1, 1, 2), ids(2, 3, 3))

    assert (scores.true_positives, scores.predicted, scores.true) == (2, 3, 3)
    assert scores.precision == pytest.approx(2 / 3)
    assert scores.recall == pytest.approx(2 / 3)
    assert scores.f1 == pytest.approx(2 / 3)


def test_a_pair_predicted_in_both_orders_counts_once():
    # predicted {1-2} twice and {8-9}; true {1-2, 3-4}.
    scores = pairwise(ids(1, 2, 8), ids(2, 1, 9), ids(1, 3), ids(2, 4))

    assert (scores.true_positives, scores.predicted, scores.true) == (1, 2, 2)
    assert scores.f1 == pytest.approx(0.5)


def test_no_prediction_scores_zero_without_dividing_by_zero():
    scores = pairwise(ids(), ids(), ids(1), ids(2))

    assert (scores.precision, scores.recall, scores.f1) == (0.0, 0.0, 0.0)


def test_pair_completeness_is_the_share_of_true_pairs_among_candidates():
    # candidates {1-2, 1-3, 5-6}; true {1-2, 1-3, 2-3, 7-8}: two of four.
    completeness = pair_completeness(ids(2, 1, 5), ids(1, 3, 6), ids(1, 1, 2, 7), ids(2, 3, 3, 8))

    assert completeness == pytest.approx(0.5)


def test_cluster_scores_come_from_the_contingency_of_predicted_and_true_clusters():
    # true   A A A B B C -> pairs 0-1 0-2 1-2 3-4            (3 + 1 = 4)
    # predicted x x y y y z -> pairs 0-1 2-3 2-4 3-4         (1 + 3 = 4)
    # common: 0-1 (x,A) and 3-4 (y,B)                         (2)
    scores = clustered(np.array([0, 0, 1, 1, 1, 2]), np.array([5, 5, 5, 6, 6, 7]))

    assert (scores.true_positives, scores.predicted, scores.true) == (2, 4, 4)
    assert scores.f1 == pytest.approx(0.5)


def test_cluster_scores_of_a_link_task_count_only_pairs_across_sources():
    # sources     a a b b a b
    # true        A B A B C C -> cross pairs 0-2 1-3 4-5            (3)
    # predicted   x x x y y y -> cross pairs 0-2 1-2 | 3-4 4-5      (2 + 2 = 4)
    # common: 0-2 and 4-5                                           (2)
    source = np.array(["a", "a", "b", "b", "a", "b"], dtype=object)
    scores = clustered(np.array([0, 0, 0, 1, 1, 1]), np.array([0, 1, 0, 1, 2, 2]), source)

    assert (scores.true_positives, scores.predicted, scores.true) == (2, 4, 3)
    assert scores.precision == pytest.approx(0.5)
    assert scores.recall == pytest.approx(2 / 3)
    assert scores.f1 == pytest.approx(4 / 7)


def test_clusters_from_pairs_are_connected_components():
    labels = clusters_from_pairs(6, ids(0, 1, 4), ids(1, 2, 5))

    assert labels[0] == labels[1] == labels[2]
    assert labels[4] == labels[5]
    assert len({labels[0], labels[3], labels[4]}) == 3


def test_only_pairs_across_sources_are_kept_for_a_link_task():
    source = np.array(["a", "b", "a", "b"], dtype=object)

    left, right = cross_source(ids(0, 0, 1, 2), ids(1, 2, 3, 3), source)

    assert list(zip(left.tolist(), right.tolist(), strict=True)) == [(0, 1), (2, 3)]


def test_pairs_within_groups_pair_every_two_rows_of_a_group_once():
    left, right = pairs_within_groups(np.array([7, 3, 7, 9, 7, 3]))

    pairs = list(zip(left.tolist(), right.tolist(), strict=True))
    assert pairs == [(0, 2), (0, 4), (1, 5), (2, 4)]


def test_the_harness_ignores_pairs_inside_one_source_of_a_link_task():
    import identity

    records = pd.DataFrame(
        {"unique_id": ids(0, 1, 2, 3), "source_dataset": ["a", "a", "b", "b"], "name": "x"}
    )
    dataset = Dataset("linked", records, True, ids(0, 1), ids(2, 3), {"name": "full_name"})
    # 0-2 is right, 1-3 is missed, 0-1 (same source) is not asked for.
    prediction = Prediction(ids(0, 0), ids(2, 1), seconds=1.0)

    answer = identity.score(dataset, prediction)

    assert (answer["precision"], answer["recall"]) == (1.0, 0.5)
    assert answer["pair_completeness"] is None
    # As clusters, {0, 1, 2} holds cross pairs 0-2 and 1-2, of which one is true.
    assert answer["clusters"]["precision"] == pytest.approx(0.5)
