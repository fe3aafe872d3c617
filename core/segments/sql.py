"""A checked segment filter (c360.segments.spec) compiled to a parameterised SQL condition over
`profiles p`. Only fixed SQL text is written here; every name and value the user gave travels
as a parameter. Touches no database.

Meaning of the ops: `!=` holds wherever `=` does not (a profile without the trait is "not
gold"); `contains` is a case-insensitive substring; `<` `<=` `>` `>=` compare numbers when the
value is a number (a trait that is not numeric then never matches) and text otherwise.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from c360.segments.spec import (
    Aggregate,
    EventCount,
    Group,
    Identifier,
    Node,
    Not,
    Property,
)

#: Profile columns by aggregate name: the only column names a filter can reach.
_COLUMNS = {
    "event_count": "p.event_count",
    "order_count": "p.order_count",
    "revenue": "p.revenue",
    "first_seen": "p.first_seen",
    "last_seen": "p.last_seen",
    "first_order_at": "p.first_order_at",
    "last_order_at": "p.last_order_at",
}
_SOURCES = {"traits": "p.traits", "attributes": "p.attributes"}
_COMPARE = {"=": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}

#: Text that reads as a number; anything else is not compared numerically (a cast would fail).
_NUMERIC_TEXT = r"'^\s*-?[0-9]+(\.[0-9]+)?\s*$'"


def condition(node: Node, now: datetime) -> tuple[str, list[Any]]:
    """The SQL condition for `node` over `profiles p`, and its parameters in order. `now` is
    the moment windows such as `within_days` are measured back from."""
    params: list[Any] = []
    return _Compiler(now, params).node(node), params


def matching_ids(
    node: Node, now: datetime, among: list[Any] | None = None
) -> tuple[str, list[Any]]:
    """A query for the ids of live profiles matching `node`, only among the profile ids
    `among` (uuid.UUID values) when given, and its parameters."""
    where, params = condition(node, now)
    query = "SELECT p.profile_id FROM profiles p WHERE p.merged_into IS NULL"
    if among is None:
        return f"{query} AND ({where})", params
    return f"{query} AND p.profile_id = ANY(%s) AND ({where})", [among, *params]


class _Compiler:
    def __init__(self, now: datetime, params: list[Any]) -> None:
        self.now = now
        self.params = params

    def bind(self, value: Any) -> str:
        self.params.append(value)
        return "%s"

    def node(self, node: Node) -> str:
        if isinstance(node, Group):
            if not node.children:
                return "TRUE"
            joiner = " AND " if node.kind == "all" else " OR "
            return "(" + joiner.join(self.node(child) for child in node.children) + ")"
        if isinstance(node, Not):
            # coalesce: NOT of an unknown (NULL) must hold, as "not (x)" reads to a person
            return f"NOT coalesce({self.node(node.child)}, FALSE)"
        if isinstance(node, Aggregate):
            return self.aggregate(node)
        if isinstance(node, Property):
            return self.property(node)
        if isinstance(node, Identifier):
            return self.identifier(node)
        return self.event(node)

    def aggregate(self, node: Aggregate) -> str:
        column = _COLUMNS[node.field]
        if node.within_days is not None:
            return f"{column} >= {self.bind(self.now - timedelta(days=node.within_days))}"
        if node.op == "exists":
            return f"{column} IS NOT NULL"
        if node.op == "in":
            return f"coalesce({column} = ANY({self.bind(list(node.value))}), FALSE)"
        test = f"coalesce({column} {_COMPARE[node.op.replace('!=', '=')]} {self.bind(node.value)},"
        return f"{'NOT ' if node.op == '!=' else ''}{test} FALSE)"

    def property(self, node: Property) -> str:
        if node.op == "exists":
            return f"{self.value_of(node)} IS NOT NULL"
        if node.op == "contains":
            text = self.value_of(node)
            return f"coalesce(strpos(lower({text}), lower({self.bind(node.value)})) > 0, FALSE)"
        values = node.value if isinstance(node.value, tuple) else (node.value,)
        numeric = _is_number(values[0])
        subject = self.number_of(node) if numeric else self.value_of(node)
        if node.op == "in":
            kind = "numeric[]" if numeric else "text[]"
            items = [_as_param(v) for v in values]
            return f"coalesce({subject} = ANY({self.bind(items)}::{kind}), FALSE)"
        if not numeric and node.op in ("<", "<=", ">", ">="):
            subject = f'{subject} COLLATE "C"'  # the same order whatever the database's locale
        test = f"coalesce({subject} {_COMPARE[node.op.replace('!=', '=')]} "
        test += f"{self.bind(_as_param(values[0]))}, FALSE)"
        return f"NOT {test}" if node.op == "!=" else test

    def value_of(self, node: Property) -> str:
        """The trait or attribute as text (NULL when absent); binds its name once per use."""
        return f"({_SOURCES[node.source]} ->> {self.bind(node.name)})"

    def number_of(self, node: Property) -> str:
        """The trait or attribute as a number, NULL when absent or not numeric text."""
        return f"(CASE WHEN {self.value_of(node)} ~ {_NUMERIC_TEXT}" + (
            f" THEN {self.value_of(node)}::numeric END)"
        )

    def identifier(self, node: Identifier) -> str:
        base = "SELECT 1 FROM identifiers i WHERE i.profile_id = p.profile_id"
        base += f" AND i.id_type = {self.bind(node.type)}"
        if node.op == "exists":
            return f"EXISTS ({base})"
        if node.op == "contains":
            return f"EXISTS ({base} AND strpos(i.id_value, {self.bind(node.values[0])}) > 0)"
        if node.op == "in":
            return f"EXISTS ({base} AND i.id_value = ANY({self.bind(list(node.values))}))"
        found = f"EXISTS ({base} AND i.id_value = {self.bind(node.values[0])})"
        return f"NOT {found}" if node.op == "!=" else found

    def event(self, node: EventCount) -> str:
        window = ""
        since = node.since
        if node.within_days is not None:
            since = self.now - timedelta(days=node.within_days)
        count = "SELECT count(*) FROM events e WHERE e.profile_id = p.profile_id"
        count += f" AND e.event = {self.bind(node.event)}"
        if since is not None:
            window += f" AND e.event_time >= {self.bind(since)}"
        if node.until is not None:
            window += f" AND e.event_time < {self.bind(node.until)}"
        return f"({count}{window}) {_COMPARE[node.op]} {self.bind(node.count)}"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | Decimal) and not isinstance(value, bool)


def _as_param(value: Any) -> Any:
    """Booleans compare as the text jsonb's ->> gives them; numbers as Decimal; text as is."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if _is_number(value):
        return Decimal(value)
    return value
