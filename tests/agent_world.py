"""The world the agent tests talk in: a small catalogue (tests/data/agent_catalogue.json)
loaded into the real knowledge base, customers made through the real pipeline (F1 -> F2 ->
F3) from identify and Order Completed events, and inbound messages as channels hand them to
the agent. Imported by tests/core/test_agent_*.py (tests/ is on sys.path, see conftest.py).
"""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from c360.adapters.bus import ID_RESOLUTION
from c360.channels.base import InboundMessage
from c360.events.f1 import IngestContext, ParsedRequest, ingest
from c360.events.model import encode
from c360.knowledge.store import item_from_dict, upsert
from c360.profile_service import get_profile
from c360.stages import f2_persist, f3_resolve

CATALOGUE = Path(__file__).parent / "data" / "agent_catalogue.json"

_IDS = itertools.count(1)


def load_catalogue(runtime: Any, extra: list[dict[str, Any]] = ()) -> list[dict[str, Any]]:
    """Load the test catalogue (and `extra` items) into the knowledge base; returns the raw
    entries, which tests read expected values from."""
    entries = json.loads(CATALOGUE.read_text("utf-8")) + list(extra)
    upsert(runtime, [item_from_dict(entry) for entry in entries])
    return entries


def send_events(runtime: Any, *events: dict[str, Any]) -> None:
    """Events through F1, F2 and F3, as the gateway and the workers would take them."""
    ctx = IngestContext(source="web", received_at=datetime.now(UTC))
    result = ingest(
        ParsedRequest(events=[encode(e) for e in events]), ctx, runtime.settings, runtime.hooks
    )
    assert not result.rejected, result.rejected
    f2_persist.persist(runtime, [encode(event) for event in result.accepted])
    f3_resolve.resolve(runtime, runtime.bus.read_all(ID_RESOLUTION))


def identify(user: str, **traits: Any) -> dict[str, Any]:
    return {
        "type": "identify",
        "userId": user,
        "messageId": f"agent-m-{next(_IDS)}",
        "timestamp": "2026-05-01T08:00:00Z",
        "traits": traits,
    }


def order(
    user: str, order_id: str, day: str, products: list[tuple[str, str, str, int, int]]
) -> dict[str, Any]:
    """An Order Completed event: products as (sku, name, category, quantity, unit price)."""
    total = sum(quantity * price for _, _, _, quantity, price in products)
    return {
        "type": "track",
        "event": "Order Completed",
        "userId": user,
        "messageId": f"agent-m-{next(_IDS)}",
        "timestamp": f"{day}T09:30:00Z",
        "properties": {
            "order_id": order_id,
            "revenue": Decimal(total),
            "total": Decimal(total),
            "currency": "VND",
            "products": [
                {
                    "product_id": sku,
                    "name": name,
                    "category": category,
                    "quantity": quantity,
                    "price": Decimal(price),
                }
                for sku, name, category, quantity, price in products
            ],
        },
    }


def make_lan(runtime: Any) -> dict[str, Any]:
    """A Vietnamese-speaking customer with one order of two iced coffees."""
    send_events(
        runtime,
        identify(
            "u-lan",
            name="Nguyễn Thị Lan",
            language="vi",
            email="lan@example.vn",
            phone="+84901234567",
        ),
        order(
            "u-lan",
            "ORD-1001",
            "2026-05-12",
            [("CF-001", "Cà phê sữa đá", "coffee", 2, 29000)],
        ),
    )
    return get_profile(runtime, "u-lan")


def make_john(runtime: Any) -> dict[str, Any]:
    """An English-speaking customer with one order of a croissant."""
    send_events(
        runtime,
        identify("u-john", name="John Smith", language="en", email="john@example.com"),
        order(
            "u-john", "ORD-2002", "2026-04-03", [("BK-002", "Butter croissant", "bakery", 1, 28000)]
        ),
    )
    return get_profile(runtime, "u-john")


def inbound(
    text: str,
    *,
    channel: str = "webchat",
    sender: str = "chat-lan",
    identifiers: tuple[tuple[str, str], ...] = (("user_id", "u-lan"),),
    external_id: str | None = None,
    language: str | None = None,
) -> InboundMessage:
    """A customer's message as a channel hands it to the agent."""
    return InboundMessage(
        channel=channel,
        sender=sender,
        text=text,
        external_id=external_id or f"ext-{next(_IDS)}",
        received_at=datetime.now(UTC),
        identifiers=identifiers,
        language=language,
    )
