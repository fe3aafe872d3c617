"""Notification rules: what a rule is (checked as data), and the triggers that plan sends from
the profile documents published on c360-updated-profiles.

Triggers, each with its conditions (all optional):
- first_purchase: the profile has exactly one order, placed within `within_hours` (24);
- cart_abandoned: a cart event (`events`: Product Added, Cart Viewed, Checkout Started) with no
  order after it: checked `wait_minutes` (60) after the cart event, and checked again when due
  (an order or a newer cart event since then suppresses it); carts older than `within_hours`
  (24) are left alone;
- ltv_tier_changed: the tier of a number in the document (`field`, default `revenue`: spend so
  far; `attributes.<name>` for a value an operator defines) among `tiers` ({"silver": 100,
  "gold": 500}: lowest value of each) moved `direction` "up" (default), "down" or "any";
- churn_risk_crossed: a number in the document (`field`, default `attributes.churn_risk`)
  crossed `threshold` (required: a churn risk, from 0 to 1) upwards.
A profile before its first event has no tier and no risk; the last value a rule saw is kept in
notify.watch, changed in the transaction that plans the send.

Every planned send is keyed by (rule, profile, trigger key): a redelivered update finds its
send already planned and plans nothing. Touches notify.rules, notify.watch, notify.sends, and
reads `events` for carts.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from c360.errors import InputError

log = logging.getLogger(__name__)

TRIGGERS = ("first_purchase", "cart_abandoned", "ltv_tier_changed", "churn_risk_crossed")
#: Segment's ecommerce events that put something in a cart.
CART_EVENTS = ("Product Added", "Cart Viewed", "Checkout Started")
ORDER_EVENT = "order completed"

DEFAULT_WITHIN_HOURS = 24
DEFAULT_WAIT_MINUTES = 60
DEFAULT_TIER_FIELD = "revenue"
DEFAULT_RISK_FIELD = "attributes.churn_risk"
#: The LTV report's own threshold (c360.analytics.ltv.CHURN_THRESHOLD): rules stored before a
#: threshold was required use it.
DEFAULT_RISK_THRESHOLD = 0.5
#: A send's delay may be at most a month: later than that, the moment has passed.
MAX_DELAY_S = 31 * 86_400

RULE_KEYS = (
    "name",
    "trigger",
    "conditions",
    "template",
    "channel",
    "purpose",
    "delay_s",
    "enabled",
)
_CONDITIONS: dict[str, tuple[str, ...]] = {
    "first_purchase": ("within_hours",),
    "cart_abandoned": ("wait_minutes", "within_hours", "events"),
    "ltv_tier_changed": ("field", "tiers", "direction"),
    "churn_risk_crossed": ("field", "threshold"),
}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[^.\s]{1,100}){0,3}$")


@dataclass(frozen=True, slots=True)
class Rule:
    """A rule as the stage and the scheduler read it."""

    rule_id: int
    name: str
    trigger: str
    conditions: dict[str, Any]
    template: str
    channel: str
    purpose: str
    delay_s: int
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class Planned:
    """A send a trigger asks for: its key, the facts its template may show, and when."""

    trigger_key: str
    facts: dict[str, Any]
    due: datetime


@dataclass(slots=True)
class _Seen:
    """A watched value: what the rule saw before this update, and what it sees now."""

    before: Any
    now: Any
    changed: bool = field(default=False)


def check_rule(spec: Any) -> dict[str, Any]:
    """A rule's fields, checked; InputError naming the field otherwise."""
    if not isinstance(spec, dict):
        raise InputError("invalid_rule", "a rule is a JSON object")
    unknown = sorted(set(spec) - set(RULE_KEYS))
    if unknown:
        raise InputError(
            "invalid_rule", f"unknown rule fields: {', '.join(unknown)} (known: {RULE_KEYS})"
        )
    missing = [k for k in RULE_KEYS[:6] if k not in spec and k != "conditions"]
    if missing:
        raise InputError("invalid_rule", f"a rule needs {', '.join(missing)}")
    clean: dict[str, Any] = {}
    for key in ("name", "template", "channel", "purpose"):
        if key in spec:
            clean[key] = _name(spec[key], key)
    if "trigger" in spec:
        if spec["trigger"] not in TRIGGERS:
            raise InputError(
                "invalid_rule",
                f"trigger must be one of {', '.join(TRIGGERS)}; got {spec['trigger']!r}",
            )
        clean["trigger"] = spec["trigger"]
    if "conditions" in spec or "trigger" in spec:
        clean["conditions"] = check_conditions(spec.get("trigger"), spec.get("conditions", {}))
    if "delay_s" in spec:
        clean["delay_s"] = _number(spec["delay_s"], "delay_s", 0, MAX_DELAY_S, whole=True)
    if "enabled" in spec:
        if not isinstance(spec["enabled"], bool):
            raise InputError("invalid_rule", "enabled must be true or false")
        clean["enabled"] = spec["enabled"]
    return clean


def check_conditions(trigger: str | None, conditions: Any) -> dict[str, Any]:
    """A trigger's conditions, checked against what that trigger reads."""
    if not isinstance(conditions, dict):
        raise InputError("invalid_rule", "conditions must be a JSON object")
    if trigger is None:
        raise InputError("invalid_rule", "conditions are checked against a trigger: give both")
    unknown = sorted(set(conditions) - set(_CONDITIONS[trigger]))
    if unknown:
        raise InputError(
            "invalid_rule",
            f"{trigger} takes the conditions {', '.join(_CONDITIONS[trigger])}; "
            f"unknown: {', '.join(unknown)}",
        )
    clean = dict(conditions)
    if "within_hours" in clean:
        clean["within_hours"] = _number(clean["within_hours"], "within_hours", 1, 24 * 365)
    if "wait_minutes" in clean:
        clean["wait_minutes"] = _number(clean["wait_minutes"], "wait_minutes", 1, 7 * 24 * 60)
    if "events" in clean:
        events = clean["events"]
        if (
            not isinstance(events, list)
            or not events
            or not all(isinstance(e, str) and e.strip() for e in events)
        ):
            raise InputError(
                "invalid_rule", 'events must be a list of event names, e.g. ["Product Added"]'
            )
    if "field" in clean and (
        not isinstance(clean["field"], str) or not _PATH.match(clean["field"])
    ):
        raise InputError(
            "invalid_rule",
            f"field must be a path in the profile such as revenue or "
            f"attributes.churn_risk; got {clean['field']!r}",
        )
    if trigger == "churn_risk_crossed":
        # the churn risk is a probability (c360.analytics.ltv): a threshold outside 0-1 never
        # fires or always does, and no default is assumed for what a customer is told
        if "threshold" not in clean:
            raise InputError(
                "invalid_rule",
                "churn_risk_crossed needs a threshold: a churn risk from 0 to 1, e.g. 0.5",
            )
        risk = clean["threshold"]
        if not isinstance(risk, int | float) or isinstance(risk, bool) or not 0 <= risk <= 1:
            raise InputError(
                "invalid_rule",
                f"threshold must be a churn risk from 0 to 1 (a probability); got {risk!r}",
            )
    if "direction" in clean and clean["direction"] not in ("up", "down", "any"):
        raise InputError("invalid_rule", "direction must be up, down or any")
    if trigger == "ltv_tier_changed":
        clean["tiers"] = _tiers(clean.get("tiers"))
    return clean


def live_rules(conn: psycopg.Connection, *, enabled_only: bool = True) -> list[Rule]:
    """Rules not deleted (and, by default, enabled), oldest first."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT * FROM notify.rules WHERE deleted_at IS NULL"
            + (" AND enabled" if enabled_only else "")
            + " ORDER BY rule_id"
        ).fetchall()
    return [rule_from_row(row) for row in rows]


def rule_from_row(row: dict[str, Any]) -> Rule:
    """A Rule from its notify.rules row."""
    return Rule(
        rule_id=row["rule_id"],
        name=row["name"],
        trigger=row["trigger"],
        conditions=dict(row["conditions"]),
        template=row["template"],
        channel=row["channel"],
        purpose=row["purpose"],
        delay_s=row["delay_s"],
        enabled=row["enabled"],
    )


def plan(
    conn: psycopg.Connection,
    rules: Sequence[Rule],
    documents: Iterable[dict[str, Any]],
    now: datetime,
) -> int:
    """Plan the sends these profile documents trigger, in one transaction; returns the sends
    newly planned (a redelivered document plans none)."""
    planned = 0
    with conn.transaction():
        for doc in documents:
            for rule in rules:
                found = evaluate(conn, rule, doc, now)
                if found is not None:
                    planned += _insert(conn, rule, doc["profile_id"], found)
    return planned


def evaluate(
    conn: psycopg.Connection, rule: Rule, doc: dict[str, Any], now: datetime
) -> Planned | None:
    """The send this document triggers for this rule, if any (watched values are updated)."""
    return _EVALUATORS[rule.trigger](conn, rule, doc, now)


def recheck(
    conn: psycopg.Connection, trigger: str, facts: dict[str, Any], profile_id: str
) -> str | None:
    """Why a due send's trigger no longer holds (its suppression reason), or None."""
    if trigger != "cart_abandoned":
        return None
    events = facts.get("events") or list(CART_EVENTS)
    cart_at, order_at = _cart_and_order(conn, profile_id, events)
    planned_cart = datetime.fromisoformat(facts["cart_at"])
    if order_at is not None and order_at >= planned_cart:
        return "ordered_since"
    if cart_at is not None and cart_at > planned_cart:
        return "newer_cart"
    return None


def lookup(doc: dict[str, Any], path: str) -> Any:
    """The value at a dotted path in a document (None where it is missing)."""
    value: Any = doc
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _first_purchase(
    conn: psycopg.Connection, rule: Rule, doc: dict[str, Any], now: datetime
) -> Planned | None:
    if doc.get("order_count") != 1 or not doc.get("first_order_at"):
        return None
    first = _time(doc["first_order_at"])
    within = timedelta(hours=rule.conditions.get("within_hours", DEFAULT_WITHIN_HOURS))
    if first is None or now - first > within:
        return None  # an old customer seen for the first time, not a first purchase now
    facts = {"first_order_at": first.isoformat(), "revenue": _plain(doc.get("revenue"))}
    # one first purchase per profile, whatever number of updates repeats it
    return Planned("first_purchase", facts, now + timedelta(seconds=rule.delay_s))


def _cart_abandoned(
    conn: psycopg.Connection, rule: Rule, doc: dict[str, Any], now: datetime
) -> Planned | None:
    events = rule.conditions.get("events") or list(CART_EVENTS)
    counted = {name.strip().lower() for name in (doc.get("events_by_type") or {})}
    if not counted & {name.strip().lower() for name in events}:
        return None  # no cart event ever: no need to read the events
    cart_at, order_at = _cart_and_order(conn, doc["profile_id"], events)
    if cart_at is None or (order_at is not None and order_at >= cart_at):
        return None
    if now - cart_at > timedelta(hours=rule.conditions.get("within_hours", DEFAULT_WITHIN_HOURS)):
        return None
    wait = timedelta(minutes=rule.conditions.get("wait_minutes", DEFAULT_WAIT_MINUTES))
    facts = {"cart_at": cart_at.isoformat(), "events": events}
    due = max(cart_at + wait, now) + timedelta(seconds=rule.delay_s)
    return Planned(f"cart:{cart_at.isoformat()}", facts, due)


def _tier_changed(
    conn: psycopg.Connection, rule: Rule, doc: dict[str, Any], now: datetime
) -> Planned | None:
    tiers = rule.conditions["tiers"]
    value = _decimal(lookup(doc, rule.conditions.get("field", DEFAULT_TIER_FIELD)))
    seen = _watch(conn, rule, doc, _tier_of(value, tiers), now)
    if not seen.changed:
        return None
    rank = {name: i for i, name in enumerate(sorted(tiers, key=lambda n: tiers[n]))}
    before = rank.get(seen.before, -1)
    after = rank.get(seen.now, -1)
    direction = rule.conditions.get("direction", "up")
    if (direction == "up" and after < before) or (direction == "down" and after > before):
        return None
    facts = {"from": seen.before, "to": seen.now, "value": _plain(value)}
    key = f"tier:{seen.before}>{seen.now}:{doc.get('updated_at')}"
    return Planned(key, facts, now + timedelta(seconds=rule.delay_s))


def _risk_crossed(
    conn: psycopg.Connection, rule: Rule, doc: dict[str, Any], now: datetime
) -> Planned | None:
    threshold = Decimal(str(rule.conditions.get("threshold", DEFAULT_RISK_THRESHOLD)))
    value = _decimal(lookup(doc, rule.conditions.get("field", DEFAULT_RISK_FIELD)))
    if value is None:
        # no risk in this document (most updates do not carry one; the churn scorer's do):
        # unknown is not "no longer at risk", so what the rule saw stands
        return None
    at_risk = value >= threshold
    seen = _watch(conn, rule, doc, at_risk, now)
    if not seen.changed or not at_risk:
        return None
    facts = {"value": _plain(value), "threshold": _plain(threshold)}
    key = f"risk:{doc.get('updated_at')}"
    return Planned(key, facts, now + timedelta(seconds=rule.delay_s))


_EVALUATORS: dict[str, Callable[..., Planned | None]] = {
    "first_purchase": _first_purchase,
    "cart_abandoned": _cart_abandoned,
    "ltv_tier_changed": _tier_changed,
    "churn_risk_crossed": _risk_crossed,
}

#: What a watched value was before the profile's first event: no tier, not at risk.
_INITIAL: dict[str, Any] = {"ltv_tier_changed": None, "churn_risk_crossed": False}


def _watch(
    conn: psycopg.Connection, rule: Rule, doc: dict[str, Any], value: Any, now: datetime
) -> _Seen:
    """Compare a watched value with the last one this rule saw for the profile, and keep the
    new one (locked until the plan's transaction ends, so two updates never both see it)."""
    row = conn.execute(
        "SELECT value FROM notify.watch WHERE rule_id = %s AND profile_id = %s FOR UPDATE",
        (rule.rule_id, doc["profile_id"]),
    ).fetchone()
    before = row[0] if row else _INITIAL[rule.trigger]
    seen = _Seen(before, value, changed=before != value)
    if seen.changed or row is None:
        conn.execute(
            "INSERT INTO notify.watch (rule_id, profile_id, value, updated_at)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT (rule_id, profile_id) DO UPDATE"
            " SET value = EXCLUDED.value, updated_at = EXCLUDED.updated_at",
            (rule.rule_id, doc["profile_id"], Jsonb(value), now),
        )
    return seen


def _insert(conn: psycopg.Connection, rule: Rule, profile_id: str, planned: Planned) -> int:
    cur = conn.execute(
        "INSERT INTO notify.sends (rule_id, profile_id, trigger, trigger_key, facts, channel,"
        " purpose, state, scheduled_at) VALUES (%s, %s, %s, %s, %s, %s, %s, 'scheduled', %s)"
        " ON CONFLICT (rule_id, profile_id, trigger_key) DO NOTHING",
        (
            rule.rule_id,
            profile_id,
            rule.trigger,
            planned.trigger_key,
            Jsonb({"trigger": rule.trigger, **planned.facts}),
            rule.channel,
            rule.purpose,
            planned.due,
        ),
    )
    if cur.rowcount:
        log.debug("Planned %r for profile %r (%r).", rule.name, profile_id, planned.trigger_key)
    return cur.rowcount


def _cart_and_order(
    conn: psycopg.Connection, profile_id: str, events: list[str]
) -> tuple[datetime | None, datetime | None]:
    """The latest cart event and the latest order of a profile (following a merge)."""
    row = conn.execute(
        "SELECT max(event_time) FILTER (WHERE lower(btrim(event)) = ANY(%(carts)s)),"
        " max(event_time) FILTER (WHERE lower(btrim(event)) = %(order)s)"
        " FROM events WHERE type = 'track' AND profile_id = (SELECT coalesce(merged_into,"
        " profile_id) FROM profiles WHERE profile_id = %(profile)s)",
        {
            "carts": [name.strip().lower() for name in events],
            "order": ORDER_EVENT,
            "profile": profile_id,
        },
    ).fetchone()
    return (row[0], row[1]) if row else (None, None)


def _tier_of(value: Decimal | None, tiers: dict[str, float]) -> str | None:
    """The highest tier whose lowest value `value` reaches; None below them all."""
    if value is None:
        return None
    reached = [name for name, low in tiers.items() if value >= Decimal(str(low))]
    return max(reached, key=lambda name: tiers[name]) if reached else None


def _tiers(tiers: Any) -> dict[str, float]:
    if (
        not isinstance(tiers, dict)
        or not tiers
        or not all(isinstance(k, str) and k.strip() for k in tiers)
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in tiers.values())
    ):
        raise InputError(
            "invalid_rule",
            "ltv_tier_changed needs tiers: names with the lowest value of each, e.g. "
            '{"silver": 100, "gold": 500}',
        )
    if len(set(tiers.values())) != len(tiers):
        raise InputError("invalid_rule", "two tiers start at the same value: give each its own")
    return dict(tiers)


def _decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def _plain(value: Any) -> Any:
    """A number as JSON keeps it (Decimal is not JSON)."""
    return float(value) if isinstance(value, Decimal) else value


def _time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


def _name(value: Any, key: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise InputError(
            "invalid_rule",
            f"{key} must be letters, digits, '.', '_' or '-' (at most 100); got {value!r}",
        )
    return value


def _number(value: Any, key: str, low: float, high: float, *, whole: bool = False) -> Any:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not low <= value <= high or (whole and value != int(value)):
        kind = "a whole number" if whole else "a number"
        raise InputError(
            "invalid_rule", f"{key} must be {kind} from {_shown(low)} to {_shown(high)}"
        )
    return int(value) if whole else value


def _shown(number: float) -> str:
    """A bound as people write it: 2,678,400, not 2.6784e+06."""
    return f"{int(number):,}" if float(number).is_integer() else f"{number:g}"
