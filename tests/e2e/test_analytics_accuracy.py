"""Every number the overview, RFM and cohort pages show for the CDNOW trial equals an
independent SQL query over CDNOW_master.txt in DuckDB.

The whole file (69,659 purchases) goes through the real pipeline: `c360 trial --no-serve`
replays it through the gateway with the Segment client, the workers run F2, F3 and the lake
sink, and the trial waits until every profile is current. The test then starts the trial's
engines again on its data folder and asks `c360.analytics` (what the API and the pages call).

The expected numbers never come from c360: DuckDB reads the text file itself. Each line is one
order (repeat lines are real purchases); the connector makes customer `00001` user
`cdnow-00001`, dates the order at noon UTC of its day, and takes the dollars as the revenue, so
a customer, a day and an amount map one to one.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest

from c360.analytics.cohorts import cohorts
from c360.analytics.filters import Filters
from c360.analytics.overview import overview
from c360.analytics.rfm import rfm, rfm_cell
from c360.appliance.engines import EmbeddedPostgres, EmbeddedValkey
from c360.runtime import Runtime
from c360.settings import load_settings

from .conftest import remove_socket_dir, run_trial

pytestmark = pytest.mark.e2e

#: Every line of the file.
LINES = 69_659

TRIAL_SOURCE = "cdnow-trial"

#: The file as (customer, day, dollars) rows, read by DuckDB alone.
PURCHASES_SQL = """
CREATE TABLE purchases AS
SELECT parts[1] AS customer,
       strptime(parts[2], '%Y%m%d')::DATE AS day,
       CAST(parts[4] AS DECIMAL(18, 2)) AS dollars
FROM (
    SELECT regexp_split_to_array(trim(line, E' \\r\\t'), '\\s+') AS parts
    FROM read_csv(?, columns = {'line': 'VARCHAR'}, header = true, delim = '\\x01',
                  quote = '', escape = '')
    WHERE trim(line, E' \\r\\t') <> ''
)
"""


@pytest.fixture(scope="module")
def truth(cdnow_file: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute(PURCHASES_SQL, [str(cdnow_file)])
    assert con.execute("SELECT count(*) FROM purchases").fetchone()[0] == LINES
    return con


@pytest.fixture(scope="module")
def trial(cdnow_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    """A runtime on the engines of a finished full CDNOW trial."""
    data_dir = tmp_path_factory.mktemp("accuracy") / "data"
    summary = run_trial(data_dir, cdnow_file, LINES)
    assert summary["events_in_lake"] == LINES
    postgres, valkey = EmbeddedPostgres(data_dir), EmbeddedValkey(data_dir)
    postgres.start()
    valkey.start()
    settings = load_settings(
        {"data_dir": data_dir, "postgres_dsn": postgres.dsn, "valkey_url": valkey.url},
        environ={},
    )
    runtime = Runtime(settings)
    try:
        yield runtime
    finally:
        runtime.close()
        valkey.stop()
        postgres.stop()
        remove_socket_dir(data_dir)


@pytest.fixture(scope="module")
def shown(trial: Runtime) -> dict[str, Any]:
    """The overview, RFM grid and cohorts as the pages get them."""
    return {
        "overview": overview(trial, Filters(sources=(TRIAL_SOURCE,))),
        "overview_all": overview(trial, Filters()),
        "rfm": rfm(trial),
        "cohorts": cohorts(trial),
    }


def rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple]:
    return con.execute(sql).fetchall()


def test_orders_and_revenue_per_day_and_in_total_are_the_files(shown, truth):
    view = shown["overview"]
    per_day = {
        day.isoformat(): (orders, dollars)
        for day, orders, dollars in rows(
            truth, "SELECT day, count(*), sum(dollars) FROM purchases GROUP BY day"
        )
    }

    assert {p["period"]: p["events"] for p in view["events"]} == {
        day: orders for day, (orders, _) in per_day.items()
    }
    assert {p["period"]: (p["orders"], p["revenue"]) for p in view["revenue"]} == per_day
    total_orders, total = rows(truth, "SELECT count(*), sum(dollars) FROM purchases")[0]
    assert view["events_total"] == view["orders_total"] == total_orders == LINES
    assert view["revenue_total"] == total == Decimal("2500315.63")


def test_customers_and_new_profiles_are_the_files(shown, truth):
    view = shown["overview_all"]
    customers = rows(truth, "SELECT count(DISTINCT customer) FROM purchases")[0][0]
    firsts = dict(
        rows(
            truth,
            "SELECT first, count(*) FROM"
            " (SELECT customer, min(day) AS first FROM purchases GROUP BY customer)"
            " GROUP BY first",
        )
    )

    assert view["active_customers"] == view["profiles_total"] == customers == 23_570
    assert {p["period"]: p["profiles"] for p in view["new_profiles"] if p["profiles"]} == {
        day.isoformat(): n for day, n in firsts.items()
    }
    assert view["dlq_size"] == 0


def test_a_date_range_gives_the_files_numbers_for_those_days(trial, truth):
    view = overview(trial, Filters(date_from=date(1997, 3, 1), date_to=date(1997, 3, 31)))
    orders, dollars, customers = rows(
        truth,
        "SELECT count(*), sum(dollars), count(DISTINCT customer) FROM purchases"
        " WHERE day BETWEEN DATE '1997-03-01' AND DATE '1997-03-31'",
    )[0]

    assert (view["events_total"], view["revenue_total"]) == (orders, dollars)
    assert view["active_customers"] == customers
    assert len(view["events"]) == 31


def test_cohort_sizes_and_retention_are_the_files(shown, truth):
    expected: dict[str, dict[int, int]] = {}
    for cohort, k, customers in rows(
        truth,
        """
        WITH months AS (SELECT DISTINCT customer, date_trunc('month', day) AS month
                        FROM purchases),
             firsts AS (SELECT customer, min(month) AS cohort FROM months GROUP BY customer)
        SELECT strftime(f.cohort, '%Y-%m'), datediff('month', f.cohort, m.month), count(*)
        FROM months m JOIN firsts f USING (customer) GROUP BY 1, 2
        """,
    ):
        expected.setdefault(cohort, {})[k] = customers

    found = shown["cohorts"]["cohorts"]
    assert [c["cohort"] for c in found] == sorted(expected)
    assert sum(c["size"] for c in found) == 23_570
    for cohort in found:
        by_offset = expected[cohort["cohort"]]
        assert cohort["size"] == by_offset[0]
        for point in cohort["retention"]:
            assert point["customers"] == by_offset.get(point["offset"], 0)
            share = Decimal(point["customers"]) / Decimal(by_offset[0])
            assert point["share"] == share.quantize(Decimal("0.0001"))
        year, month = map(int, cohort["cohort"].split("-"))
        assert len(cohort["retention"]) == (1998 - year) * 12 + 6 - month + 1  # to 1998-06


#: RFM by the rule documented in c360.analytics.rfm, written again in DuckDB: the rank counts
#: customers with a worse value (ties share it), score = 1 + 5 (rank - 1) // n.
RFM_SQL = """
WITH base AS (
    SELECT customer, (SELECT max(day) FROM purchases) - max(day) AS recency,
           count(*) AS frequency, sum(dollars) AS monetary
    FROM purchases GROUP BY customer
), ranked AS (
    SELECT *, count(*) OVER () AS n,
           rank() OVER (ORDER BY recency DESC) AS rr,
           rank() OVER (ORDER BY frequency) AS fr,
           rank() OVER (ORDER BY monetary) AS mr
    FROM base
)
SELECT 'cdnow-' || customer AS user_id, frequency, monetary,
       1 + (5 * (rr - 1)) // n AS r, 1 + (5 * (fr - 1)) // n AS f
FROM ranked
"""


def test_rfm_cell_counts_and_monetary_totals_are_the_files(shown, truth):
    expected = {
        (r, f): (n, total)
        for r, f, n, total in rows(
            truth, f"SELECT r, f, count(*), sum(monetary) FROM ({RFM_SQL}) GROUP BY r, f"
        )
    }
    grid = shown["rfm"]

    assert grid["as_of"] == "1998-06-30"
    assert grid["customers"] == 23_570
    assert grid["monetary_total"] == Decimal("2500315.63")
    for cell in grid["cells"]:
        count, total = expected.get((cell["r"], cell["f"]), (0, Decimal(0)))
        assert (cell["customers"], cell["monetary_total"]) == (count, total), cell
    assert sum(1 for cell in grid["cells"] if cell["customers"]) == len(expected)


def test_an_rfm_cells_customers_are_the_files(trial, truth):
    user_id, frequency, monetary, r, f = rows(
        truth, f"SELECT * FROM ({RFM_SQL}) ORDER BY monetary DESC LIMIT 1"
    )[0]
    members = rows(truth, f"SELECT count(*) FROM ({RFM_SQL}) WHERE r = {r} AND f = {f}")[0][0]

    cell = rfm_cell(trial, r, f, limit=1)

    top = cell["profiles"][0]
    assert (top["user_id"], top["frequency"], top["monetary"]) == (user_id, frequency, monetary)
    assert cell["customers"] == members
