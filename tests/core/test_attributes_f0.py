"""Attribute definitions and F0 on the real PostgreSQL and Valkey: a definition F0 activates is
computed by F3 from then on, back-filled on request, and a failing migration rolls back."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from c360 import audit, migrate
from c360.errors import InputError
from c360.events.f1 import IngestContext, ParsedRequest, ingest
from c360.events.model import encode
from c360.governance import attributes, f0
from c360.stages import f2_persist, f3_resolve

NOW = datetime.now(UTC).replace(microsecond=0)


def run(runtime, *events: dict, source: str = "web") -> int:
    """Events through F1, F2 and one F3 batch."""
    ctx = IngestContext(source=source, received_at=NOW)
    result = ingest(
        ParsedRequest(events=[encode(e) for e in events]), ctx, runtime.settings, runtime.hooks
    )
    assert not result.rejected, result.rejected
    f2_persist.persist(runtime, [encode(event) for event in result.accepted])
    refs = [encode([source, event.message_id]) for event in result.accepted]
    return f3_resolve.resolve(runtime, refs)


def order(mid: str, user: str, revenue: str, days_ago: int = 1, **properties) -> dict:
    ts = (NOW - timedelta(days=days_ago)).isoformat()
    props = {"revenue": revenue, **properties}
    return {
        "type": "track",
        "event": "Order Completed",
        "messageId": mid,
        "userId": user,
        "timestamp": ts,
        "properties": props,
    }


def viewed(mid: str, user: str, sku: str) -> dict:
    return {
        "type": "track",
        "event": "Product Viewed",
        "messageId": mid,
        "userId": user,
        "timestamp": (NOW - timedelta(hours=1)).isoformat(),
        "properties": {"sku": sku},
    }


def attrs(runtime, user: str) -> dict:
    with runtime.pool.connection() as conn:
        row = conn.execute(
            "SELECT p.attributes FROM profiles p JOIN identifiers i USING (profile_id)"
            " WHERE i.id_type = 'user_id' AND i.id_value = %s",
            (user,),
        ).fetchone()
    return row[0]


SPEND_30D = {
    "name": "spend_30d",
    "type": "money",
    "source": "events",
    "event_names": ["Order Completed"],
    "property": "total",
    "aggregation": "sum",
    "window_days": 30,
    "owner": "growth",
}


def create(runtime, spec: dict) -> attributes.Definition:
    with runtime.pool.connection() as conn:
        return attributes.create_definition(conn, "user:lan", spec)


def test_a_definition_is_computed_by_f3_after_activation_and_not_before(runtime):
    create(runtime, SPEND_30D)
    run(runtime, order("o1", "u1", "10.00", total="10.25"))
    assert "spend_30d" not in attrs(runtime, "u1")  # pending: F3 does not compute it yet

    result = f0.sync(runtime, "user:lan", trigger="ui")
    assert result.outcome == "ok"
    assert result.steps[1] == {"step": "activate", "activated": ["spend_30d"]}

    run(
        runtime,
        order("o2", "u1", "5", total="19.99"),
        order("o3", "u1", "5", days_ago=45, total="100"),  # outside the 30-day window
        order("o4", "u1", "5", total="not a number"),  # left out of the sum
    )
    assert Decimal(str(attrs(runtime, "u1")["spend_30d"])) == Decimal("10.25") + Decimal("19.99")


def test_backfill_computes_old_profiles_from_their_stored_events(runtime):
    totals: dict[str, Decimal] = {}
    skus: dict[str, set[str]] = {}
    events = []
    for n in range(30):
        user = f"u{n % 7}"
        total = Decimal(n * 3) + Decimal("0.33")
        totals[user] = totals.get(user, Decimal(0)) + total
        events.append(order(f"o{n}", user, "1", total=str(total)))
        events.append(viewed(f"v{n}", user, f"sku-{n % 4}"))
        skus.setdefault(user, set()).add(f"sku-{n % 4}")
    run(runtime, *events)

    create(runtime, SPEND_30D)
    create(
        runtime,
        {
            "name": "skus_viewed",
            "type": "number",
            "source": "events",
            "event_names": ["Product Viewed"],
            "property": "sku",
            "aggregation": "distinct_count",
        },
    )
    create(
        runtime,
        {
            "name": "last_order_at",
            "type": "timestamp",
            "source": "events",
            "event_names": ["Order Completed"],
            "aggregation": "last",
        },
    )
    f0.BACKFILL_BATCH, saved = 3, f0.BACKFILL_BATCH  # several batches for 7 profiles
    try:
        result = f0.sync(runtime, "user:lan", backfill=True)
    finally:
        f0.BACKFILL_BATCH = saved

    assert result.outcome == "ok", result.error
    backfill = result.steps[2]
    assert backfill["profiles"] == 7 and backfill["done"] == 7
    for user, total in totals.items():
        values = attrs(runtime, user)
        assert Decimal(str(values["spend_30d"])) == total
        assert values["skus_viewed"] == len(skus[user])
        assert values["last_order_at"] is not None


def test_a_trait_attribute_copies_the_trait(runtime):
    create(runtime, {"name": "plan", "type": "text", "source": "trait", "trait": "plan"})
    f0.sync(runtime, "user:lan")
    run(
        runtime,
        {"type": "identify", "messageId": "i1", "userId": "u1", "traits": {"plan": "gold"}},
    )
    assert attrs(runtime, "u1")["plan"] == "gold"


def test_backfill_of_named_attributes_refuses_unknown_names(runtime):
    with pytest.raises(InputError) as error:
        f0.sync(runtime, "user:lan", backfill=["no_such"])
    assert error.value.code == "not_backfillable"
    with pytest.raises(InputError) as error:
        f0.sync(runtime, "user:lan", trigger="cron")
    assert error.value.code == "invalid_trigger"
    with runtime.pool.connection() as conn:
        assert f0.runs(conn) == []  # refused before a run was recorded


def test_a_failing_migration_rolls_back_and_leaves_data_intact(runtime, monkeypatch):
    run(runtime, order("o1", "u1", "42.50"))
    create(runtime, SPEND_30D)
    broken = migrate.Migration(
        9_999,
        "broken",
        "ALTER TABLE profiles ADD COLUMN doomed int; DELETE FROM events; SELECT 1/0;",
        "ALTER TABLE profiles DROP COLUMN doomed;",
    )
    real = migrate.available
    monkeypatch.setattr(migrate, "available", lambda: [*real(), broken])

    result = f0.sync(runtime, "user:lan", trigger="cli")

    assert result.outcome == "failed"
    assert "division by zero" in result.error
    assert result.steps[0]["failed"] == 9_999
    with runtime.pool.connection() as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 1
        columns = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'profiles'"
        ).fetchall()
        assert ("doomed",) not in columns
        assert 9_999 not in migrate.applied(conn)
        # the run stopped before activation: the definition waits for the next good run
        assert attributes.get_definition(conn, "spend_30d").status == "pending"
        (recorded,) = f0.runs(conn, 10)
        assert recorded.run_id == result.run_id and recorded.finished_at is not None


def test_definitions_are_validated_with_a_message_that_says_the_fix(runtime):
    cases = [
        ({**SPEND_30D, "name": "Bad Name"}, "invalid_attribute_name"),
        ({**SPEND_30D, "name": "revenue"}, "attribute_built_in"),
        ({**SPEND_30D, "type": "float"}, "invalid_type"),
        ({**SPEND_30D, "aggregation": "median"}, "invalid_aggregation"),
        ({**SPEND_30D, "property": None}, "invalid_sum"),
        ({**SPEND_30D, "aggregation": "count", "type": "money"}, "invalid_type"),
        ({**SPEND_30D, "window_days": 0}, "invalid_window_days"),
        ({**SPEND_30D, "event_names": "Order Completed"}, "invalid_event_names"),
        ({"name": "x", "type": "text", "source": "trait"}, "invalid_trait"),
        ({**SPEND_30D, "type": "timestamp", "aggregation": "max"}, "invalid_timestamp"),
        ({**SPEND_30D, "pii": "yes"}, "invalid_pii"),
        ({**SPEND_30D, "property": " price"}, "invalid_property"),
        ({**SPEND_30D, "aggregation": "max", "type": "text"}, "invalid_type"),
        ({**SPEND_30D, "aggregation": "last", "property": None}, "property_required"),
        (
            {**SPEND_30D, "type": "number", "aggregation": "distinct_count", "property": None},
            "property_required",
        ),
        ({**SPEND_30D, "retention_days": "30"}, "invalid_retention_days"),
        ({**SPEND_30D, "owner": 7}, "invalid_owner"),
        ({**SPEND_30D, "description": "x" * 2001}, "invalid_description"),
        ({**SPEND_30D, "source": "sql"}, "invalid_source"),
    ]
    for spec, code in cases:
        with pytest.raises(InputError) as error:
            create(runtime, spec)
        assert error.value.code == code, spec
    create(runtime, SPEND_30D)
    with pytest.raises(InputError) as error:
        create(runtime, SPEND_30D)
    assert error.value.code == "attribute_exists"


def test_update_and_retire_are_versioned_and_audited(runtime):
    create(runtime, SPEND_30D)
    f0.sync(runtime, "user:lan")
    with runtime.pool.connection() as conn:
        updated = attributes.update_definition(conn, "user:an", "spend_30d", {"window_days": 7})
        assert (updated.version, updated.status, updated.window_days) == (2, "pending", 7)
        with pytest.raises(InputError) as error:
            attributes.update_definition(conn, "user:an", "revenue", {"owner": "me"})
        assert error.value.code == "attribute_built_in"
        with pytest.raises(InputError) as error:
            attributes.update_definition(conn, "user:an", "spend_30d", {"name": "other"})
        assert error.value.code == "unknown_field"
        with pytest.raises(attributes.UnknownAttribute):
            attributes.retire_definition(conn, "user:an", "nope")
        retired = attributes.retire_definition(conn, "user:an", "spend_30d")
        assert retired.status == "retired"
        actions = [e.action for e in audit.entries(conn, action_prefix="attribute.")]
    assert actions == [
        "attribute.retire",
        "attribute.update",
        "attribute.activate",
        "attribute.create",
    ]


def test_f3_stops_computing_a_retired_definition(runtime):
    create(runtime, SPEND_30D)
    f0.sync(runtime, "user:lan")
    run(runtime, order("o1", "u1", "1", total="3"))
    with runtime.pool.connection() as conn:
        attributes.retire_definition(conn, "user:lan", "spend_30d")
    f0.sync(runtime, "user:lan")
    run(runtime, order("o2", "u1", "1", total="4"))
    assert Decimal(str(attrs(runtime, "u1")["spend_30d"])) == 3


def test_built_in_attributes_are_described_with_pii_marked(runtime):
    with runtime.pool.connection() as conn:
        pii = {d.name for d in attributes.pii_attributes(conn)}
    assert {"email", "phone", "name", "address", "id_email", "id_user_id"} <= pii
    assert "revenue" not in pii


def test_two_syncs_never_run_at_once(runtime):
    with runtime.pool.connection() as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (f0._LOCK_KEY,))
        try:
            with pytest.raises(f0.SyncRunning):
                f0.sync(runtime, "user:lan")
            assert f0.F0Scheduler(runtime, minutes=1).tick() is None
        finally:
            holder.execute("SELECT pg_advisory_unlock(%s)", (f0._LOCK_KEY,))
    assert f0.F0Scheduler(runtime, minutes=1).tick().trigger == "schedule"


def test_the_scheduler_is_off_at_zero_minutes(runtime):
    scheduler = f0.F0Scheduler(runtime, minutes=0)
    scheduler.start()
    scheduler.join(timeout=5)
    assert not scheduler.is_alive()
    assert isinstance(scheduler, threading.Thread)


def test_the_profile_api_serves_back_filled_attributes_not_its_cached_document(runtime):
    from c360.profile_service import get_profile

    run(runtime, order("o1", "u1", "1", total="12.50"), order("o2", "u2", "1", total="3"))
    before = get_profile(runtime, "u1")  # read once: the document is cached
    cached_id = before["profile_id"]
    assert runtime.cache.get(cached_id) is not None
    create(runtime, SPEND_30D)

    f0.BACKFILL_BATCH, saved = 1, f0.BACKFILL_BATCH  # one batch per profile
    try:
        result = f0.sync(runtime, "user:lan", backfill=True)
    finally:
        f0.BACKFILL_BATCH = saved

    assert result.outcome == "ok", result.error
    assert "spend_30d" not in before["attributes"]
    after = get_profile(runtime, "u1")
    assert Decimal(str(after["attributes"]["spend_30d"])) == Decimal("12.50")
    assert Decimal(str(get_profile(runtime, "u2")["attributes"]["spend_30d"])) == Decimal("3")


def test_an_attribute_copying_a_personal_trait_is_personal_data_itself(runtime) -> None:
    # otherwise `email_copy` would show every role what masking hides in traits.email
    copy = {"type": "text", "source": "trait", "trait": "email"}
    with runtime.pool.connection() as conn:
        made = attributes.create_definition(conn, "user:test", {"name": "email_copy", **copy})
        with pytest.raises(InputError) as refused:
            attributes.create_definition(
                conn, "user:test", {"name": "addr_copy", **copy, "trait": "City", "pii": False}
            )
        plain = attributes.create_definition(
            conn, "user:test", {"name": "plan_copy", **copy, "trait": "plan"}
        )

    assert made.pii is True
    assert refused.value.code == "pii_required"
    assert plain.pii is False
