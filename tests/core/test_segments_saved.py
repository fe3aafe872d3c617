"""Saved segments: saving computes members in full; after that the segments stage keeps them
current from c360-updated-profiles, with events sent through F1 -> F2 -> F3 as the pipeline
tests do; a redelivered batch changes nothing; a merged-away profile leaves every segment."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from c360 import audit
from c360.access import BUILT_IN_ROLES, Principal
from c360.adapters.bus import ID_RESOLUTION, UPDATED_PROFILES
from c360.errors import InputError
from c360.events.f1 import IngestContext, ParsedRequest, ingest
from c360.events.model import encode
from c360.profile_service import get_profile
from c360.segments import service
from c360.stages import f2_persist, f3_resolve, segments_stage
from c360.stages.segments_stage import SEGMENTS_GROUP

LAN = Principal("user", "lan", "analyst", frozenset(BUILT_IN_ROLES["analyst"]), user_id=1)
_IDS = itertools.count(1)

REPEAT_GOLD = {
    "all": [
        {"field": "order_count", "op": ">=", "value": 2},
        {"trait": "plan", "op": "=", "value": "gold"},
    ]
}


def _order(user: str, revenue: str) -> dict:
    return {
        "type": "track",
        "event": "Order Completed",
        "userId": user,
        "messageId": f"m-{next(_IDS)}",
        "timestamp": "2026-11-02T03:04:05Z",
        "properties": {"revenue": Decimal(revenue)},
    }


def _identify(traits: dict, **ids: str) -> dict:
    return {"type": "identify", "messageId": f"m-{next(_IDS)}", "traits": traits, **ids}


def _drain(runtime, topic: str, group: str, stage) -> list[list[bytes]]:
    """Feed every entry of a topic to a stage through a consumer group; the batches fed."""
    batches = []
    while deliveries := runtime.bus.consume(topic, group, "test", count=50, block_ms=10):
        for delivery in deliveries:
            stage(runtime, delivery.payloads)
            batches.append(delivery.payloads)
        runtime.bus.ack(group, deliveries)
    return batches


def _send(runtime, *events: dict) -> list[list[bytes]]:
    """Events through F1, F2 and F3, then the segments stage; returns the stage's batches."""
    ctx = IngestContext(source="web", received_at=datetime.now(UTC))
    result = ingest(
        ParsedRequest(events=[encode(e) for e in events]), ctx, runtime.settings, runtime.hooks
    )
    assert not result.rejected
    f2_persist.persist(runtime, [encode(event) for event in result.accepted])
    _drain(runtime, ID_RESOLUTION, "f3", f3_resolve.resolve)
    return _drain(runtime, UPDATED_PROFILES, SEGMENTS_GROUP, segments_stage.refresh)


def _pid(runtime, reference: str) -> str:
    return get_profile(runtime, reference)["profile_id"]


def _members(runtime, segment_id: int) -> dict[str, datetime]:
    with runtime.pool.connection() as conn:
        rows = conn.execute(
            "SELECT profile_id::text, since FROM analytics.segment_members WHERE segment_id = %s",
            (segment_id,),
        ).fetchall()
        count = conn.execute(
            "SELECT member_count FROM analytics.segments WHERE segment_id = %s", (segment_id,)
        ).fetchone()[0]
    assert count == len(rows)  # the kept count never drifts from the rows
    return dict(rows)


def _save(runtime, name: str, spec) -> int:
    with runtime.pool.connection() as conn:
        return service.save(conn, LAN.actor, name, spec)["segment_id"]


def test_saving_computes_the_members_of_the_profiles_already_there(runtime):
    _send(
        runtime, _order("u-1", "10"), _order("u-1", "5"), _identify({"plan": "gold"}, userId="u-1")
    )
    _send(runtime, _order("u-2", "7"), _identify({"plan": "gold"}, userId="u-2"))
    with runtime.pool.connection() as conn:
        saved = service.save(conn, LAN.actor, "Repeat gold", REPEAT_GOLD, "two orders or more")
        entry = audit.entries(conn, action_prefix="segment.create")[0]
    assert saved["member_count"] == 1 and saved["owner"] == "user:lan"
    assert set(_members(runtime, saved["segment_id"])) == {_pid(runtime, "u-1")}
    assert entry.actor == "user:lan" and entry.after["name"] == "Repeat gold"


def test_members_follow_profile_updates_through_the_stage(runtime):
    segment = _save(runtime, "Repeat gold", REPEAT_GOLD)
    _send(runtime, _order("u-1", "10"), _identify({"plan": "gold"}, userId="u-1"))
    _send(
        runtime, _order("u-2", "7"), _order("u-2", "8"), _identify({"plan": "gold"}, userId="u-2")
    )
    assert set(_members(runtime, segment)) == {_pid(runtime, "u-2")}

    _send(runtime, _order("u-1", "12.50"))  # a second order: u-1 joins
    assert set(_members(runtime, segment)) == {_pid(runtime, "u-1"), _pid(runtime, "u-2")}

    _send(runtime, _identify({"plan": "silver"}, userId="u-2"))  # no longer gold: u-2 leaves
    assert set(_members(runtime, segment)) == {_pid(runtime, "u-1")}


def test_a_redelivered_batch_changes_nothing(runtime):
    segment = _save(runtime, "Repeat gold", REPEAT_GOLD)
    batches = _send(
        runtime, _order("u-1", "1"), _order("u-1", "2"), _identify({"plan": "gold"}, userId="u-1")
    )
    before = _members(runtime, segment)
    assert set(before) == {_pid(runtime, "u-1")}

    for batch in batches:
        assert segments_stage.refresh(runtime, batch) == 0
    assert _members(runtime, segment) == before  # same members, same `since`


def test_a_profile_merged_away_leaves_every_segment(runtime):
    _send(runtime, _identify({"plan": "bronze"}, anonymousId="device-1"))
    _send(runtime, _order("u-9", "3"))
    anonymous, known = _pid(runtime, "device-1"), _pid(runtime, "u-9")
    assert anonymous != known
    segment = _save(runtime, "Everyone", {"all": []})
    assert set(_members(runtime, segment)) == {anonymous, known}

    _send(runtime, _identify({"plan": "gold"}, userId="u-9", anonymousId="device-1"))
    survivor = _pid(runtime, "u-9")
    assert _pid(runtime, "device-1") == survivor
    assert set(_members(runtime, segment)) == {survivor}


def test_a_segment_deleted_while_a_batch_waits_is_skipped(runtime):
    segment = _save(runtime, "Everyone", {"all": []})
    with runtime.pool.connection() as conn:
        service.delete(conn, LAN, segment)
    _send(runtime, _order("u-1", "1"))
    with runtime.pool.connection() as conn:
        assert conn.execute("SELECT count(*) FROM analytics.segment_members").fetchone()[0] == 0


def test_a_new_filter_recomputes_the_members_and_is_audited(runtime):
    _send(runtime, _order("u-1", "10"), _order("u-2", "99"))
    segment = _save(runtime, "Big", {"field": "revenue", "op": ">", "value": Decimal("50")})
    assert set(_members(runtime, segment)) == {_pid(runtime, "u-2")}
    with runtime.pool.connection() as conn:
        changed = service.update(
            conn, LAN, segment, name="Small", spec={"field": "revenue", "op": "<", "value": 50}
        )
        entry = audit.entries(conn, action_prefix="segment.update")[0]
    assert changed["name"] == "Small" and changed["member_count"] == 1
    assert set(_members(runtime, segment)) == {_pid(runtime, "u-1")}
    assert entry.before["name"] == "Big" and entry.after["name"] == "Small"


def test_segments_of_a_profile_are_listed_for_the_customer_page(runtime):
    _send(runtime, _order("u-1", "10"))
    first = _save(runtime, "B everyone", {"all": []})
    second = _save(runtime, "A buyers", {"event": "Order Completed"})
    _save(runtime, "C nobody", {"field": "order_count", "op": ">", "value": 5})
    found = service.segments_of_profile(runtime, _pid(runtime, "u-1"), LAN)
    assert [(s["segment_id"], s["name"]) for s in found] == [
        (second, "A buyers"),
        (first, "B everyone"),
    ]


@pytest.mark.parametrize(
    ("name", "spec", "description", "code"),
    [
        ("", {"all": []}, "", "invalid_segment_name"),
        ("x" * 201, {"all": []}, "", "invalid_segment_name"),
        ("ok", {"all": []}, 5, "invalid_segment_description"),
        ("ok", {"field": "nope", "op": "=", "value": 1}, "", "segment_unknown_field"),
    ],
)
def test_a_bad_save_is_refused_and_leaves_nothing(runtime, name, spec, description, code):
    with runtime.pool.connection() as conn:
        with pytest.raises(InputError) as caught:
            service.save(conn, LAN.actor, name, spec, description)
        assert caught.value.code == code
        assert conn.execute("SELECT count(*) FROM analytics.segments").fetchone()[0] == 0


def test_a_taken_name_is_a_conflict(runtime):
    _save(runtime, "Twice", {"all": []})
    other = _save(runtime, "Other", {"all": []})
    with runtime.pool.connection() as conn:
        with pytest.raises(service.SegmentConflict) as caught:
            service.save(conn, LAN.actor, "Twice", {"all": []})
        assert caught.value.status_code == 409 and "another name" in caught.value.message
        with pytest.raises(service.SegmentConflict):
            service.update(conn, LAN, other, name="Twice")


def test_the_workers_actor_runs_the_stage_on_the_updated_profiles_topic(runtime):
    from c360.stages import actors

    actors.bind(runtime)
    segment = _save(runtime, "Buyers", {"event": "Order Completed"})
    ctx = IngestContext(source="web", received_at=datetime.now(UTC))
    result = ingest(ParsedRequest(events=[encode(_order("u-5", "4"))]), ctx, runtime.settings,
                    runtime.hooks)  # fmt: skip
    f2_persist.persist(runtime, [encode(event) for event in result.accepted])
    _drain(runtime, ID_RESOLUTION, "f3", f3_resolve.resolve)
    payloads = [p.decode() for p in runtime.bus.read_all(UPDATED_PROFILES)]
    actors.refresh_segments.fn(payloads)
    assert set(_members(runtime, segment)) == {_pid(runtime, "u-5")}


def test_a_moving_window_is_brought_up_to_date_by_a_full_recompute(runtime):
    from datetime import timedelta

    from c360.segments import membership

    _send(runtime, _order("u-1", "1"))  # the order's time: 2026-11-02T03:04:05Z
    ordered_at = datetime(2026, 11, 2, 3, 4, 5, tzinfo=UTC)
    segment = _save(runtime, "Recent", {"event": "Order Completed", "within_days": 3650})
    assert set(_members(runtime, segment)) == {_pid(runtime, "u-1")}
    with runtime.pool.connection() as conn:
        later = ordered_at + timedelta(days=3651)  # ten years on, nothing else happened
        assert membership.recompute_all(conn, "VN", now=later) == {segment: 0}
    assert _members(runtime, segment) == {}
