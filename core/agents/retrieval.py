"""The facts a reply may draw on: marketing knowledge found for the customer's request
(c360.knowledge.search), and recommendations: in-stock products related to what the customer
bought and not bought already, so each purchase changes the next suggestion.

Every fact's text passes through c360.agents.safety first: a catalogue entry or venue
description that tries to give orders is flagged and loses those sentences. Reads
knowledge.items; writes nothing.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Sequence
from typing import Any

from c360.agents import safety
from c360.runtime import Runtime

log = logging.getLogger(__name__)

#: Knowledge types that answer each intent; other intents need no retrieval.
TYPES_FOR: dict[str, tuple[str, ...]] = {
    "product_question": ("product", "price"),
    "promotion": ("promotion",),
    "store_info": ("place",),
    "recommendation": ("product",),
}

#: Facts a reply names: enough to choose from, few enough to read on a phone.
FACTS_PER_REPLY = 3
#: Products looked at before ranking recommendations by relation to past purchases.
RECOMMENDATION_POOL = 50


@dataclasses.dataclass(frozen=True, kw_only=True)
class Fact:
    """One retrieved item, safe to show and to quote to the LLM."""

    item_id: str
    type: str
    title: str
    body: str
    attributes: dict[str, Any]
    #: injection markers its text carried (and lost)
    flags: tuple[str, ...] = ()

    def texts(self) -> list[str]:
        """The fact's words, as evidence for the grounding check."""
        return [self.title, self.body]

    def as_data(self) -> dict[str, Any]:
        """The fact as the LLM is shown it (quoted data)."""
        return {
            "id": self.item_id,
            "type": self.type,
            "title": self.title,
            "text": self.body,
            "attributes": self.attributes,
        }


def facts_for(
    runtime: Runtime, intent: str | None, text: str, context: dict[str, Any] | None
) -> list[Fact]:
    """The facts that answer `text` under `intent` for this customer."""
    if intent not in TYPES_FOR:
        return []
    region = (context or {}).get("region")
    if intent == "recommendation":
        return recommend(runtime, context or {}, text)
    from c360.knowledge.search import search  # the knowledge base loads its model lazily

    # a product question may be about one out of stock: say so rather than not find it
    k = 1 if intent == "product_question" else FACTS_PER_REPLY  # the product asked about
    hits = search(runtime, text, types=list(TYPES_FOR[intent]), region=region, k=k)
    return [safe(hit) for hit in hits]


def recommend(
    runtime: Runtime, context: dict[str, Any], text: str, k: int = FACTS_PER_REPLY
) -> list[Fact]:
    """In-stock products in the categories related to the customer's purchases (then in the
    same categories), none already bought; without purchases (or none left near them), what
    `text` asks for."""
    from c360.knowledge.search import get, search

    bought = _bought(context)
    known = [hit for hit in (get(runtime, f"product:{pid}") for pid in bought) if hit]
    related = _related(known, context)
    query = " ".join([text, *related]) if related else text
    hits = search(
        runtime,
        query,
        types=["product"],
        region=context.get("region"),
        in_stock=True,
        k=RECOMMENDATION_POOL,
    )
    fresh = [hit for hit in hits if not _was_bought(hit, bought)]
    bought_categories = {hit.attributes.get("category") for hit in known}
    ranked = sorted(
        enumerate(fresh),
        key=lambda pair: (_closeness(pair[1], related, bought_categories), pair[0]),
    )
    # once purchases point somewhere, unrelated products are noise, not suggestions
    near = [hit for _, hit in ranked if _closeness(hit, related, bought_categories) < 2]
    chosen = near if near else [hit for _, hit in ranked]
    return [safe(hit) for hit in chosen[:k]]


def safe(hit: Any) -> Fact:
    """A knowledge hit as a fact, with injected instructions removed from its texts."""
    title, title_flags = safety.neutralise(hit.title)
    body, body_flags = safety.neutralise(hit.body)
    attributes, attribute_flags = _safe_attributes(hit.attributes)
    found = tuple(sorted({*title_flags, *body_flags, *attribute_flags}))
    if found:
        log.warning("Knowledge item %r carries instructions (%s); removed.", hit.item_id, found)
    return Fact(
        item_id=hit.item_id,
        type=hit.type,
        title=title,
        body=body,
        attributes=attributes,
        flags=found,
    )


def _safe_attributes(attributes: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    cleaned: dict[str, Any] = {}
    found: list[str] = []
    for name, value in attributes.items():
        if isinstance(value, str):
            value, flags = safety.neutralise(value)
            found += flags
        cleaned[name] = value
    return cleaned, found


def _bought(context: dict[str, Any]) -> set[str]:
    """Product ids (SKUs) of the customer's recent orders."""
    return {
        str(product["product_id"])
        for order in context.get("recent_orders") or []
        for product in order.get("products") or []
        if product.get("product_id")
    }


def _related(known: Sequence[Any], context: dict[str, Any]) -> list[str]:
    """Categories related to the purchases, by the catalogue's `related` attribute."""
    related: dict[str, None] = {}
    for hit in known:
        for category in _names(hit.attributes.get("related")):
            related[category] = None
    if not known:  # products not in the catalogue: their order lines may name a category
        for order in context.get("recent_orders") or []:
            for product in order.get("products") or []:
                if product.get("category"):
                    related[str(product["category"])] = None
    return list(related)


def _was_bought(hit: Any, bought: set[str]) -> bool:
    sku = hit.attributes.get("sku")
    return hit.item_id.removeprefix("product:") in bought or (sku is not None and sku in bought)


def _closeness(hit: Any, related: list[str], bought_categories: set[Any]) -> int:
    """0 for a related category, 1 for a category already bought from, 2 for the rest."""
    category = hit.attributes.get("category")
    if category in related:
        return 0
    return 1 if category in bought_categories else 2


def _names(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return [str(item) for item in value]
    return []
