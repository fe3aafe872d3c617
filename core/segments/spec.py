"""The segment filter: a JSON tree of conditions over live profiles, read and checked here into
typed nodes that c360.segments.sql compiles. Touches nothing but the value it is given.

    {"all": [...]} / {"any": [...]} / {"not": {...}}                      nesting
    {"field": "revenue", "op": ">=", "value": 100}                        profile aggregates
    {"field": "last_seen", "within_days": 30}                             ... a recent time
    {"trait": "plan", "op": "=", "value": "gold"}                         traits
    {"attribute": "tier", "op": "exists"}                                 defined attributes
    {"identifier": "email", "op": "=", "value": "Lan@Example.VN"}         identifiers
    {"event": "Order Completed", "count": {"op": ">=", "value": 2},
     "within_days": 90}  (or "between": [from, to])                       events in a window

A value never becomes SQL text: names and values reach PostgreSQL only as parameters.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from c360.errors import InputError
from c360.events.identifiers import identifier_id, normalise_email, normalise_phone
from c360.events.model import MAX_DEPTH as MAX_JSON_DEPTH
from c360.events.model import too_deep
from c360.events.money import read_money
from c360.events.timestamps import parse_time

#: Deepest nesting of all / any / not; deeper trees are unreadable and slow to plan.
MAX_DEPTH = 8

#: Most conditions in one segment: enough for any hand-built filter, small for the planner.
MAX_CONDITIONS = 100

#: Most values in one `in` list.
MAX_IN_VALUES = 500

#: Longest text value or name; longer ones are mistakes (a pasted file), not filters.
MAX_TEXT_CHARS = 500

#: Longest window for `within_days`: a hundred years.
MAX_WINDOW_DAYS = 36_500

#: Largest event count worth comparing with (bigint-safe, far above any real customer).
MAX_COUNT = 1_000_000_000

OPS = ("=", "!=", "<", "<=", ">", ">=", "in", "exists", "contains")
ORDER_OPS = ("<", "<=", ">", ">=")

#: Profile aggregates by kind; the kind decides the value type.
COUNT_FIELDS = ("event_count", "order_count")
MONEY_FIELDS = ("revenue",)
TIME_FIELDS = ("first_seen", "last_seen", "first_order_at", "last_order_at")
AGGREGATE_FIELDS = (*COUNT_FIELDS, *MONEY_FIELDS, *TIME_FIELDS)

#: Which keys each kind of condition may carry.
_KEYS = {
    "field": {"field", "op", "value", "within_days"},
    "trait": {"trait", "op", "value"},
    "attribute": {"attribute", "op", "value"},
    "identifier": {"identifier", "op", "value"},
    "event": {"event", "count", "within_days", "between"},
}
_GROUPS = ("all", "any", "not")

_AGGREGATE_OPS = ("=", "!=", "<", "<=", ">", ">=", "in", "exists")
_IDENTIFIER_OPS = ("=", "!=", "in", "exists", "contains")
_COUNT_OPS = ("=", "!=", "<", "<=", ">", ">=")


class SpecError(InputError):
    """A segment filter that cannot be used; the message names where and what to change."""


#: A comparable value: text, a number (int or Decimal), true / false, or a time.
Scalar = str | int | Decimal | bool | datetime


@dataclass(frozen=True, slots=True)
class Group:
    """All (`kind` "all") or any ("any") of the children hold."""

    kind: str
    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Not:
    """The child does not hold."""

    child: Node


@dataclass(frozen=True, slots=True)
class Aggregate:
    """A profile column compared with a value; `within_days` means "in the last N days"."""

    field: str
    op: str
    value: Scalar | tuple[Scalar, ...] | None = None
    within_days: int | None = None


@dataclass(frozen=True, slots=True)
class Property:
    """A trait (`source` "traits") or defined attribute ("attributes") compared with a value."""

    source: str
    name: str
    op: str
    value: Scalar | tuple[Scalar, ...] | None = None


@dataclass(frozen=True, slots=True)
class Identifier:
    """The profile has an identifier of `type` (equal to / containing the values)."""

    type: str
    op: str
    values: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class EventCount:
    """How many `event` events the profile has in a window, compared with `count`."""

    event: str
    op: str
    count: int
    within_days: int | None = None
    since: datetime | None = None
    until: datetime | None = None


Node = Group | Not | Aggregate | Property | Identifier | EventCount


def loads(text: str) -> Any:
    """A filter written as JSON (the builder's JSON box), decoded with Decimal numbers. JSON
    nested deeper than the gateway allows is refused (`too_deeply_nested`) before decoding,
    which would otherwise recurse past the stack; unreadable JSON is `segment_invalid_json`."""
    if too_deep(text.encode("utf-8", "surrogatepass")):
        raise InputError(
            "too_deeply_nested",
            f"the filter nests objects or arrays more than {MAX_JSON_DEPTH} levels deep; a "
            f"filter may nest all / any / not {MAX_DEPTH} levels: flatten it",
        )
    try:
        return json.loads(text, parse_float=Decimal)
    except ValueError as exc:
        raise InputError(
            "segment_invalid_json",
            f"the filter written as JSON cannot be read ({exc}); fix it or empty the box "
            "to use the conditions above",
        ) from exc


def parse(raw: Any, region: str = "VN") -> Node:
    """The checked tree of `raw` (decoded JSON); SpecError says where and what to change.
    `region` reads phone numbers written without a country code."""
    reader = _Reader(region)
    node = reader.node(raw, "segment", 1)
    return node


class _Reader:
    """One pass over a spec, counting its conditions."""

    def __init__(self, region: str) -> None:
        self.region = region
        self.conditions = 0

    def node(self, raw: Any, at: str, depth: int) -> Node:
        if not isinstance(raw, Mapping):
            raise SpecError(
                "segment_invalid",
                f'{at} must be an object such as {{"all": [...]}} or '
                f'{{"field": "revenue", "op": ">=", "value": 100}}; got {_shown(raw)}',
            )
        group = [key for key in _GROUPS if key in raw]
        if group:
            return self.group(raw, group[0], at, depth)
        self.conditions += 1
        if self.conditions > MAX_CONDITIONS:
            raise SpecError(
                "segment_too_large",
                f"a segment may hold at most {MAX_CONDITIONS} conditions; combine some with in",
            )
        for kind in _KEYS:
            if kind in raw:
                _only_keys(raw, _KEYS[kind], at)
                return getattr(self, kind)(raw, at)
        raise SpecError(
            "segment_unknown_key",
            f"{at} has none of all, any, not, field, trait, attribute, identifier, event; "
            f"got the keys {', '.join(sorted(map(str, raw))) or '(none)'}",
        )

    def group(self, raw: Mapping[str, Any], kind: str, at: str, depth: int) -> Node:
        _only_keys(raw, {kind}, at)
        if depth > MAX_DEPTH:
            raise SpecError(
                "segment_too_deep",
                f"{at} nests all / any / not deeper than {MAX_DEPTH} levels; flatten the filter",
            )
        if kind == "not":
            return Not(self.node(raw["not"], f"{at}.not", depth + 1))
        children = raw[kind]
        if not isinstance(children, list):
            raise SpecError(
                "segment_invalid",
                f"{at}.{kind} must be a list of conditions; got {_shown(children)}",
            )
        if kind == "any" and not children:
            raise SpecError("segment_invalid", f"{at}.any needs at least one condition")
        return Group(
            kind,
            tuple(self.node(c, f"{at}.{kind}[{i}]", depth + 1) for i, c in enumerate(children)),
        )

    def field(self, raw: Mapping[str, Any], at: str) -> Aggregate:
        name = raw["field"]
        if name not in AGGREGATE_FIELDS:
            raise SpecError(
                "segment_unknown_field",
                f"{at}.field {_shown(name)} is not a profile aggregate; use one of "
                f'{", ".join(AGGREGATE_FIELDS)} (traits: "trait", attributes: "attribute")',
            )
        if "within_days" in raw:
            if name not in TIME_FIELDS or "op" in raw or "value" in raw:
                raise SpecError(
                    "segment_invalid_window",
                    f"{at}: within_days goes alone with a time field ({', '.join(TIME_FIELDS)}),"
                    " without op and value",
                )
            return Aggregate(name, ">=", within_days=_days(raw["within_days"], at))
        op = _op(raw, _AGGREGATE_OPS, at)
        if op == "exists":
            return Aggregate(name, op)
        read = _count if name in COUNT_FIELDS else _money if name in MONEY_FIELDS else _time
        return Aggregate(name, op, _values(raw, op, at, lambda v, where: read(v, where)))

    def trait(self, raw: Mapping[str, Any], at: str) -> Property:
        return self.property("traits", raw["trait"], raw, f"{at}.trait")

    def attribute(self, raw: Mapping[str, Any], at: str) -> Property:
        return self.property("attributes", raw["attribute"], raw, f"{at}.attribute")

    def property(self, source: str, name: Any, raw: Mapping[str, Any], at: str) -> Property:
        name = _text(name, at)
        op = _op(raw, OPS, at)
        if op == "exists":
            return Property(source, name, op)
        value = _values(raw, op, at, _scalar)
        if op in ORDER_OPS and isinstance(value, bool):
            raise SpecError(
                "segment_invalid_value", f"{at}: {op} compares numbers or text, not true / false"
            )
        if op == "contains" and not isinstance(value, str):
            raise SpecError("segment_invalid_value", f"{at}: contains needs a text value")
        if isinstance(value, tuple) and len({_is_number(v) for v in value}) > 1:
            raise SpecError(
                "segment_invalid_value",
                f"{at}: an in list holds numbers or texts, not both; quote the numbers",
            )
        return Property(source, name, op, value)

    def identifier(self, raw: Mapping[str, Any], at: str) -> Identifier:
        id_type = _text(raw["identifier"], f"{at}.identifier")
        op = _op(raw, _IDENTIFIER_OPS, at)
        if op == "exists":
            return Identifier(id_type, op)
        if op == "contains":
            text = _text(raw.get("value"), f"{at}.value")
            return Identifier(id_type, op, (text.lower() if id_type == "email" else text,))
        value = _values(raw, op, at, lambda v, where: self.identifier_value(id_type, v, where))
        return Identifier(id_type, op, value if isinstance(value, tuple) else (value,))

    def identifier_value(self, id_type: str, value: Any, at: str) -> str:
        """Normalised as F3 stores identifiers, so `Lan@Example.VN ` finds lan@example.vn."""
        if id_type == "email":
            normalised = normalise_email(value)
        elif id_type == "phone":
            normalised = normalise_phone(value, self.region)
        else:
            normalised = identifier_id(value)
        if normalised is None:
            raise SpecError(
                "segment_invalid_value",
                f"{at}: {_shown(value)} cannot be a {id_type} identifier; "
                + ("write a full address" if id_type == "email" else "check the value"),
            )
        return normalised

    def event(self, raw: Mapping[str, Any], at: str) -> EventCount:
        name = _text(raw["event"], f"{at}.event")
        count = raw.get("count", {"op": ">=", "value": 1})
        if not isinstance(count, Mapping):
            raise SpecError(
                "segment_invalid_value",
                f'{at}.count must be an object such as {{"op": ">=", "value": 2}}',
            )
        _only_keys(count, {"op", "value"}, f"{at}.count")
        op = _op(count, _COUNT_OPS, f"{at}.count")
        number = _count(count.get("value"), f"{at}.count.value")
        if "within_days" in raw and "between" in raw:
            raise SpecError(
                "segment_invalid_window", f"{at}: give within_days or between, not both"
            )
        if "within_days" in raw:
            return EventCount(name, op, number, within_days=_days(raw["within_days"], at))
        if "between" in raw:
            since, until = _between(raw["between"], f"{at}.between")
            return EventCount(name, op, number, since=since, until=until)
        return EventCount(name, op, number)


def _only_keys(raw: Mapping[str, Any], allowed: set[str], at: str) -> None:
    unknown = sorted(str(key) for key in raw if key not in allowed)
    if unknown:
        raise SpecError(
            "segment_unknown_key",
            f"{at} has the unknown key {', '.join(map(repr, unknown))}; "
            f"it may hold {', '.join(sorted(allowed))}",
        )


def _op(raw: Mapping[str, Any], allowed: tuple[str, ...], at: str) -> str:
    op = raw.get("op")
    if op not in allowed:
        raise SpecError(
            "segment_invalid_op",
            f"{at}.op {_shown(op)} is not allowed here; use one of {' '.join(allowed)}",
        )
    return op


def _values(raw: Mapping[str, Any], op: str, at: str, read: Any) -> Any:
    """The value (or for `in`, the tuple of values), each read by `read(value, where)`."""
    if "value" not in raw:
        raise SpecError("segment_invalid_value", f"{at}: op {op} needs a value")
    value = raw["value"]
    if op != "in":
        return read(value, f"{at}.value")
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_IN_VALUES:
        raise SpecError(
            "segment_invalid_value",
            f"{at}.value must be a list of 1 to {MAX_IN_VALUES} values for in; got {_shown(value)}",
        )
    return tuple(read(item, f"{at}.value[{i}]") for i, item in enumerate(value))


def _scalar(value: Any, at: str) -> Scalar:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | Decimal | float):
        return _money(value, at)
    if isinstance(value, str):
        return _text(value, at)
    raise SpecError(
        "segment_invalid_value",
        f"{at} must be text, a number or true / false; got {_shown(value)}",
    )


def _text(value: Any, at: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_TEXT_CHARS:
        raise SpecError(
            "segment_invalid_value",
            f"{at} must be text of 1 to {MAX_TEXT_CHARS} characters; got {_shown(value)}",
        )
    if "\x00" in value:  # PostgreSQL text cannot hold NUL
        raise SpecError("segment_invalid_value", f"{at} must not contain a NUL character")
    # stored text is NFC (F1 normalises it), so "Ánh" typed decomposed still finds "Ánh"
    return unicodedata.normalize("NFC", value)


def _count(value: Any, at: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
        raise SpecError(
            "segment_invalid_value",
            f"{at} must be a whole number from 0 to {MAX_COUNT:,}; got {_shown(value)}",
        )
    return value


def _money(value: Any, at: str) -> Decimal:
    # a float here came from a JSON decoder without Decimal; its repr is the literal sent
    amount = (
        None
        if isinstance(value, bool)
        else read_money(repr(value) if isinstance(value, float) else value)
    )
    if amount is None:
        raise SpecError(
            "segment_invalid_value",
            f"{at} must be a plain number such as 99.50; got {_shown(value)}",
        )
    return amount


def _time(value: Any, at: str) -> datetime:
    moment = parse_time(value) if isinstance(value, str) else None
    if moment is None:
        raise SpecError(
            "segment_invalid_value",
            f"{at} must be an ISO 8601 time such as 2026-03-01T00:00:00Z or a date such as "
            f"2026-03-01; got {_shown(value)}",
        )
    return moment


def _days(value: Any, at: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_WINDOW_DAYS:
        raise SpecError(
            "segment_invalid_window",
            f"{at}.within_days must be a whole number of days from 1 to {MAX_WINDOW_DAYS:,}; "
            f"got {_shown(value)}",
        )
    return value


def _between(value: Any, at: str) -> tuple[datetime, datetime]:
    if not isinstance(value, list) or len(value) != 2:
        raise SpecError(
            "segment_invalid_window",
            f"{at} must be [from, to], two ISO 8601 times or dates; got {_shown(value)}",
        )
    since, until = (_window_time(item, f"{at}[{i}]") for i, item in enumerate(value))
    if since >= until:
        raise SpecError("segment_invalid_window", f"{at}: from must be before to")
    return since, until


def _window_time(value: Any, at: str) -> datetime:
    try:
        return _time(value, at)
    except SpecError as exc:
        raise SpecError("segment_invalid_window", exc.message) from None


def _is_number(value: Scalar) -> bool:
    return isinstance(value, int | Decimal) and not isinstance(value, bool)


def _shown(value: Any) -> str:
    """A value as a message may quote it: short, one line."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
