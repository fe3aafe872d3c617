"""Reading money: numbers or strictly numeric strings become Decimal; anything else is flagged."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from c360.events.text import shown

_NUMERIC = re.compile(r"^-?\d+(\.\d+)?$")

#: No real order is worth 10**15 in any currency (VND included); larger is a client bug such as
#: JSON's 1e400 (finite as Decimal, infinite as a float) and would swamp every total.
MAX_AMOUNT = Decimal(10) ** 15

#: Segment's ecommerce spec puts an order's value in `revenue`, else `total`.
MONEY_FIELDS = ("revenue", "total")


def read_money(value: Any) -> Decimal | None:
    """The amount as Decimal, or None when `value` is not a plain number."""
    amount = _as_decimal(value)
    if amount is None or not amount.is_finite() or abs(amount) >= MAX_AMOUNT:
        return None
    return amount


def order_value(properties: dict[str, Any]) -> tuple[Decimal | None, str | None]:
    """An order's value from its properties, and a warning when it could not be read."""
    for field in MONEY_FIELDS:
        if field in properties and properties[field] is not None:
            amount = read_money(properties[field])
            if amount is None:
                return None, _unreadable(field, properties[field])
            return amount, None
    return None, None


def _unreadable(field: str, value: Any) -> str:
    """Why an amount was left out: too large, or not a plain number (shown as sent)."""
    amount = _as_decimal(value)
    if amount is not None:
        return f"properties.{field} is too large (10^15 or more); left out of totals"
    return (
        f"properties.{field} {shown(value)} is not a plain number (digits and a dot, e.g. 12.50);"
        " left out of totals"
    )


def _as_decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))  # the shortest text that reads back as this float
    if isinstance(value, str) and _NUMERIC.match(value.strip()):
        try:
            return Decimal(value.strip())
        except InvalidOperation:
            return None
    return None
