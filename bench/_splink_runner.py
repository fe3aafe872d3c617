"""Splink 5 (DuckDB backend) on a benchmark dataset, set up as its documentation recommends.

One recipe per dataset: clean the fields in DuckDB, block with several rules, compare names
with Jaro-Winkler levels and term frequencies, dates of birth by date distance, ids and
phones by edit distance, addresses exactly; estimate lambda from deterministic rules, u by
random sampling, m by two EM sessions blocked on different fields; predict at 0.9.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

import duckdb
import numpy
from _identity_common import Dataset, Prediction

#: The issue's bar: the pairs Splink keeps are those it scores at or above this probability.
THRESHOLD = 0.9

#: Pairs sampled to estimate u. Splink recommends 1e7 or more; larger data gets more.
U_PAIRS_SMALL = 1e7
U_PAIRS_LARGE = 3e7
LARGE = 200_000

#: Seed for u sampling, so runs compare like with like.
U_SEED = 2


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How Splink is set up for one dataset."""

    setup: str
    """One line for the report."""
    clean_sql: str
    """A select over `raw` giving the cleaned table (lower case, digits only, ...)."""
    settings: Callable[[], Any]
    """Builds the SettingsCreator (imported lazily, as Splink is a bench-only dependency)."""
    deterministic_rules: Callable[[], list[Any]]
    recall: float
    """Recall assumed for the deterministic rules when estimating lambda."""
    em_rules: Callable[[], list[Any]]


def run(dataset: Dataset) -> Prediction:
    """Train and predict with Splink; time from cleaning to the pairs in numpy."""
    recipe = recipe_for(dataset.name)
    con = duckdb.connect()
    started = time.perf_counter()

    tables = _cleaned_tables(con, dataset, recipe)
    linker = _linker(con, tables, recipe)
    _train(linker, recipe, len(dataset.records))
    predictions = linker.inference.predict(threshold_match_probability=THRESHOLD)
    pairs = con.sql(
        f"select unique_id_l, unique_id_r from {predictions.physical_name}"
    ).fetchnumpy()
    left = numpy.asarray(pairs["unique_id_l"], dtype=numpy.int64)
    right = numpy.asarray(pairs["unique_id_r"], dtype=numpy.int64)

    seconds = time.perf_counter() - started
    con.close()
    return Prediction(left, right, seconds, setup=recipe.setup)


def recipe_for(name: str) -> Recipe:
    """The recipe for a dataset; generated data of any size uses the synthetic one."""
    recipes = {
        "febrl3": _febrl3,
        "febrl4": _febrl4,
        "fodors_zagat": _fodors_zagat,
    }
    return recipes.get(name, _synthetic)()


def _cleaned_tables(con: duckdb.DuckDBPyConnection, dataset: Dataset, recipe: Recipe) -> list:
    """The records cleaned by the recipe's SQL, one table per source for a link task."""
    raw = dataset.records
    con.register("raw", raw)
    con.execute(f"create table cleaned as {recipe.clean_sql}")
    if not dataset.link_only:
        return [con.table("cleaned")]
    return [
        con.sql(f"select * from cleaned where source_dataset = '{source}'") for source in ("a", "b")
    ]


def _linker(con: duckdb.DuckDBPyConnection, tables: list, recipe: Recipe) -> Any:
    from splink import DuckDBAPI, Linker

    db_api = DuckDBAPI(con)
    registered = [db_api.register(table) for table in tables]
    inputs = registered[0] if len(registered) == 1 else registered
    return Linker(inputs, recipe.settings(), log_level=logging.WARNING)


def _train(linker: Any, recipe: Recipe, n_records: int) -> None:
    training = linker.training
    training.estimate_probability_two_random_records_match(
        recipe.deterministic_rules(), recall=recipe.recall
    )
    max_pairs = U_PAIRS_LARGE if n_records > LARGE else U_PAIRS_SMALL
    training.estimate_u_using_random_sampling(max_pairs=max_pairs, seed=U_SEED)
    for rule in recipe.em_rules():
        training.estimate_parameters_using_expectation_maximisation(
            rule, estimate_without_term_frequencies=True
        )


# -- recipes ---------------------------------------------------------------------------

#: FEBRL is already lower case and padded only after commas (stripped when read).
_FEBRL_CLEAN = "select * from raw"


_FEBRL_COMPARED = (
    "JW names+tf, dob, Damerau-Levenshtein soc_sec_id/street_number+tf/postcode+tf, "
    "JW address_1/address_2, exact suburb+tf/state"
)


def _febrl_comparisons(cl: Any) -> list[Any]:
    # Every FEBRL field takes part: with fewer (the documented example's six), recall at
    # 0.9 falls to 0.98-0.99 on FEBRL 3, below the reference.
    return [
        cl.NameComparison("given_name").configure(term_frequency_adjustments=True),
        cl.NameComparison("surname").configure(term_frequency_adjustments=True),
        cl.DateOfBirthComparison(
            "date_of_birth",
            input_is_string=True,
            datetime_format="%Y%m%d",
            invalid_dates_as_null=True,
        ),
        cl.DamerauLevenshteinAtThresholds("soc_sec_id", [1, 2]),
        cl.DamerauLevenshteinAtThresholds("street_number", [1]).configure(
            term_frequency_adjustments=True
        ),
        cl.JaroWinklerAtThresholds("address_1", [0.9, 0.8]),
        cl.JaroWinklerAtThresholds("address_2", [0.9, 0.8]),
        cl.ExactMatch("suburb").configure(term_frequency_adjustments=True),
        cl.DamerauLevenshteinAtThresholds("postcode", [1, 2]).configure(
            term_frequency_adjustments=True
        ),
        cl.ExactMatch("state"),
    ]


def _febrl3() -> Recipe:
    def settings() -> Any:
        import splink.comparison_library as cl
        from splink import SettingsCreator, block_on

        return SettingsCreator(
            link_type="dedupe_only",
            blocking_rules_to_generate_predictions=[
                block_on("soc_sec_id"),
                block_on("given_name"),
                block_on("surname"),
                block_on("date_of_birth"),
                block_on("postcode"),
            ],
            comparisons=_febrl_comparisons(cl),
        )

    return Recipe(
        setup=(
            "dedupe_only; block soc_sec_id|given_name|surname|dob|postcode; "
            f"{_FEBRL_COMPARED}; lambda from rules; u 1e7; EM on dob, postcode"
        ),
        clean_sql=_FEBRL_CLEAN,
        settings=settings,
        deterministic_rules=_febrl_deterministic_rules,
        recall=0.9,
        em_rules=lambda: _block_each("date_of_birth", "postcode"),
    )


def _febrl4() -> Recipe:
    def settings() -> Any:
        import splink.comparison_library as cl
        from splink import SettingsCreator, block_on

        return SettingsCreator(
            link_type="link_only",
            blocking_rules_to_generate_predictions=[
                block_on("given_name", "surname"),
                "l.given_name = r.surname and l.surname = r.given_name",
                block_on("date_of_birth"),
                block_on("soc_sec_id"),
                block_on("state", "address_1"),
                block_on("street_number", "address_1"),
                block_on("postcode"),
            ],
            comparisons=_febrl_comparisons(cl),
        )

    return Recipe(
        setup=(
            "link_only; 7 blocking rules (names, swapped names, dob, soc_sec_id, address, "
            f"postcode); {_FEBRL_COMPARED}; lambda from rules; u 1e7; EM on dob, postcode"
        ),
        clean_sql=_FEBRL_CLEAN,
        settings=settings,
        deterministic_rules=_febrl_deterministic_rules,
        recall=0.8,
        em_rules=lambda: _block_each("date_of_birth", "postcode"),
    )


def _febrl_deterministic_rules() -> list[Any]:
    from splink import block_on

    return [
        block_on("soc_sec_id"),
        block_on("given_name", "surname", "date_of_birth"),
        "l.given_name = r.surname and l.surname = r.given_name "
        "and l.date_of_birth = r.date_of_birth",
    ]


_RESTAURANT_CLEAN = """
    select unique_id, source_dataset,
        trim(regexp_replace(regexp_replace(lower(name), '[^a-z0-9 ]', ' ', 'g'),
            ' +', ' ', 'g')) as name,
        trim(regexp_replace(regexp_replace(lower(addr), '[^a-z0-9 ]', ' ', 'g'),
            ' +', ' ', 'g')) as addr,
        trim(lower(city)) as city,
        nullif(regexp_replace(phone, '[^0-9]', '', 'g'), '') as phone,
        trim(lower(type)) as type
    from raw
"""


def _fodors_zagat() -> Recipe:
    def settings() -> Any:
        import splink.comparison_library as cl
        from splink import SettingsCreator, block_on

        return SettingsCreator(
            link_type="link_only",
            blocking_rules_to_generate_predictions=[
                block_on("phone"),
                block_on("name"),
                block_on("substr(name, 1, 4)"),
                block_on("city", "substr(addr, 1, 4)"),
            ],
            comparisons=[
                cl.JaroWinklerAtThresholds("name", [0.95, 0.88, 0.7]).configure(
                    term_frequency_adjustments=True
                ),
                cl.JaroWinklerAtThresholds("addr", [0.95, 0.88, 0.7]),
                # The guides word cities differently ("new york" / "new york city").
                cl.JaroWinklerAtThresholds("city", [0.88]),
                # One digit off is a typo; two off is often another line of the same
                # hotel's switchboard, i.e. another restaurant.
                cl.LevenshteinAtThresholds("phone", [1]),
                cl.JaroWinklerAtThresholds("type", [0.88]),
            ],
        )

    def deterministic_rules() -> list[Any]:
        from splink import block_on

        return [block_on("phone"), block_on("name", "city")]

    return Recipe(
        setup=(
            "link_only; block phone|name|name prefix|city+addr prefix; JW name+tf, JW addr, "
            "JW city, Levenshtein<=1 phone digits, JW type; lambda from rules; u 1e7; "
            "EM on city, phone"
        ),
        clean_sql=_RESTAURANT_CLEAN,
        settings=settings,
        deterministic_rules=deterministic_rules,
        recall=0.8,
        em_rules=lambda: _block_each("city", "phone"),
    )


_SYNTHETIC_CLEAN = """
    select unique_id,
        nullif(lower(strip_accents(trim(given_name))), '') as given_name,
        nullif(lower(strip_accents(trim(surname))), '') as surname,
        date_of_birth,
        nullif(regexp_replace(lower(trim(email)), '\\+[^@]*@', '@'), '') as email,
        nullif(regexp_replace(regexp_replace(phone, '[^0-9]', '', 'g'), '^61', '0'), '')
            as phone,
        street_number,
        lower(trim(address_1)) as address_1,
        nullif(lower(trim(concat_ws(' ', street_number, address_1))), '') as address_line,
        lower(trim(suburb)) as suburb,
        postcode,
        lower(state) as state
    from raw
"""


def _synthetic() -> Recipe:
    def settings() -> Any:
        import splink.comparison_library as cl
        from splink import SettingsCreator, block_on

        return SettingsCreator(
            link_type="dedupe_only",
            blocking_rules_to_generate_predictions=[
                block_on("given_name", "surname"),
                "l.given_name = r.surname and l.surname = r.given_name",
                block_on("surname", "date_of_birth"),
                block_on("given_name", "date_of_birth"),
                block_on("email"),
                block_on("phone"),
                block_on("postcode", "street_number"),
            ],
            comparisons=[
                cl.NameComparison("given_name").configure(term_frequency_adjustments=True),
                cl.NameComparison("surname").configure(term_frequency_adjustments=True),
                cl.DateOfBirthComparison(
                    "date_of_birth",
                    input_is_string=True,
                    datetime_format="%Y-%m-%d",
                    invalid_dates_as_null=True,
                ),
                cl.EmailComparison("email"),
                cl.LevenshteinAtThresholds("phone", [1, 2]),
                _address_comparison(),
            ],
        )

    def deterministic_rules() -> list[Any]:
        from splink import block_on

        return [block_on("email"), block_on("given_name", "surname", "date_of_birth")]

    return Recipe(
        setup=(
            "dedupe_only; 7 blocking rules (names, swapped names, surname+dob, given+dob, "
            "email, phone, postcode+street_number); JW names+tf, dob, email, Levenshtein "
            "phone digits, one address comparison (exact / JW 0.88 on number+street, then "
            "exact postcode+suburb); lambda from rules; u 1e7 (3e7 above 200k records); EM "
            "blocked on dob and on email (the better set-up at 1M: EM on names collapses "
            "into one cluster there)"
        ),
        clean_sql=_SYNTHETIC_CLEAN,
        settings=settings,
        deterministic_rules=deterministic_rules,
        recall=0.7,
        em_rules=lambda: _block_each("date_of_birth", "email"),
    )


def _address_comparison() -> Any:
    """Street, suburb and postcode as one comparison: as separate ones Splink counts one
    shared address three or four times (they are not independent) and merges households."""
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl

    return cl.CustomComparison(
        output_column_name="address",
        comparison_levels=[
            cll.NullLevel("address_line"),
            cll.ExactMatchLevel("address_line"),
            cll.JaroWinklerLevel("address_line", 0.88),
            cll.And(cll.ExactMatchLevel("postcode"), cll.ExactMatchLevel("suburb")),
            cll.ElseLevel(),
        ],
    )


def _block_each(*columns: str) -> list[Any]:
    from splink import block_on

    return [block_on(column) for column in columns]
