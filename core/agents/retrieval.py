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
import re
import unicodedata
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from c360.agents import safety
from c360.runtime import Runtime

log = logging.getLogger(__name__)

#: Knowledge types that answer each intent; other intents need no retrieval. Price items
#: never answer alone: they change the price of the product they name (`_with_prices`).
TYPES_FOR: dict[str, tuple[str, ...]] = {
    "product_question": ("product",),
    "promotion": ("promotion",),
    "store_info": ("place",),
    "recommendation": ("product",),
}

#: Facts a reply names: enough to choose from, few enough to read on a phone.
FACTS_PER_REPLY = 3
#: Products looked at before ranking recommendations by relation to past purchases.
RECOMMENDATION_POOL = 50
#: Items looked at before the one the customer names is put first.
NAMED_POOL = 20
#: Words of item titles that name nothing by themselves.
_NOT_NAMES = frozenset({"and", "of", "the", "with", "va", "voi", "cua", "c360"})


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
    pool = search(runtime, text, types=list(TYPES_FOR[intent]), region=region, k=NAMED_POOL)
    hits = by_name(pool, text)
    if intent == "store_info" and hits and name_score(hits[0], text, pool) > 0:
        # one store named ("the Nguyen Hue store"): answer for that one
        hits = [
            hit for hit in hits if name_score(hit, text, pool) == name_score(hits[0], text, pool)
        ]
    facts = [safe(hit) for hit in hits[:k]]
    return _with_prices(runtime, facts) if intent == "product_question" else facts


def named_product(runtime: Runtime, text: str, region: str | None = None) -> Fact | None:
    """The product `text` names by at least two words of its title (in or out of stock),
    or None: a question the intent model did not place may still be about a product."""
    from c360.knowledge.search import search

    pool = search(runtime, text, types=["product"], region=region, k=NAMED_POOL)
    ranked = by_name(pool, text)
    if not ranked or name_score(ranked[0], text, pool) < 2:
        return None
    return _with_prices(runtime, [safe(ranked[0])])[0]


def by_name(hits: Sequence[Any], text: str) -> list[Any]:
    """The hits with those whose titles the text names best first (stable otherwise): the
    embedding ranks "cà phê sữa đá" near every coffee, but the customer named one."""
    scores = [name_score(hit, text, hits) for hit in hits]
    order = sorted(range(len(hits)), key=lambda i: (-scores[i], i))
    return [hits[i] for i in order]


def name_score(hit: Any, text: str, pool: Sequence[Any]) -> int:
    """How many distinguishing words of the hit's title the text contains, compared without
    diacritics; words every title in the pool shares ("coffee" in every store) don't count."""
    asked = set(_words(text))
    shared = set.intersection(*(set(_words(other.title)) for other in pool)) if pool else set()
    own = set(_words(hit.title)) - shared - _NOT_NAMES
    return len(own & asked)


def _words(text: str) -> list[str]:
    from c360.knowledge.store import fold

    return re.findall(r"\w+", fold(unicodedata.normalize("NFC", text)))


def _with_prices(runtime: Runtime, facts: list[Fact]) -> list[Fact]:
    """Products with the price of a valid price item for their SKU. The rule: a price item
    valid now for a product's SKU overrides the product's list price (the latest-starting
    one when several are valid); a price item never answers for any other product."""
    skus = [str(fact.attributes["sku"]) for fact in facts if fact.attributes.get("sku")]
    if not skus:
        return facts
    prices = _valid_prices(runtime, skus)
    changed = []
    for fact in facts:
        price = prices.get(str(fact.attributes.get("sku")))
        if price is None or price.attributes.get("price") is None:
            changed.append(fact)
            continue
        attributes = {**fact.attributes, "price": price.attributes["price"]}
        if price.attributes.get("currency"):
            attributes["currency"] = price.attributes["currency"]
        attributes["list_price"] = fact.attributes.get("price")
        attributes["price_item"] = price.item_id
        changed.append(dataclasses.replace(fact, attributes=attributes))
    return changed


def _valid_prices(runtime: Runtime, skus: list[str]) -> dict[str, Fact]:
    """The price item valid now for each SKU (the latest to start wins)."""
    from c360.knowledge.search import _COLUMNS, _hit, filters

    where = filters(["price"], None, datetime.now(UTC), None)
    with runtime.pool.connection() as conn:
        rows = conn.execute(
            f"SELECT {_COLUMNS}, 1.0 FROM knowledge.items WHERE {where.sql}"
            " AND attributes->>'sku' = ANY(%(skus)s)"
            " ORDER BY valid_from NULLS FIRST, item_id",
            {**where.params, "skus": skus},
        ).fetchall()
    found: dict[str, Fact] = {}
    for row in rows:  # later starts overwrite earlier ones
        fact = safe(_hit(row))
        found[str(fact.attributes.get("sku"))] = fact
    return found


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
