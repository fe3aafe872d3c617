"""The matching engine's parts on their own: folding, standardising, comparison levels, EM
and the guarded clustering. Expected values are worked out by hand or from the parameters
that generated the data, never from the code under test."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from c360.matching.cluster import cluster
from c360.matching.compare import level_count, similarity_levels
from c360.matching.fold import fold, fold_expr
from c360.matching.model import FieldModel, Model, expectation_maximisation
from c360.matching.spec import spec_for
from c360.matching.standardise import standardise, standardise_one

VIETNAMESE = [
    "Nguyễn Thị Hương",
    "Đặng Văn Lâm",
    "Trần Quốc Toản",
    "  Lê   Thị  Ánh ",
]
FOLDED = ["nguyen thi huong", "dang van lam", "tran quoc toan", "le thi anh"]


def test_fold_removes_vietnamese_diacritics_and_punctuation() -> None:
    assert [fold(name) for name in VIETNAMESE] == FOLDED
    assert fold("O'Brien-Smith") == "obrien smith"
    assert fold("Straße") == "strasse"
    assert fold("   ") is None and fold(None) is None


def test_vectorised_fold_agrees_with_the_scalar_one() -> None:
    frame = pl.DataFrame({"name": [*VIETNAMESE, "O'Brien-Smith", None, "ß"]})
    folded = frame.select(fold_expr(pl.col("name"))).to_series().to_list()
    assert folded == [*FOLDED, "obrien smith", None, "ss"]


def test_standardise_phone_date_address_email() -> None:
    spec = spec_for(
        {"phone": "phone", "dob": "date_of_birth", "street": "address", "mail": "email"},
        region="AU",
    )
    frame = pl.DataFrame(
        {
            "phone": ["+61 412 345 678", "0412-345-678", "(02) 9876 5432 ext 12", "12"],
            "dob": ["19561112", "1956-11-12", "12/11/1956", ""],
            "street": ["12 North Main Street.", "12 n main st", None, "Boulevard"],
            "mail": [" Bob@Example.COM", "bob@example.com", "not an email", None],
        }
    )
    rows = standardise(frame, spec).rows()
    assert [row[0] for row in rows] == ["+61412345678", "+61412345678", "+61298765432", None]
    assert [row[1] for row in rows] == ["19561112", "19561112", "19561112", None]
    assert [row[2] for row in rows] == ["12 n main st", "12 n main st", None, "blvd"]
    assert [row[3] for row in rows] == ["bob@example.com", "bob@example.com", None, None]
    one = standardise_one({"phone": "+61412345678", "dob": "1956-11-12"}, spec)
    assert one == {"phone": "+61412345678", "dob": "19561112", "street": None, "mail": None}


def test_phones_become_e164_with_the_regions_code_when_written_without_one() -> None:
    cases = {
        ("AU", "+1 310 246 1501"): "+13102461501",
        ("US", "310/246-1501"): "+13102461501",
        ("US", "1-310-246-1501"): "+13102461501",
        ("VN", "0912 345 678"): "+84912345678",
        ("VN", "+84 912 345 678"): "+84912345678",
        ("AU", "0011 44 20 7946 0958"): "+442079460958",  # Australia dials 0011 abroad
        ("US", "011 84 912 345 678"): "+84912345678",  # North America dials 011
        ("GB", "00 33 1 23 45 67 89"): "+33123456789",
    }
    for (region, raw), expected in cases.items():
        spec = spec_for({"p": "phone"}, region=region)
        assert standardise_one({"p": raw}, spec)["p"] == expected, (region, raw)


def test_numeric_levels_follow_relative_difference() -> None:
    top = level_count("numeric") - 1
    levels = similarity_levels(
        "numeric", ["100", "100", "100", "12a"], ["100.5", "109", "150", "12"]
    ).tolist()
    assert levels == [top - 1, top - 2, 1, 1]


def test_name_levels_follow_jaro_winkler_thresholds() -> None:
    # Jaro-Winkler by hand: martha/marhta 0.961 (>= 0.92), dwayne/duane 0.84 (>= 0.80),
    # abc/xyz 0
    top = level_count("name") - 1
    levels = similarity_levels(
        "name", ["martha", "dwayne", "abc"], ["marhta", "duane", "xyz"]
    ).tolist()
    assert levels == [top - 1, top - 2, 1]


def test_date_levels_count_edits() -> None:
    top = level_count("date") - 1
    # one digit wrong; day and month swapped (two edits); a different year and day
    levels = similarity_levels(
        "date", ["19561112", "19561112", "19561112"], ["19561113", "19561211", "19700101"]
    ).tolist()
    assert levels == [top - 1, top - 2, 1]


def test_em_recovers_the_parameters_that_generated_the_data() -> None:
    rng = np.random.default_rng(5)
    true_m = [0.9, 0.85, 0.95]  # chance a match agrees on each of three yes/no fields
    true_u = [0.05, 0.1, 0.02]
    prior = 0.2
    pairs = 200_000
    is_match = rng.random(pairs) < prior
    agree = np.stack(
        [
            np.where(is_match, rng.random(pairs) < m, rng.random(pairs) < u)
            for m, u in zip(true_m, true_u, strict=True)
        ],
        axis=1,
    )
    levels = np.where(agree, 2, 1).astype(np.int8)  # level 2 = agree, 1 = disagree
    fields = [
        FieldModel(f"f{i}", "exact", False, [1.0, 0.3, 0.7], [1.0, 0.7, 0.3], 0.3) for i in range(3)
    ]
    model = Model(fields=fields, prior=0.5)
    expectation_maximisation(model, levels)
    assert model.prior == pytest.approx(prior, abs=0.01)
    for field, m, u in zip(model.fields, true_m, true_u, strict=True):
        assert field.m[2] == pytest.approx(m, abs=0.015)
        assert field.u[2] == pytest.approx(u, abs=0.015)


def test_conflicting_unique_ids_block_a_merge_whatever_the_score() -> None:
    # rows 0-1-2 chain by strong pairs, but rows 0 and 2 hold different national ids
    national_id = np.array([7, -1, 8, -1])
    clusters = cluster(
        4,
        left=np.array([0, 1, 2]),
        right=np.array([1, 2, 3]),
        strength=np.array([50.0, 40.0, 30.0]),
        unique_codes=[national_id],
        max_cluster=10,
    )
    labels = clusters.labels
    assert labels[0] == labels[1] and labels[2] == labels[3] and labels[0] != labels[2]
    assert clusters.conflicting.tolist() == [False, True, False]


def test_a_cluster_past_its_limit_is_flagged_not_merged() -> None:
    clusters = cluster(
        4,
        left=np.array([0, 1, 2]),
        right=np.array([1, 2, 3]),
        strength=np.array([3.0, 2.0, 1.0]),
        unique_codes=[],
        max_cluster=3,
    )
    assert len(set(clusters.labels.tolist())) == 2
    assert clusters.oversized.tolist() == [False, False, True]
    assert clusters.merged.tolist() == [True, True, False]


def test_an_unknown_role_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown field role.*'surnme'.*given_name"):
        spec_for({"a": "surnme"})


def test_linking_two_sources_gives_each_record_its_best_match_only() -> None:
    # rows 0, 1 on side 0; rows 2, 3 on side 1; row 0 looks like both 2 and 3 (2 better)
    clusters = cluster(
        4,
        left=np.array([0, 0, 1]),
        right=np.array([2, 3, 3]),
        strength=np.array([20.0, 15.0, 12.0]),
        unique_codes=[],
        max_cluster=10,
        sides=np.array([0, 0, 1, 1]),
    )
    labels = clusters.labels
    assert labels[0] == labels[2] and labels[1] == labels[3] and labels[0] != labels[1]
    assert clusters.merged.tolist() == [True, False, True]


def test_one_record_is_standardised_as_the_whole_table_is() -> None:
    # the one-record path (plain Python, for F3) and the table path (polars) must agree on
    # every value, or a profile would match differently in batch and as it arrives
    tricky = [
        None,
        "",
        "  ",
        "Nguyễn Thị Hương",
        "Đặng",
        "O'Brien-Smith",
        "12 North Main Street.",
        "+61 412 345 678",
        "0412-345-678",
        "(02) 9876 5432 ext 12",
        "310/246-1501 x 7",
        "0061412345678",
        "12",
        "1956-11-12",
        "12/11/1956",
        "1956.1.2",
        "19561112",
        "n/a",
        " Bob@Example.COM ",
        "no-at-sign",
        "Straße 5",
        "PO Box 12",
        "2 000",
        "ß",
        "ǅemal",
        "Boulevard",
        "lane",
        "ａｂｃ",
        "x\u0301y",
    ]
    roles = {
        "g": "given_name",
        "f": "full_name",
        "d": "date_of_birth",
        "e": "email",
        "p": "phone",
        "n": "street_number",
        "a": "address",
        "s": "suburb",
        "c": "city",
        "z": "postcode",
        "st": "state",
        "i": "national_id",
        "t": "text",
        "k": "category",
    }
    for region in ("AU", "US", "VN"):
        spec = spec_for(roles, region=region)
        frame = pl.DataFrame(
            {name: tricky for name in roles}, schema=dict.fromkeys(roles, pl.String)
        )
        table = standardise(frame, spec).rows(named=True)
        for row, value in enumerate(tricky):
            assert standardise_one(dict.fromkeys(roles, value), spec) == table[row], value
