"""Template replies, one per intent in English and Vietnamese (core/agents/data/replies.json),
rendered in a Jinja2 sandbox: the path that needs no LLM and is grounded by construction,
since every amount, date and code it prints comes from the facts or the profile snapshot.

Values reach templates already formatted for the language ("1.290.000 ₫" / "1,290,000 VND",
"12/05/2026" / "12 May 2026"), and texts from facts or customers are only ever values, never
template source, so nothing a customer or a catalogue writes is run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import date
from decimal import Decimal, InvalidOperation
from functools import cache
from importlib import resources
from typing import Any

from jinja2.sandbox import SandboxedEnvironment

from c360.agents.personas import Persona
from c360.agents.retrieval import Fact

#: Currencies written with a symbol after the amount in Vietnamese.
_SYMBOLS = {"VND": "₫"}
_MONTHS_EN = re.findall(
    r"\S+", "January February March April May June July August September October November December"
)
#: Products named in "your order of ...": more would be a list, not a sentence.
MAX_ITEMS_NAMED = 3

_ENV = SandboxedEnvironment(autoescape=False, keep_trailing_newline=False)


def render(key: str, language: str, variables: dict[str, Any]) -> str:
    """The `key` template (an intent, "escalated", "out_of_scope") in `language`."""
    template = _templates()[language][key]
    return " ".join(_ENV.from_string(template).render(**variables).split())


def render_text(source: str, variables: dict[str, Any]) -> str:
    """A persona's own text (a greeting), rendered in the same sandbox."""
    return " ".join(_ENV.from_string(source).render(**variables).split())


def variables(
    persona: Persona,
    context: dict[str, Any] | None,
    facts: Sequence[Fact],
    language: str,
    operators_open: bool = True,
) -> dict[str, Any]:
    """What templates may print, formatted for `language`."""
    context = context or {}
    orders = context.get("recent_orders") or []
    hours = persona.opening_hours
    return {
        "persona": {"name": persona.name},
        "name": context.get("name"),
        "order": _order(orders[0], language) if orders else None,
        "bought": _bought(orders, language),
        "facts": [_fact(fact, language) for fact in facts],
        "topics": _topics(persona, language),
        "operators_open": operators_open,
        "hours": f"{hours['from']} - {hours['to']}",
        "spent": _spent(context, orders, language),
    }


def _spent(
    context: dict[str, Any], orders: list[dict[str, Any]], language: str
) -> dict[str, Any] | None:
    """The customer's revenue total and order count from their profile, None before an
    order; the currency is their latest order's (the profile's totals carry none)."""
    count = int(context.get("order_count") or 0)
    if not count:
        return None
    currency = next((o.get("currency") for o in orders if o.get("currency")), None)
    return {"total": money(context.get("revenue") or 0, currency, language), "orders": count}


def money(amount: Any, currency: str | None, language: str) -> str | None:
    """An amount as customers read it: "1.290.000 ₫" (vi), "1,290,000 VND" (en)."""
    try:
        value = Decimal(str(amount))
    except (InvalidOperation, ValueError):
        return None
    currency = (currency or "VND").upper()
    digits = f"{value:,.0f}" if value == value.to_integral_value() else f"{value:,.2f}"
    if language == "vi":  # Vietnamese groups thousands with dots and marks decimals with a comma
        digits = digits.translate(str.maketrans(",.", ".,"))
        return f"{digits} {_SYMBOLS.get(currency, currency)}"
    return f"{digits} {currency}"


def day(iso: str | None, language: str) -> str | None:
    """A date as customers read it: "12/05/2026" (vi), "12 May 2026" (en)."""
    if not iso:
        return None
    try:
        value = date.fromisoformat(str(iso)[:10])
    except ValueError:
        return None
    if language == "vi":
        return value.strftime("%d/%m/%Y")
    return f"{value.day} {_MONTHS_EN[value.month - 1]} {value.year}"


def _order(order: dict[str, Any], language: str) -> dict[str, Any]:
    return {
        "order_id": order.get("order_id"),
        "date": day(order.get("date"), language),
        "total": money(order["total"], order.get("currency"), language)
        if order.get("total")
        else None,
        "lines": _items(order.get("products") or [], language),
    }


def _items(products: list[dict[str, Any]], language: str) -> str:
    names = []
    for product in products[:MAX_ITEMS_NAMED]:
        name = product.get("name") or product.get("product_id")
        if not name:
            continue  # a line without a name (CDNOW's orders): nothing to print for it
        quantity = product.get("quantity")
        names.append(f"{quantity} x {name}" if quantity and quantity != "1" else name)
    return _join(names, language)


def _bought(orders: list[dict[str, Any]], language: str) -> str:
    names = dict.fromkeys(
        product.get("name") or product.get("product_id")
        for order in orders
        for product in order.get("products") or []
    )
    return _join([name for name in names if name][:MAX_ITEMS_NAMED], language)


def _fact(fact: Fact, language: str) -> dict[str, Any]:
    attributes = fact.attributes
    price = attributes.get("price")
    stock = attributes.get("stock")
    return {
        "title": fact.title,
        "price": money(price, attributes.get("currency"), language) if price is not None else None,
        "in_stock": None if stock is None else _positive(stock),
        "code": attributes.get("code"),
        "valid_to": day(attributes.get("valid_to"), language),
        "address": attributes.get("address"),
        "hours": attributes.get("hours"),
    }


def _positive(value: Any) -> bool:
    try:
        return Decimal(str(value)) > 0
    except (InvalidOperation, ValueError):
        return False


def _topics(persona: Persona, language: str) -> str:
    names = _templates()[language]["topics"]
    return _join([names[t] for t in persona.allowed_topics if t in names], language)


def _join(words: list[str], language: str) -> str:
    if len(words) < 2:
        return "".join(words)
    return f"{', '.join(words[:-1])} {_templates()[language]['and']} {words[-1]}"


@cache
def _templates() -> dict[str, dict[str, Any]]:
    source = resources.files("c360.agents").joinpath("data/replies.json").read_text("utf-8")
    return json.loads(source)
