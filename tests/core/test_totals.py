"""Totals for one source leave out what other sources sent (the trial's CDNOW summary)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from c360.adapters.bus import ID_RESOLUTION
from c360.events.f1 import IngestContext, ParsedRequest, ingest
from c360.events.model import encode
from c360.profile_service import totals
from c360.stages import f2_persist, f3_resolve


def _order(user: str, message_id: str, revenue: str) -> bytes:
    return encode(
        {
            "type": "track",
            "event": "Order Completed",
            "userId": user,
            "messageId": message_id,
            "properties": {"revenue": Decimal(revenue)},
        }
    )


def _send(runtime, source: str, raws: list[bytes]) -> None:
    ctx = IngestContext(source=source, received_at=datetime.now(UTC))
    result = ingest(ParsedRequest(events=raws), ctx, runtime.settings, runtime.hooks)
    f2_persist.persist(runtime, [encode(event) for event in result.accepted])


def test_totals_of_a_source_count_only_its_events_and_the_profiles_they_reached(runtime):
    _send(runtime, "cdnow-trial", [_order("c-1", "m1", "10.50"), _order("c-2", "m2", "4.25")])
    _send(runtime, "my-events", [_order("someone-else", "m3", "99.99")])
    f3_resolve.resolve(runtime, runtime.bus.read_all(ID_RESOLUTION))

    trial = totals(runtime, "cdnow-trial")
    everything = totals(runtime)

    assert (trial["events"], trial["profiles"], trial["orders"]) == (2, 2, 2)
    assert Decimal(trial["revenue"]) == Decimal("14.75")
    assert (everything["events"], everything["profiles"]) == (3, 3)
    assert Decimal(everything["revenue"]) == Decimal("114.74")
