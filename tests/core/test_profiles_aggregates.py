"""Profile aggregates and traits: each event counted once, sums exact, and the later event wins a
trait whatever order the events arrive in."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from c360.profiles import EventFact, ProfileState, apply_event, merge_into, rfm, set_trait

T0 = datetime(2026, 2, 1, 8, 0, tzinfo=UTC)


def _fact(
    message_id: str,
    *,
    at: datetime = T0,
    received: datetime | None = None,
    traits: dict[str, Any] | None = None,
    event: str | None = None,
    revenue: Decimal | None = None,
    type: str = "track",
) -> EventFact:
    return EventFact(
        source="web",
        message_id=message_id,
        type=type,
        event=event,
        event_time=at,
        received_at=received or at,
        revenue=revenue,
        identifiers=[],
        traits=traits,
    )


def _order(message_id: str, revenue: str | None, at: datetime = T0) -> EventFact:
    amount = None if revenue is None else Decimal(revenue)
    return _fact(message_id, at=at, event="Order Completed", revenue=amount)


def _profile(*facts: EventFact) -> ProfileState:
    profile = ProfileState(profile_id=uuid.uuid4())
    for fact in facts:
        apply_event(profile, fact)
    return profile


def _final_traits(facts: tuple[EventFact, ...]) -> dict[str, Any]:
    return _profile(*facts).traits


# Which value wins


def test_the_later_event_time_wins_under_every_arrival_order():
    facts = [
        _fact("m-c", at=T0, traits={"plan": "free", "city": "Huế"}),
        _fact("m-a", at=T0 + timedelta(minutes=5), traits={"plan": "pro"}),
        _fact("m-b", at=T0 + timedelta(minutes=2), traits={"plan": "team", "city": "Hà Nội"}),
    ]

    for order in itertools.permutations(facts):
        assert _final_traits(order) == {"plan": "pro", "city": "Hà Nội"}, order


def test_with_equal_event_times_the_later_receipt_wins_under_every_arrival_order():
    facts = [
        _fact("m-z", received=T0 + timedelta(seconds=1), traits={"tier": "silver"}),
        _fact("m-a", received=T0 + timedelta(seconds=3), traits={"tier": "gold"}),
        _fact("m-m", received=T0 + timedelta(seconds=2), traits={"tier": "bronze"}),
    ]

    for order in itertools.permutations(facts):
        assert _final_traits(order) == {"tier": "gold"}, order


def test_with_equal_times_the_larger_message_id_wins_under_every_arrival_order():
    facts = [
        _fact("m-1", traits={"tier": "one"}),
        _fact("m-3", traits={"tier": "three"}),
        _fact("m-2", traits={"tier": "two"}),
    ]

    for order in itertools.permutations(facts):
        assert _final_traits(order) == {"tier": "three"}, order


def test_a_millisecond_decides_between_two_event_times():
    early = _fact("m-b", at=T0, traits={"x": "early"})
    late = _fact("m-a", at=T0 + timedelta(milliseconds=1), traits={"x": "late"})

    assert _final_traits((late, early)) == {"x": "late"}
    assert _final_traits((early, late)) == {"x": "late"}


def test_event_times_in_other_offsets_are_compared_as_instants():
    hanoi = timezone(timedelta(hours=7))
    # 14:30 in Hanoi is 07:30 UTC: earlier than 08:00 UTC although its clock reading is larger.
    earlier = _fact("m-z", at=datetime(2026, 2, 1, 14, 30, tzinfo=hanoi), traits={"x": "hanoi"})
    later = _fact("m-a", at=T0, traits={"x": "utc"})

    for order in itertools.permutations((earlier, later)):
        assert _final_traits(order) == {"x": "utc"}


def test_replaying_the_same_event_changes_no_trait():
    profile = _profile(_fact("m-1", traits={"x": 1}), _fact("m-0", at=T0 - timedelta(1)))

    apply_event(profile, _fact("m-1", traits={"x": 1}))

    assert profile.traits == {"x": 1}


def test_set_trait_keeps_a_value_from_a_later_event():
    profile = ProfileState(profile_id=uuid.uuid4())

    set_trait(profile, "plan", "pro", ["2026-02-02T00:00:00.000000Z", "", "m-1"])
    set_trait(profile, "plan", "free", ["2026-02-01T00:00:00.000000Z", "", "m-9"])

    assert profile.traits == {"plan": "pro"}


def test_a_trait_set_to_null_by_the_latest_event_is_null():
    facts = (
        _fact("m-1", at=T0, traits={"nickname": "Lan"}),
        _fact("m-2", at=T0 + timedelta(1), traits={"nickname": None}),
    )

    for order in itertools.permutations(facts):
        assert _final_traits(order) == {"nickname": None}


# Aggregates


def test_apply_event_counts_each_event_and_its_type():
    profile = _profile(
        _fact("m-1", event="Viewed"),
        _fact("m-2", event="Viewed"),
        _fact("m-3", type="identify"),
        _fact("m-4", type="page"),
    )

    assert profile.event_count == 4
    assert profile.events_by_type == {"Viewed": 2, "identify": 1, "page": 1}


def test_first_and_last_seen_are_the_earliest_and_latest_event_times():
    profile = _profile(
        _fact("m-1", at=T0 + timedelta(days=2)),
        _fact("m-2", at=T0),
        _fact("m-3", at=T0 + timedelta(days=1)),
    )

    assert profile.first_seen == T0
    assert profile.last_seen == T0 + timedelta(days=2)


def test_order_revenue_sums_exactly():
    profile = _profile(
        _order("m-1", "0.10"),
        _order("m-2", "0.20"),
        _order("m-3", "19.99"),
        _order("m-4", "1250000.05"),
    )

    assert profile.order_count == 4
    assert profile.revenue == Decimal("1250020.34")


def test_an_order_without_readable_revenue_counts_but_adds_nothing():
    profile = _profile(_order("m-1", "12.50"), _order("m-2", None))

    assert profile.order_count == 2
    assert profile.revenue == Decimal("12.50")


def test_order_completed_is_recognised_whatever_its_case():
    profile = _profile(_fact("m-1", event=" order COMPLETED ", revenue=Decimal(5)))

    assert profile.order_count == 1


def test_a_non_order_event_with_revenue_adds_nothing():
    profile = _profile(_fact("m-1", event="Product Viewed", revenue=Decimal("9.99")))

    assert profile.order_count == 0
    assert profile.revenue == 0


def test_first_and_last_order_times_follow_the_orders_only():
    profile = _profile(
        _order("m-1", "1", at=T0 + timedelta(days=3)),
        _order("m-2", "1", at=T0 + timedelta(days=1)),
        _fact("m-3", at=T0 + timedelta(days=9)),
    )

    assert profile.first_order_at == T0 + timedelta(days=1)
    assert profile.last_order_at == T0 + timedelta(days=3)


# Merging


def _two_profiles() -> tuple[ProfileState, ProfileState]:
    left = _profile(
        _order("m-1", "10.10", at=T0 + timedelta(days=1)),
        _fact("m-2", at=T0 + timedelta(days=5), event="Viewed", traits={"plan": "pro"}),
    )
    right = _profile(
        _order("m-3", "0.05", at=T0),
        _order("m-4", "99.99", at=T0 + timedelta(days=7)),
        _fact("m-5", at=T0 + timedelta(days=2), event="Viewed", traits={"plan": "free", "x": 1}),
    )
    right.unique_ids = {"crm_id": "c-1"}
    right.has_strong_id = True
    return left, right


def test_merging_sums_counts_and_revenue_exactly():
    target, other = _two_profiles()

    merge_into(target, other)

    assert target.event_count == 5
    assert target.order_count == 3
    assert target.revenue == Decimal("110.14")
    assert target.events_by_type == {"Order Completed": 3, "Viewed": 2}


def test_merging_keeps_the_earliest_and_latest_times():
    target, other = _two_profiles()

    merge_into(target, other)

    assert target.first_seen == T0
    assert target.last_seen == T0 + timedelta(days=7)
    assert target.first_order_at == T0
    assert target.last_order_at == T0 + timedelta(days=7)


def test_merging_keeps_the_later_trait_and_the_unique_ids():
    target, other = _two_profiles()

    merge_into(target, other)

    assert target.traits == {"plan": "pro", "x": 1}
    assert target.unique_ids == {"crm_id": "c-1"}
    assert target.has_strong_id


def test_merging_in_either_direction_gives_the_same_profile():
    left, right = _two_profiles()
    merge_into(left, right)
    right_first, left_second = _two_profiles()[::-1]
    merge_into(right_first, left_second)

    for name in ("event_count", "order_count", "revenue", "events_by_type", "traits"):
        assert getattr(left, name) == getattr(right_first, name), name


def test_merging_three_profiles_in_any_order_gives_the_same_traits_and_sums():
    def build() -> list[ProfileState]:
        return [
            _profile(_order("m-1", "1.01", at=T0), _fact("m-2", at=T0, traits={"t": "a"})),
            _profile(_order("m-3", "2.02", at=T0 + timedelta(1)), _fact("m-4", traits={"t": "b"})),
            _profile(_fact("m-5", at=T0 + timedelta(2), traits={"t": "c"})),
        ]

    for order in itertools.permutations(range(3)):
        profiles = build()
        target = profiles[order[0]]
        merge_into(target, profiles[order[1]])
        merge_into(target, profiles[order[2]])

        assert target.traits == {"t": "c"}
        assert target.revenue == Decimal("3.03")
        assert target.event_count == 5


# RFM


def test_rfm_reads_recency_frequency_and_average_order_value():
    profile = {"last_order_at": T0, "order_count": 3, "revenue": Decimal("100.00")}

    result = rfm(profile, as_of=T0 + timedelta(days=10, hours=5))

    assert result == {
        "recency_days": 10,
        "frequency": 3,
        "monetary": Decimal("100.00"),
        "average_order_value": Decimal("33.33"),
    }


@pytest.mark.parametrize("profile", [{}, {"order_count": 0, "revenue": 0, "last_order_at": None}])
def test_rfm_of_a_profile_without_orders_has_no_recency_or_average(profile):
    result = rfm(profile, as_of=T0)

    assert result["recency_days"] is None
    assert result["frequency"] == 0
    assert result["average_order_value"] is None


# Survivorship: every value kept


def _kept(profile: ProfileState) -> dict[str, set[Any]]:
    """Every value a profile holds for each trait: the winner and the others."""
    kept = {name: {value} for name, value in profile.traits.items()}
    for name, others in profile.trait_others.items():
        kept.setdefault(name, set()).update(entry["value"] for entry in others)
    return kept


SURVIVORSHIP_FACTS = (
    _fact("m-1", at=T0, traits={"name": "Lan", "city": "Huế"}),
    _fact("m-2", at=T0 + timedelta(minutes=1), traits={"name": "Trần Lan"}),
    _fact("m-3", at=T0 + timedelta(minutes=2), traits={"city": "Đà Nẵng", "plan": "pro"}),
    _fact("m-4", at=T0 + timedelta(minutes=3), traits={"name": "Lan"}),
)


def test_trait_others_keep_every_losing_value_once_with_its_latest_time():
    profile = _profile(*SURVIVORSHIP_FACTS)

    assert profile.traits == {"name": "Lan", "city": "Đà Nẵng", "plan": "pro"}
    assert profile.trait_others == {
        "name": [{"value": "Trần Lan", "at": SURVIVORSHIP_FACTS[1].order_key}],
        "city": [{"value": "Huế", "at": SURVIVORSHIP_FACTS[0].order_key}],
    }


def test_trait_others_are_the_same_under_every_arrival_order():
    expected = _profile(*SURVIVORSHIP_FACTS)

    for order in itertools.permutations(SURVIVORSHIP_FACTS):
        profile = _profile(*order)
        assert (profile.traits, profile.trait_others) == (
            expected.traits,
            expected.trait_others,
        ), order


def test_a_merge_keeps_every_trait_value_of_both_sides_whichever_side_survives():
    left, right = SURVIVORSHIP_FACTS[:2], SURVIVORSHIP_FACTS[2:]
    sent: dict[str, set[Any]] = {}
    for fact in SURVIVORSHIP_FACTS:
        for name, value in (fact.traits or {}).items():
            sent.setdefault(name, set()).add(value)
    whole = _profile(*SURVIVORSHIP_FACTS)

    for first, second in ((left, right), (right, left)):
        target, other = _profile(*first), _profile(*second)
        merge_into(target, other)
        assert _kept(target) == sent
        assert (target.traits, target.trait_others) == (whole.traits, whole.trait_others)


def test_one_and_true_are_different_trait_values():
    profile = _profile(
        _fact("m-1", at=T0, traits={"vip": 1}),
        _fact("m-2", at=T0 + timedelta(minutes=1), traits={"vip": True}),
    )

    assert profile.traits == {"vip": True}
    assert profile.trait_others == {"vip": [{"value": 1, "at": _fact("m-1").order_key}]}
