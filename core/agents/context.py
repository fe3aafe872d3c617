"""What the agent knows about the customer it talks to: the profile (cache first, through
c360.profile_service) with the recent orders, saved segments, consent, lifetime-value tier and
preferences around it, as one JSON-ready snapshot a conversation keeps and replies draw on.

Reads the profile cache, `profiles`, `identifiers`, `events`, `consent` and
`analytics.segment_members`; writes nothing.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import psycopg

from c360.analytics.ltv import TIERS
from c360.events.identifiers import STRONG, TRUST, WEAK
from c360.profile_service import LOOKUP_ORDER, get_profile
from c360.runtime import Runtime

log = logging.getLogger(__name__)

#: Orders the agent remembers: enough for "your last order" and for recommendations.
RECENT_ORDERS = 3

#: Traits that say which language a customer prefers, in order of trust.
_LANGUAGE_TRAITS = ("language", "preferred_language", "locale")
#: Traits that hold what a customer likes (free-form, shown to the LLM as data).
_PREFERENCE_TRAITS = ("preferences", "interests", "favorite_categories")

_ORDERS_SQL = """
SELECT event_time, payload -> 'properties'
FROM events
WHERE profile_id = %s AND type = 'track' AND lower(btrim(event)) = 'order completed'
ORDER BY event_time DESC, message_id DESC
LIMIT %s
"""

_SEGMENTS_SQL = """
SELECT s.name FROM analytics.segment_members m
JOIN analytics.segments s ON s.segment_id = m.segment_id
WHERE m.profile_id = %s ORDER BY s.name
"""

# A customer's rank by revenue among live customers with an order: the LTV report's tiers by
# share of customers (c360.analytics.ltv.TIERS), without refitting its models for each turn.
_RANK_SQL = """
SELECT count(*) FILTER (WHERE revenue > %(revenue)s), count(*)
FROM profiles WHERE merged_into IS NULL AND order_count > 0
"""


def find_profile(
    runtime: Runtime, identifiers: tuple[tuple[str, str], ...]
) -> dict[str, Any] | None:
    """The profile the first known identifier belongs to (cache first), or None. A weak
    identifier alone (a browser's anonymousId) never opens a known customer's profile: it is
    whatever the browser says, and a shared or borrowed browser keeps the last customer's id,
    so the next person would be told her name and orders."""
    for kind, value in identifiers:
        if kind in LOOKUP_ORDER or kind == "profile_id":
            doc = get_profile(runtime, f"{kind}:{value}")
        else:  # a channel's own id type (zalo_id...): no lookup rule, so an exact match
            doc = _by_identifier(runtime, kind, value)
        if doc and TRUST.get(kind) == WEAK and _known_customer(doc):
            log.info("A %s names a known customer; answered as a visitor.", kind)
            continue
        if doc:
            return doc
    return None


def _known_customer(doc: dict[str, Any]) -> bool:
    """Whether the profile holds a strong identifier (a user id, an email, a phone...)."""
    return any(TRUST.get(ident.get("type")) == STRONG for ident in doc.get("identifiers") or ())


def build(runtime: Runtime, doc: dict[str, Any]) -> dict[str, Any]:
    """The snapshot of a profile document: what replies may personalise and cite."""
    profile_id = doc["profile_id"]
    traits = doc.get("traits") or {}
    with runtime.pool.connection() as conn:
        orders = recent_orders(conn, profile_id)
        segments = [row[0] for row in conn.execute(_SEGMENTS_SQL, (uuid.UUID(profile_id),))]
        consent = {
            row[0]: row[1]
            for row in conn.execute(
                "SELECT purpose, granted FROM consent WHERE profile_id = %s", (profile_id,)
            )
        }
        tier = ltv_tier(conn, doc)
    return {
        "profile_id": profile_id,
        "name": display_name(traits),
        "language": preferred_language(traits),
        # the sales region knowledge items are filtered by ("ho-chi-minh"); None: everywhere
        "region": _region(traits),
        "order_count": int(doc.get("order_count") or 0),
        "revenue": str(doc.get("revenue") or 0),
        "recent_orders": orders,
        "segments": segments,
        "consent": consent,
        "ltv_tier": tier,
        "preferences": _preferences(traits),
        # this customer's own addresses: a reply may show these and no others (safety)
        "emails": _identifiers(doc, "email"),
        "phones": _identifiers(doc, "phone"),
        "built_at": datetime.now(UTC).isoformat(),
    }


def recent_orders(conn: psycopg.Connection, profile_id: str) -> list[dict[str, Any]]:
    """The customer's latest orders, newest first, with their products."""
    rows = conn.execute(_ORDERS_SQL, (uuid.UUID(profile_id), RECENT_ORDERS)).fetchall()
    return [
        _order(at, properties if isinstance(properties, dict) else {}) for at, properties in rows
    ]


def ltv_tier(conn: psycopg.Connection, doc: dict[str, Any]) -> str | None:
    """The customer's lifetime-value tier: an `ltv_tier` attribute or trait when one is kept,
    else the tier of the customer's rank by revenue; None before a first order."""
    kept = (doc.get("attributes") or {}).get("ltv_tier") or (doc.get("traits") or {}).get(
        "ltv_tier"
    )
    if isinstance(kept, str) and kept:
        return kept
    if not doc.get("order_count"):
        return None
    row = conn.execute(_RANK_SQL, {"revenue": Decimal(str(doc.get("revenue") or 0))}).fetchone()
    above, total = (row[0], row[1]) if row else (0, 0)
    if not total:
        return None
    share = (above + 1) / total  # the share of customers up to and including this one
    return next(name for name, upto in TIERS if share <= upto)


def display_name(traits: dict[str, Any]) -> str | None:
    """How to address the customer: a first name when one is known."""
    for key in ("first_name", "firstName"):
        if isinstance(traits.get(key), str) and traits[key].strip():
            return traits[key].strip()
    name = traits.get("name")
    if not isinstance(name, str) or not name.strip():
        return None
    words = name.split()
    # Vietnamese names put the given name last ("Nguyễn Thị Lan" is Lan)
    return words[-1] if preferred_language(traits) == "vi" else words[0]


def preferred_language(traits: dict[str, Any]) -> str | None:
    """The two-letter language a customer's traits name ("vi-VN" is "vi"), if any."""
    for key in _LANGUAGE_TRAITS:
        value = traits.get(key)
        if isinstance(value, str) and len(value) >= 2:
            return value[:2].lower()
    return None


def _order(at: datetime, properties: dict[str, Any]) -> dict[str, Any]:
    products = properties.get("products")
    return {
        "order_id": _text(properties.get("order_id") or properties.get("orderId")),
        "date": at.astimezone(UTC).date().isoformat(),
        "total": _amount(properties.get("total", properties.get("revenue"))),
        "currency": _text(properties.get("currency")) or None,
        "products": [_product(p) for p in products if isinstance(p, dict)]
        if isinstance(products, list)
        else [],
    }


def _product(raw: dict[str, Any]) -> dict[str, Any]:
    return {
        "product_id": _text(raw.get("product_id") or raw.get("productId") or raw.get("sku")),
        "name": _text(raw.get("name")),
        "category": _text(raw.get("category")),
        "quantity": _amount(raw.get("quantity")),
        "price": _amount(raw.get("price")),
    }


def _amount(value: Any) -> str | None:
    """An exact decimal as text, whole numbers without a fraction (money stays exact)."""
    if value is None or isinstance(value, bool | dict | list):
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    if not number.is_finite():
        return None
    return str(number.quantize(Decimal(1))) if number == number.to_integral_value() else str(number)


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, bool | dict | list):
        return None
    text = str(value).strip()
    return text or None


def _region(traits: dict[str, Any]) -> str | None:
    region = traits.get("region")
    return region.strip() if isinstance(region, str) and region.strip() else None


def _preferences(traits: dict[str, Any]) -> dict[str, Any]:
    return {key: traits[key] for key in _PREFERENCE_TRAITS if traits.get(key) not in (None, "")}


def _identifiers(doc: dict[str, Any], kind: str) -> list[str]:
    return sorted(
        {str(ident["value"]) for ident in doc.get("identifiers") or [] if ident["type"] == kind}
    )


def _by_identifier(runtime: Runtime, kind: str, value: str) -> dict[str, Any] | None:
    with runtime.pool.connection() as conn:
        row = conn.execute(
            "SELECT profile_id FROM identifiers WHERE id_type = %s AND id_value = %s",
            (kind, value),
        ).fetchone()
    return get_profile(runtime, str(row[0])) if row else None
