"""`c360 trial --json --no-serve` on the first lines of CDNOW: every event, customer and dollar
is accounted for, and a second replay into the same data folder changes no number."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from .conftest import PlainNumbers, plain_numbers, remove_socket_dir, run_trial

pytestmark = pytest.mark.e2e

SLICE = 3000

#: The numbers that must not move when the same events are replayed.
STABLE = ("profiles", "revenue_total", "orders_total", "events_stored", "events_in_lake")


@pytest.fixture(scope="module")
def expected(cdnow_file: Path) -> PlainNumbers:
    return plain_numbers(cdnow_file, SLICE)


@pytest.fixture(scope="module")
def first_run(
    cdnow_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, dict[str, Any]]]:
    """(data folder, summary) of one trial on the slice, shared by the tests below."""
    data_dir = tmp_path_factory.mktemp("slice") / "data"
    try:
        yield data_dir, run_trial(data_dir, cdnow_file, SLICE)
    finally:
        remove_socket_dir(data_dir)


def test_the_trial_on_a_slice_accounts_for_every_event_customer_and_dollar(
    first_run: tuple[Path, dict[str, Any]], expected: PlainNumbers
) -> None:
    _data_dir, summary = first_run

    assert expected.lines == SLICE
    assert summary["events_sent"] == SLICE
    assert summary["events_accepted"] == SLICE
    assert summary["events_rejected"] == 0
    assert summary["client_failures"] == 0
    assert summary["events_stored"] == SLICE
    assert summary["events_in_lake"] == SLICE
    assert summary["orders_total"] == SLICE
    assert summary["profiles"] == expected.customers
    assert Decimal(summary["revenue_total"]) == expected.revenue
    assert summary["api"] is None


def test_the_top_customers_of_the_summary_match_the_plain_sums(
    first_run: tuple[Path, dict[str, Any]], expected: PlainNumbers
) -> None:
    _data_dir, summary = first_run

    top = summary["top_customers"]
    assert top
    for row in top:
        customer = row["user_id"].removeprefix("cdnow-")
        assert row["orders"] == expected.orders_by_customer[customer]
        assert Decimal(row["revenue"]) == expected.revenue_by_customer[customer]
    best = max(expected.revenue_by_customer.values())
    assert Decimal(top[0]["revenue"]) == best


def test_replaying_the_same_slice_into_the_same_data_dir_changes_no_number(
    first_run: tuple[Path, dict[str, Any]], cdnow_file: Path, expected: PlainNumbers
) -> None:
    data_dir, first = first_run

    second = run_trial(data_dir, cdnow_file, SLICE)

    assert {name: second[name] for name in STABLE} == {name: first[name] for name in STABLE}
    assert second["profiles"] == expected.customers
    assert Decimal(second["revenue_total"]) == expected.revenue
    assert second["events_stored"] == SLICE
    assert second["events_in_lake"] == SLICE
    assert second["events_rejected"] == 0
    assert second["client_failures"] == 0
