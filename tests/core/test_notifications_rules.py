"""F4 triggers over the profile documents on c360-updated-profiles, fed by the real pipeline:
a first purchase plans one send however often its update is redelivered, and none for a
later order or an old customer; an LTV tier or a churn risk plans one send per change; rules
are checked as data with errors that say what to write."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from notify_support import Clock, feed, identify, order, rule, sends, template

from c360.errors import InputError
from c360.notifications import rules
from c360.stages import notifications_stage

NOW = datetime(2026, 5, 4, 3, 0, tzinfo=UTC)


@pytest.fixture
def clock():
    return Clock(NOW)


def test_a_first_purchase_plans_one_send_even_when_its_update_is_redelivered(runtime, clock):
    template(runtime)
    made = rule(runtime)
    batches = feed(runtime, clock, order("u-1", "20", NOW), order("u-2", "5", NOW))
    for batch in batches:  # the bus hands the same documents over again
        assert notifications_stage.plan(runtime, batch, clock) == 0

    planned = sends(runtime)
    assert len(planned) == 2
    assert {(s["rule_id"], s["trigger_key"], s["state"]) for s in planned} == {
        (made["rule_id"], "first_purchase", "scheduled")
    }
    assert all(s["scheduled_at"] == NOW for s in planned)

    clock.advance(minutes=5)
    feed(runtime, clock, order("u-1", "7", clock.now))  # a second order: not a first purchase
    feed(runtime, clock, identify("u-2", clock.now, plan="gold"))  # same one order: same key
    assert len(sends(runtime)) == 2


def test_an_old_first_purchase_seen_late_plans_nothing(runtime, clock):
    template(runtime)
    rule(runtime, conditions={"within_hours": 24})
    feed(runtime, clock, order("u-1", "20", NOW - timedelta(hours=25)))
    assert sends(runtime) == []


def test_a_disabled_rule_plans_nothing(runtime, clock):
    template(runtime)
    rule(runtime, enabled=False)
    feed(runtime, clock, order("u-1", "20", NOW))
    assert sends(runtime) == []


def test_an_ltv_tier_change_plans_one_send_per_move_up(runtime, clock):
    template(runtime)
    rule(
        runtime,
        "tier",
        trigger="ltv_tier_changed",
        conditions={"tiers": {"silver": 100, "gold": 500}},
    )
    feed(runtime, clock, order("u-1", "60", NOW))  # 60: below every tier
    assert sends(runtime) == []
    batches = feed(runtime, clock, order("u-1", "50", NOW + timedelta(minutes=1)))  # 110
    for batch in batches:
        notifications_stage.plan(runtime, batch, clock)  # redelivered: no second move
    feed(runtime, clock, order("u-1", "10", NOW + timedelta(minutes=2)))  # 120: still silver
    feed(runtime, clock, order("u-1", "400", NOW + timedelta(minutes=3)))  # 520: gold

    moves = [(s["facts"]["from"], s["facts"]["to"]) for s in sends(runtime)]
    assert moves == [(None, "silver"), ("silver", "gold")]


def test_a_churn_risk_crossing_its_threshold_plans_one_send(runtime, clock):
    template(runtime)
    rule(
        runtime,
        "risk",
        trigger="churn_risk_crossed",
        conditions={"field": "traits.churn_risk", "threshold": 0.7},
    )
    feed(runtime, clock, identify("u-1", NOW, churn_risk=0.4))
    feed(runtime, clock, identify("u-1", NOW + timedelta(minutes=1), churn_risk=0.8))
    feed(runtime, clock, identify("u-1", NOW + timedelta(minutes=2), churn_risk=0.9))
    feed(runtime, clock, identify("u-1", NOW + timedelta(minutes=3), churn_risk=0.2))
    feed(runtime, clock, identify("u-1", NOW + timedelta(minutes=4), churn_risk=0.75))

    assert [s["facts"]["value"] for s in sends(runtime)] == [0.8, 0.75]


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ({"trigger": "birthday"}, "trigger must be one of first_purchase"),
        ({"conditions": {"within_days": 3}}, "unknown: within_days"),
        ({"conditions": {"within_hours": 0}}, "within_hours must be a number from 1"),
        ({"delay_s": -1}, "delay_s must be a whole number from 0 to 2,678,400"),
        ({"delay_s": 1.5}, "delay_s must be a whole number"),
        ({"name": "two words"}, "name must be letters, digits"),
        ({"colour": "red"}, "unknown rule fields: colour"),
        ({"trigger": "ltv_tier_changed"}, "ltv_tier_changed needs tiers"),
        (
            {"trigger": "ltv_tier_changed", "conditions": {"tiers": {"a": 1, "b": 1}}},
            "two tiers start at the same value",
        ),
        (
            {"trigger": "churn_risk_crossed", "conditions": {"field": "a..b", "threshold": 0.5}},
            "field must be a path in the profile",
        ),
        (
            {"trigger": "churn_risk_crossed"},
            "churn_risk_crossed needs a threshold: a churn risk from 0 to 1",
        ),
        (
            {"trigger": "churn_risk_crossed", "conditions": {"threshold": 1.5}},
            "threshold must be a churn risk from 0 to 1 (a probability); got 1.5",
        ),
        (
            {"trigger": "churn_risk_crossed", "conditions": {"threshold": "high"}},
            "threshold must be a churn risk from 0 to 1",
        ),
    ],
)
def test_a_rule_that_cannot_work_is_refused_with_what_to_change(spec, fragment):
    base = {
        "name": "r",
        "trigger": "first_purchase",
        "template": "t",
        "channel": "email",
        "purpose": "marketing",
    }
    with pytest.raises(InputError) as refused:
        rules.check_rule({**base, **spec})
    assert fragment in refused.value.message


def test_a_rule_needs_its_template_for_its_channel(runtime):
    template(runtime)
    with pytest.raises(InputError) as refused:
        rule(runtime, channel="sms")
    assert "no template 'welcome' for the channel 'sms'" in refused.value.message
