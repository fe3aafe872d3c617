"""Recommendations: in-stock products in the categories the catalogue relates to what the
customer bought, never one already bought, so a purchase (an Order Completed event through the
real pipeline) changes the agent's next suggestion. Expected items are read from the test
catalogue's JSON here, not from the knowledge base."""

from __future__ import annotations

import pytest
from agent_world import inbound, load_catalogue, make_lan, order, send_events

from c360.agents import dialogue, service


@pytest.fixture
def catalogue(runtime, monkeypatch):
    entries = load_catalogue(runtime)
    make_lan(runtime)
    return {entry["id"]: entry for entry in entries}


def _recommended(runtime) -> list[str]:
    [reply] = service.converse(runtime, inbound("Bạn gợi ý gì cho tôi?"))
    with runtime.pool.connection() as conn:
        agent = dialogue.turns(conn, reply.metadata["conversation_id"], 1)[0]
    assert agent["intent"] == "recommendation"
    return agent["facts"], reply.text


def _expected(catalogue, bought: set[str]) -> tuple[set[str], set[str]]:
    """(products in a category related to a purchase, products in a purchased category),
    in stock and not bought, from the catalogue's JSON."""
    products = {
        item_id: entry["attributes"]
        for item_id, entry in catalogue.items()
        if entry["type"] == "product"
    }
    related = {c for sku in bought for c in products[f"product:{sku}"]["related"]}
    categories = {products[f"product:{sku}"]["category"] for sku in bought}
    fresh = {
        item_id: attributes
        for item_id, attributes in products.items()
        if attributes["stock"] > 0 and attributes["sku"] not in bought
    }
    return (
        {i for i, a in fresh.items() if a["category"] in related},
        {i for i, a in fresh.items() if a["category"] in categories - related},
    )


def test_a_purchase_changes_the_next_recommendation(runtime, catalogue):
    before, text_before = _recommended(runtime)
    related, same = _expected(catalogue, {"CF-001"})

    # first the products of the related category (bakery), then of the bought one (coffee)
    assert set(before[: len(related)]) == related
    assert set(before[len(related) :]) <= same
    assert "product:CF-001" not in before
    assert "Vì bạn đã mua Cà phê sữa đá" in text_before
    bought_next = before[0].removeprefix("product:")

    entry = catalogue[before[0]]
    price = entry["attributes"]["price"]
    send_events(
        runtime,
        order("u-lan", "ORD-1002", "2026-05-20", [(bought_next, entry["title"], "x", 1, price)]),
    )
    after, text_after = _recommended(runtime)

    related, same = _expected(catalogue, {"CF-001", bought_next})
    assert before[0] not in after
    assert after != before
    assert set(after) <= related | same
    assert len(after) == min(3, len(related | same))
    assert entry["title"] in text_after  # "since you bought ..." names the new purchase


def test_out_of_stock_products_are_never_recommended(runtime, catalogue):
    recommended, _ = _recommended(runtime)

    out_of_stock = {
        item_id
        for item_id, entry in catalogue.items()
        if entry["type"] == "product" and entry["attributes"]["stock"] == 0
    }
    assert out_of_stock and not out_of_stock & set(recommended)


def test_a_customer_without_purchases_gets_suggestions_for_what_they_ask(runtime, catalogue):
    [reply] = service.converse(
        runtime,
        inbound(
            "Can you suggest a tea?", sender="chat-new", identifiers=(("anonymous_id", "a-new"),)
        ),
    )

    assert reply.text.startswith("You might like")
    with runtime.pool.connection() as conn:
        [agent] = dialogue.turns(conn, reply.metadata["conversation_id"], 1)
    # the in-stock tea comes first; the golden lotus tea is out of stock
    assert agent["facts"][0] == "product:TEA-001"
    assert "product:TEA-002" not in agent["facts"]
