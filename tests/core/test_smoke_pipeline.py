"""A first walk through F1 -> F2 -> F3 on real engines, calling the stages directly."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from c360.adapters.bus import ID_RESOLUTION, RAW_EVENTS
from c360.events.f1 import IngestContext, ParsedRequest, ingest
from c360.events.model import encode
from c360.profile_service import get_profile
from c360.stages import f2_persist, f3_resolve


def test_an_order_becomes_a_profile_with_its_revenue(runtime):
    raw = encode(
        {
            "type": "track",
            "event": "Order Completed",
            "userId": "u-1",
            "messageId": "m-1",
            "timestamp": "2026-01-02T03:04:05Z",
            "properties": {"revenue": Decimal("19.99")},
            "context": {"traits": {"email": " Lan@Example.VN "}},
        }
    )
    ctx = IngestContext(source="web", received_at=datetime.now(UTC))
    result = ingest(ParsedRequest(events=[raw]), ctx, runtime.settings, runtime.hooks)
    assert len(result.accepted) == 1

    f2_persist.persist(runtime, [encode(result.accepted[0])])
    refs = runtime.bus.read_all(ID_RESOLUTION)
    f3_resolve.resolve(runtime, refs)

    profile = get_profile(runtime, "email:lan@example.vn")
    assert profile is not None
    assert profile["order_count"] == 1
    assert Decimal(str(profile["revenue"])) == Decimal("19.99")
    assert get_profile(runtime, "u-1")["profile_id"] == profile["profile_id"]
    assert runtime.bus.read_all(RAW_EVENTS) == []
