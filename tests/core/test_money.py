"""Money: numbers and strictly numeric strings become Decimal; anything else is flagged."""

from __future__ import annotations

from decimal import Decimal

import pytest

from c360.events.model import decode_any
from c360.events.money import order_value, read_money


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("12.50", Decimal("12.50")),
        (" 12.50 ", Decimal("12.50")),
        ("-3", Decimal(-3)),
        ("0", Decimal(0)),
        (12, Decimal(12)),
        (Decimal("19.99"), Decimal("19.99")),
        (19.99, Decimal("19.99")),
        (0.1, Decimal("0.1")),
    ],
)
def test_numbers_and_numeric_strings_are_read_exactly(value, expected):
    amount = read_money(value)

    assert amount == expected
    assert isinstance(amount, Decimal)


@pytest.mark.parametrize(
    "value",
    ["12,50", "abc", "", "12.5.0", "1e3", "$12", "12 50", "+5", ".5", "NaN", "Infinity"],
)
def test_text_that_is_not_strictly_numeric_is_not_money(value):
    assert read_money(value) is None


@pytest.mark.parametrize("value", [True, False, None, [12], {"amount": 12}])
def test_booleans_and_containers_are_not_money(value):
    assert read_money(value) is None


@pytest.mark.parametrize(
    "value",
    [Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity"), float("inf"), float("nan")],
)
def test_non_finite_numbers_are_not_money(value):
    assert read_money(value) is None


def test_a_json_1e400_is_not_money():
    value = decode_any(b"1e400")

    assert read_money(value) is None


def test_a_json_integer_too_large_for_any_order_is_not_money():
    assert read_money(decode_any(b"1" + b"0" * 40)) is None


def test_a_fractional_json_number_is_read_without_float_rounding():
    assert read_money(decode_any(b"0.30000000000000004")) == Decimal("0.30000000000000004")


def test_an_order_value_comes_from_revenue_first():
    assert order_value({"revenue": "10.00", "total": "99"}) == (Decimal("10.00"), None)


def test_an_order_value_falls_back_to_total():
    assert order_value({"total": 7, "revenue": None}) == (Decimal(7), None)


def test_an_order_without_money_fields_has_no_value_and_no_warning():
    assert order_value({"sku": "A-1"}) == (None, None)


@pytest.mark.parametrize("value", ["12,50", "abc", True, 1e400])
def test_an_unreadable_order_value_is_flagged_naming_the_field(value):
    amount, warning = order_value({"revenue": value})

    assert amount is None
    assert warning is not None and "properties.revenue" in warning


@pytest.mark.parametrize("value", [10**15, "1000000000000000", "-1000000000000000.5"])
def test_an_amount_of_10_to_the_15_or_more_is_flagged_as_too_large(value):
    assert order_value({"revenue": value}) == (
        None,
        "properties.revenue is too large (10^15 or more); left out of totals",
    )


def test_an_unreadable_amount_is_shown_in_its_warning():
    _amount, warning = order_value({"total": "12,50"})

    assert warning == (
        "properties.total '12,50' is not a plain number (digits and a dot, e.g. 12.50);"
        " left out of totals"
    )
