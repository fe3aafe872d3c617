"""Profile state and its live aggregates: applying an event, merging two profiles, and the
document the API and cache serve.

Survivorship (which value of a trait a profile shows, and what happens to the others):
- the most recent event wins `traits[name]`: later event time, then later receipt, then the
  larger messageId (`EventFact.order_key`), so arrival order never decides;
- every other value the trait ever had is kept in `trait_others[name]` as
  `{"value": v, "at": order key}`, one entry per distinct value (its latest time), newest
  first; the winning value is never listed there. A merge folds both sides' traits and
  others through the same rule, so nothing from either side is dropped, and the result is the
  same whatever order events or merges happen in.

Pure functions on plain data: no database here, so every rule can be tested on its own.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

#: The Segment ecommerce event that counts as an order.
ORDER_EVENTS = frozenset({"order completed"})


@dataclasses.dataclass(slots=True)
class EventFact:
    """What F3 needs of a stored event."""

    source: str
    message_id: str
    type: str
    event: str | None
    event_time: datetime
    received_at: datetime
    revenue: Decimal | None
    identifiers: list[list[str]]
    traits: dict[str, Any] | None
    #: Segment's context.consent.categoryPreferences: purpose -> granted, as sent
    consent: dict[str, Any] | None = None

    @property
    def is_order(self) -> bool:
        """True for an order event (Segment's `Order Completed`)."""
        return self.type == "track" and (self.event or "").strip().lower() in ORDER_EVENTS

    @property
    def order_key(self) -> list[str]:
        """Which event wins a trait: later event time, then later receipt, then messageId."""
        return [_iso(self.event_time), _iso(self.received_at), self.message_id]


@dataclasses.dataclass(slots=True)
class ProfileState:
    """A profile's aggregates as F3 reads, changes and writes them."""

    profile_id: uuid.UUID
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    event_count: int = 0
    events_by_type: dict[str, int] = dataclasses.field(default_factory=dict)
    order_count: int = 0
    revenue: Decimal = Decimal(0)
    first_order_at: datetime | None = None
    last_order_at: datetime | None = None
    traits: dict[str, Any] = dataclasses.field(default_factory=dict)
    trait_times: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    trait_others: dict[str, list[dict[str, Any]]] = dataclasses.field(default_factory=dict)
    attributes: dict[str, Any] = dataclasses.field(default_factory=dict)
    unique_ids: dict[str, str] = dataclasses.field(default_factory=dict)
    has_strong_id: bool = False
    is_new: bool = False


#: The `events` columns `fact_from_row` reads, in order: one select list for F3 and unmerge,
#: so a replayed event is the same fact F3 applied.
FACT_COLUMNS = (
    "source, message_id, type, event, event_time, received_at, revenue, identifiers,"
    " CASE WHEN type = 'identify' THEN payload->'traits' ELSE payload->'context'->'traits' END,"
    " payload->'context'->'consent'->'categoryPreferences'"
)


def fact_from_row(row: Sequence[Any]) -> EventFact:
    """The fact for a row selected with FACT_COLUMNS."""
    return EventFact(
        source=row[0],
        message_id=row[1],
        type=row[2],
        event=row[3],
        event_time=row[4],
        received_at=row[5],
        revenue=row[6],
        identifiers=row[7],
        traits=row[8] if isinstance(row[8], dict) else None,
        consent=row[9] if len(row) > 9 and isinstance(row[9], dict) else None,
    )


def state_from_row(row: dict[str, Any]) -> ProfileState:
    """A profile's state from its `profiles` row (as a dict)."""
    return ProfileState(
        profile_id=row["profile_id"],
        first_seen=row["first_seen"],
        last_seen=row["last_seen"],
        event_count=row["event_count"],
        events_by_type=dict(row["events_by_type"]),
        order_count=row["order_count"],
        revenue=Decimal(row["revenue"]),
        first_order_at=row["first_order_at"],
        last_order_at=row["last_order_at"],
        traits=dict(row["traits"]),
        trait_times=dict(row["trait_times"]),
        trait_others={name: list(others) for name, others in row["trait_others"].items()},
        attributes=dict(row["attributes"]),
    )


def new_profile() -> ProfileState:
    """An empty profile with a fresh id."""
    return ProfileState(profile_id=uuid.uuid4(), is_new=True)


def apply_event(profile: ProfileState, fact: EventFact) -> None:
    """Add one event to a profile's aggregates and traits (each event exactly once)."""
    profile.first_seen = _earliest(profile.first_seen, fact.event_time)
    profile.last_seen = _latest(profile.last_seen, fact.event_time)
    profile.event_count += 1
    type_key = fact.event if fact.type == "track" and fact.event else fact.type
    profile.events_by_type[type_key] = profile.events_by_type.get(type_key, 0) + 1

    if fact.is_order:
        profile.order_count += 1
        if fact.revenue is not None:
            profile.revenue += fact.revenue
        profile.first_order_at = _earliest(profile.first_order_at, fact.event_time)
        profile.last_order_at = _latest(profile.last_order_at, fact.event_time)

    for name, value in (fact.traits or {}).items():
        set_trait(profile, name, value, fact.order_key)


def set_trait(profile: ProfileState, name: str, value: Any, order_key: list[str]) -> None:
    """Set a trait unless the profile already holds a value from a later event; the value
    that loses (the older one, or this one) is kept in `trait_others`."""
    order_key = list(order_key)
    current = profile.trait_times.get(name)
    if current is not None and list(current) >= order_key:
        if not _same(profile.traits.get(name), value):
            _keep_other(profile, name, value, order_key)
        return

    if current is not None and not _same(profile.traits.get(name), value):
        _keep_other(profile, name, profile.traits.get(name), list(current))
    _drop_other(profile, name, value)  # the winner is never listed among the others
    profile.traits[name] = value
    profile.trait_times[name] = order_key


def merge_into(target: ProfileState, other: ProfileState) -> None:
    """Fold `other`'s aggregates and traits into `target`; nothing from either is lost."""
    target.first_seen = _earliest(target.first_seen, other.first_seen)
    target.last_seen = _latest(target.last_seen, other.last_seen)
    target.event_count += other.event_count
    for name, count in other.events_by_type.items():
        target.events_by_type[name] = target.events_by_type.get(name, 0) + count
    target.order_count += other.order_count
    target.revenue += other.revenue
    target.first_order_at = _earliest(target.first_order_at, other.first_order_at)
    target.last_order_at = _latest(target.last_order_at, other.last_order_at)
    for name, value in other.traits.items():
        set_trait(target, name, value, other.trait_times.get(name, ["", "", ""]))
    for name, others in other.trait_others.items():
        for entry in others:
            set_trait(target, name, entry["value"], entry["at"])
    for kind, value in other.unique_ids.items():
        target.unique_ids.setdefault(kind, value)
    target.has_strong_id = target.has_strong_id or other.has_strong_id


def rfm(profile: dict[str, Any], as_of: datetime) -> dict[str, Any]:
    """Recency (days since the last order), frequency (orders) and monetary value."""
    last_order = profile.get("last_order_at")
    orders = int(profile.get("order_count") or 0)
    revenue = Decimal(str(profile.get("revenue") or 0))
    return {
        "recency_days": (as_of - last_order).days if last_order else None,
        "frequency": orders,
        "monetary": revenue,
        "average_order_value": (revenue / orders).quantize(Decimal("0.01")) if orders else None,
    }


def document(row: dict[str, Any], identifiers: list[dict[str, Any]]) -> dict[str, Any]:
    """The profile as the API and the cache serve it."""
    as_of = datetime.now(UTC)
    return {
        "profile_id": str(row["profile_id"]),
        "first_seen": row["first_seen"],
        "last_seen": row["last_seen"],
        "event_count": row["event_count"],
        "events_by_type": row["events_by_type"],
        "order_count": row["order_count"],
        "revenue": row["revenue"],
        "first_order_at": row["first_order_at"],
        "last_order_at": row["last_order_at"],
        "rfm": rfm(row, as_of),
        "traits": row["traits"],
        "trait_others": row.get("trait_others") or {},
        "attributes": row["attributes"],
        "identifiers": identifiers,
        "updated_at": row["updated_at"],
    }


def _keep_other(profile: ProfileState, name: str, value: Any, order_key: list[str]) -> None:
    """Record a losing value with its latest time; one entry per distinct value, newest first."""
    others = profile.trait_others.setdefault(name, [])
    for entry in others:
        if _same(entry["value"], value):
            if list(entry["at"]) >= order_key:
                return
            others.remove(entry)
            break
    others.append({"value": value, "at": order_key})
    others.sort(key=lambda entry: list(entry["at"]), reverse=True)


def _drop_other(profile: ProfileState, name: str, value: Any) -> None:
    others = profile.trait_others.get(name)
    if not others:
        return
    kept = [entry for entry in others if not _same(entry["value"], value)]
    if kept:
        profile.trait_others[name] = kept
    else:
        del profile.trait_others[name]


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON values: `1`, `1.0` and `true` are different values of a trait."""
    return type(a) is type(b) and a == b


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else min(a, b)


def _latest(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else max(a, b)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
