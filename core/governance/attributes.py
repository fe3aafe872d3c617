"""Profile attribute definitions: what each attribute of a profile is, how it is computed (as
data: events, a property, an aggregation and a window, or a trait), whether it is personal
data, how long it is kept and who owns it; and the SQL that computes them.

Reads and writes `governance.attribute_definitions` and `profiles.attributes`; every change
is audited in its own transaction. A definition is `pending` until F0 activates it
(c360.governance.f0), after which F3 computes it for every profile it updates.
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import psycopg
import redis
from psycopg.rows import dict_row

from c360 import audit
from c360.errors import InputError

log = logging.getLogger(__name__)

TYPES = ("number", "money", "text", "timestamp", "boolean")
AGGREGATIONS = ("count", "sum", "min", "max", "first", "last", "distinct_count")
SOURCES = ("events", "trait")
STATUSES = ("pending", "active", "retired")

#: Identifier types c360 resolves on; each is personal data, named `id_<type>` in policies.
IDENTIFIER_TYPES = ("user_id", "email", "phone", "anonymous_id", "device_id", "crm_id")

#: Traits that hold personal data, by the built-in attribute that covers them.
PII_TRAITS: dict[str, tuple[str, ...]] = {
    "email": ("email",),
    "phone": ("phone", "phoneNumber", "phone_number"),
    "name": ("name", "firstName", "lastName", "first_name", "last_name", "username"),
    "address": ("address", "street", "city", "postalCode", "postal_code", "zip"),
}

#: Valkey key holding a fresh token whenever the active definitions change: a process that
#: sees a token other than its own reloads them. A token (not a counter) so that a flushed
#: Valkey and a later activation can never show a process an old number it already knows.
VERSION_KEY = "c360:attributes:version"

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
#: A property or trait name as events carry it: any printable text (Vietnamese, spaces), up
#: to 100 characters; it only ever reaches SQL as a parameter.
_PROPERTY = re.compile(r"^(?=\S)[^\x00-\x1f\x7f]{1,100}(?<=\S)$")
#: PostgreSQL functions take at most 100 arguments: jsonb_build_object holds 50 pairs.
_PAIRS_PER_OBJECT = 40

_EDITABLE = (
    "type",
    "source",
    "event_names",
    "property",
    "aggregation",
    "window_days",
    "trait",
    "pii",
    "retention_days",
    "owner",
    "description",
)


@dataclass(frozen=True, slots=True)
class Definition:
    """One profile attribute and how it is computed."""

    name: str
    type: str
    source: str  # events | trait | built_in
    event_names: tuple[str, ...] = ()
    property: str | None = None
    aggregation: str | None = None
    window_days: int | None = None
    trait: str | None = None
    pii: bool = False
    retention_days: int | None = None
    owner: str = ""
    description: str = ""
    version: int = 1
    status: str = "active"
    created_by: str = "c360"
    created_at: datetime | None = None
    updated_by: str = "c360"
    updated_at: datetime | None = None
    activated_at: datetime | None = None
    built_in: bool = field(default=False)

    def as_dict(self) -> dict[str, Any]:
        """The definition as the API answers it."""
        data = asdict(self)
        data["event_names"] = list(self.event_names)
        return data


def _built_in(name: str, type_: str, description: str, **kw: Any) -> Definition:
    return Definition(
        name, type_, "built_in", owner="c360", description=description, built_in=True, **kw
    )


#: What c360 computes itself, described as definitions (read-only) so that lineage, access
#: policies and the compliance report cover what already exists.
BUILT_IN: tuple[Definition, ...] = (
    _built_in("event_count", "number", "events of every type", aggregation="count"),
    _built_in(
        "order_count",
        "number",
        "Order Completed events",
        aggregation="count",
        event_names=("Order Completed",),
    ),
    _built_in(
        "revenue",
        "money",
        "sum of order revenue",
        aggregation="sum",
        property="revenue",
        event_names=("Order Completed",),
    ),
    _built_in("first_seen", "timestamp", "time of the earliest event", aggregation="min"),
    _built_in("last_seen", "timestamp", "time of the latest event", aggregation="max"),
    *(
        _built_in(name, "text", f"the traits {', '.join(traits)}", trait=traits[0], pii=True)
        for name, traits in PII_TRAITS.items()
    ),
    *(
        _built_in(f"id_{kind}", "text", f"identifier: {kind}", pii=True)
        for kind in IDENTIFIER_TYPES
    ),
)
BUILT_IN_NAMES = frozenset(d.name for d in BUILT_IN)


class UnknownAttribute(InputError):
    """No attribute definition has that name."""

    status_code = 404


def list_definitions(conn: psycopg.Connection, *, built_in: bool = True) -> list[Definition]:
    """Every definition, built-in ones first, then the defined ones by name."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute("SELECT * FROM governance.attribute_definitions ORDER BY name")
        defined = [_from_row(row) for row in rows]
    return [*(BUILT_IN if built_in else ()), *defined]


def get_definition(conn: psycopg.Connection, name: str) -> Definition:
    """One definition by name (built-in or defined); UnknownAttribute if none."""
    for definition in BUILT_IN:
        if definition.name == name:
            return definition
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "SELECT * FROM governance.attribute_definitions WHERE name = %s", (name,)
        ).fetchone()
    if row is None:
        raise UnknownAttribute(
            "unknown_attribute", f"no attribute is defined as {name!r}; list them first"
        )
    return _from_row(row)


def active_definitions(conn: psycopg.Connection) -> list[Definition]:
    """The computed (non-built-in) definitions F3 applies now."""
    return [d for d in list_definitions(conn, built_in=False) if d.status == "active"]


def pii_attributes(conn: psycopg.Connection) -> list[Definition]:
    """Definitions that hold personal data (built-in traits and identifiers included)."""
    return [d for d in list_definitions(conn) if d.pii and d.status != "retired"]


def create_definition(conn: psycopg.Connection, actor: str, spec: dict[str, Any]) -> Definition:
    """Add a definition from `spec` (checked); it stays `pending` until F0 activates it."""
    name = spec.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise InputError(
            "invalid_attribute_name",
            "name must be 1-63 lower-case letters, digits or _ starting with a letter",
        )
    if name in BUILT_IN_NAMES:
        raise InputError("attribute_built_in", f"{name!r} is built in: choose another name")
    values = validate({key: spec.get(key) for key in _EDITABLE} | {"name": name})
    with conn.transaction():
        exists = conn.execute(
            "SELECT 1 FROM governance.attribute_definitions WHERE name = %s", (name,)
        ).fetchone()
        if exists:
            raise InputError("attribute_exists", f"{name!r} is already defined: update it instead")
        conn.execute(
            "INSERT INTO governance.attribute_definitions (name, type, source, event_names,"
            " property, aggregation, window_days, trait, pii, retention_days, owner,"
            " description, created_by, updated_by) VALUES (%(name)s, %(type)s, %(source)s,"
            " %(event_names)s, %(property)s, %(aggregation)s, %(window_days)s, %(trait)s,"
            " %(pii)s, %(retention_days)s, %(owner)s, %(description)s, %(actor)s, %(actor)s)",
            {**values, "event_names": list(values["event_names"]), "actor": actor},
        )
        created = get_definition(conn, name)
        audit.record(
            conn,
            actor=actor,
            action="attribute.create",
            target=f"attribute:{name}",
            after=created.as_dict(),
        )
    return created


def update_definition(
    conn: psycopg.Connection, actor: str, name: str, changes: dict[str, Any]
) -> Definition:
    """Change a definition; a new version, `pending` again until F0 activates it."""
    unknown = sorted(set(changes) - set(_EDITABLE))
    if unknown:
        raise InputError(
            "unknown_field",
            f"cannot change {', '.join(unknown)}; the fields are {', '.join(_EDITABLE)}",
        )
    with conn.transaction():
        before = _lock_defined(conn, name)
        values = validate({k: getattr(before, k) for k in _EDITABLE} | changes | {"name": name})
        conn.execute(
            "UPDATE governance.attribute_definitions SET type = %(type)s, source = %(source)s,"
            " event_names = %(event_names)s, property = %(property)s,"
            " aggregation = %(aggregation)s, window_days = %(window_days)s, trait = %(trait)s,"
            " pii = %(pii)s, retention_days = %(retention_days)s, owner = %(owner)s,"
            " description = %(description)s, version = version + 1, status = 'pending',"
            " updated_by = %(actor)s, updated_at = now() WHERE name = %(name)s",
            {**values, "event_names": list(values["event_names"]), "actor": actor},
        )
        after = get_definition(conn, name)
        audit.record(
            conn,
            actor=actor,
            action="attribute.update",
            target=f"attribute:{name}",
            before=before.as_dict(),
            after=after.as_dict(),
        )
    return after


def retire_definition(conn: psycopg.Connection, actor: str, name: str) -> Definition:
    """Stop computing a definition (values already written stay until the profile's next
    update rewrites them); F3 sees it at its next batch."""
    with conn.transaction():
        before = _lock_defined(conn, name)
        conn.execute(
            "UPDATE governance.attribute_definitions SET status = 'retired',"
            " updated_by = %s, updated_at = now() WHERE name = %s",
            (actor, name),
        )
        after = get_definition(conn, name)
        audit.record(
            conn,
            actor=actor,
            action="attribute.retire",
            target=f"attribute:{name}",
            before=before.as_dict(),
            after=after.as_dict(),
        )
    return after


def validate(values: dict[str, Any]) -> dict[str, Any]:
    """The editable fields checked and normalised; InputError naming the fix otherwise."""
    out = dict(values)
    _choice(out, "type", TYPES)
    _choice(out, "source", SOURCES)
    out["_pii_given"] = out.get("pii") is not None
    out["pii"] = _boolean(out.get("pii"), "pii")
    out["owner"] = _text(out.get("owner"), "owner")
    out["description"] = _text(out.get("description"), "description")
    out["retention_days"] = _days(out.get("retention_days"), "retention_days")
    spec = _trait_spec(out) if out["source"] == "trait" else _events_spec(out)
    return _personal_if_copied(spec)


#: Trait and property names that hold personal data whatever attribute copies them.
_PERSONAL_NAMES = frozenset(name.lower() for names in PII_TRAITS.values() for name in names)


def _personal_if_copied(spec: dict[str, Any]) -> dict[str, Any]:
    """An attribute copying a personal trait (or an event property of such a name) holds
    personal data too: it is PII whatever it was called, or masking could be sidestepped by
    defining `email_copy`. Saying `pii: false` for one is refused rather than ignored."""
    given = spec.pop("_pii_given", False)
    copied = spec.get("trait") or spec.get("property")
    if not isinstance(copied, str) or copied.lower() not in _PERSONAL_NAMES:
        return spec
    if spec.get("pii") is False and given:
        raise InputError(
            "pii_required",
            f"{copied!r} holds personal data, so an attribute computed from it is PII: "
            "leave pii out or set it to true",
        )
    return {**spec, "pii": True}


def bump_version(valkey: Any) -> str:
    """Tell every process the active definitions changed; returns the new token."""
    token = uuid.uuid4().hex
    valkey.set(VERSION_KEY, token)
    return token


class DefinitionCache:
    """The active definitions as one process holds them, reloaded only when the version token
    in Valkey changes (one GET per F3 batch). Without Valkey it keeps what it has."""

    def __init__(self) -> None:
        self.token: bytes | None = None
        self.definitions: list[Definition] = []
        self.loaded = False

    def current(self, runtime: Any) -> list[Definition]:
        """The active definitions, reloaded from PostgreSQL when the token moved."""
        try:
            token = runtime.valkey.get(VERSION_KEY)
        except (redis.RedisError, OSError) as exc:  # keep the last known set
            log.warning("Cannot read the attribute version; keeping the last known: %s", exc)
            return self.definitions
        if self.loaded and token == self.token:
            return self.definitions
        with runtime.pool.connection() as conn:
            self.definitions = active_definitions(conn)
        self.token, self.loaded = token, True
        return self.definitions


def apply_to_profiles(
    conn: psycopg.Connection, definitions: list[Definition], profile_ids: list[Any]
) -> int:
    """Recompute these definitions for these live profiles in one statement over the stored
    events and traits; returns the profiles updated."""
    if not definitions or not profile_ids:
        return 0
    ids = list(profile_ids)
    scope, scope_params = _events_scope(definitions)
    computed, params = compute_sql(definitions)
    cur = conn.execute(
        # the profiles' events read once (a JSON payload is decompressed once, not once per
        # definition that reads it), narrowed to the names and window any definition needs
        "WITH e AS MATERIALIZED (SELECT profile_id, coalesce(event, type) AS name, event_time,"
        " received_at, message_id, revenue, payload -> 'properties' AS props FROM events"
        f" WHERE profile_id = ANY(%s){scope})"
        " UPDATE profiles p SET attributes = p.attributes || c.computed FROM ("
        f" SELECT pr.profile_id, {computed} AS computed FROM profiles pr"
        " LEFT JOIN e ON e.profile_id = pr.profile_id"
        " WHERE pr.profile_id = ANY(%s) AND pr.merged_into IS NULL"
        " GROUP BY pr.profile_id) c WHERE p.profile_id = c.profile_id",
        (ids, *scope_params, *params, ids),
    )
    return cur.rowcount


def _events_scope(definitions: list[Definition]) -> tuple[str, list[Any]]:
    """Extra conditions on the events read: only names some definition counts, and only the
    widest window, when every definition has names or a window; none at all for traits."""
    reading = [d for d in definitions if d.source == "events"]
    if not reading:
        return " AND false", []
    clauses, params = "", []
    if all(d.event_names for d in reading):
        clauses += " AND coalesce(event, type) = ANY(%s)"
        params.append(sorted({name for d in reading for name in d.event_names}))
    if all(d.window_days for d in reading):
        clauses += " AND event_time >= now() - make_interval(days => %s)"
        params.append(max(d.window_days or 0 for d in reading))
    return clauses, params


def compute_sql(definitions: list[Definition]) -> tuple[str, list[Any]]:
    """A jsonb expression `{name: value, ...}` over `pr` (profiles) grouped with `e` (its
    events: name, event_time, received_at, message_id, revenue, props), and its parameters
    in order."""
    parts, params = [], []
    for start in range(0, len(definitions), _PAIRS_PER_OBJECT):
        pairs = []
        for definition in definitions[start : start + _PAIRS_PER_OBJECT]:
            expression, expression_params = _expression(definition)
            pairs.append(f"%s::text, to_jsonb({expression})")
            params.extend([definition.name, *expression_params])
        parts.append(f"jsonb_build_object({', '.join(pairs)})")
    return " || ".join(parts), params


def _expression(d: Definition) -> tuple[str, list[Any]]:
    """One definition's aggregate over `e`, or its trait of `pr`."""
    if d.source == "trait":
        return "pr.traits -> %s", [d.trait]
    match, params = _match(d)
    value, value_params = _value(d)
    if d.aggregation == "count":
        return f"count(e.message_id) FILTER (WHERE {match})", params
    if d.aggregation == "distinct_count":
        return (
            f"count(DISTINCT {value}) FILTER (WHERE {match})",
            [*value_params, *params],
        )
    if d.aggregation == "sum":
        return f"coalesce(sum({value}) FILTER (WHERE {match}), 0)", [*value_params, *params]
    if d.aggregation in ("min", "max"):
        return f"{d.aggregation}({value}) FILTER (WHERE {match})", [*value_params, *params]
    direction = "" if d.aggregation == "first" else " DESC"
    order = f"e.event_time{direction}, e.received_at{direction}, e.message_id{direction}"
    return (
        f"(array_agg({value} ORDER BY {order}) FILTER (WHERE {match} AND {value} IS NOT NULL))[1]",
        [*value_params, *params, *value_params],
    )


def _match(d: Definition) -> tuple[str, list[Any]]:
    """Which of the profile's events count: by name (a track event's name, else its type)
    and within the window."""
    clauses, params = ["e.message_id IS NOT NULL"], []
    if d.event_names:
        clauses.append("e.name = ANY(%s)")
        params.append(list(d.event_names))
    if d.window_days:
        clauses.append("e.event_time >= now() - make_interval(days => %s)")
        params.append(d.window_days)
    return " AND ".join(clauses), params


def _value(d: Definition) -> tuple[str, list[Any]]:
    """The value an event gives: its time, or its property read as the definition's type."""
    if d.property is None:
        return "e.event_time", []
    if d.property == "revenue" and d.type == "money":
        return "e.revenue", []  # already read by the money rules when F2 stored the event
    raw = "(e.props -> %s)"
    if d.type in ("number", "money") and d.aggregation != "distinct_count":
        return f"governance.numeric_value({raw})", [d.property]
    if d.type == "boolean":
        return f"CASE WHEN jsonb_typeof({raw}) = 'boolean' THEN ({raw})::boolean END", [
            d.property
        ] * 2
    return f"({raw} #>> '{{}}')", [d.property]


def _events_spec(out: dict[str, Any]) -> dict[str, Any]:
    _choice(out, "aggregation", AGGREGATIONS)
    names = out.get("event_names") or []
    if not isinstance(names, list | tuple) or not all(
        isinstance(n, str) and 0 < len(n) <= 200 for n in names
    ):
        raise InputError("invalid_event_names", "event_names must be a list of event names")
    out["event_names"] = tuple(names)
    out["window_days"] = _days(out.get("window_days"), "window_days")
    out["trait"] = None
    prop = out.get("property")
    if prop is not None and (not isinstance(prop, str) or not _PROPERTY.match(prop)):
        raise InputError(
            "invalid_property",
            "property must be a property name such as price or tên sản phẩm (1 to 100 "
            "printable characters, no leading or trailing space)",
        )
    _check_combination(out["type"], out["aggregation"], prop)
    return out


def _check_combination(type_: str, aggregation: str, prop: str | None) -> None:
    """Which aggregation gives which type, and when a property is needed."""
    if aggregation in ("count", "distinct_count") and type_ != "number":
        raise InputError("invalid_type", f"{aggregation} gives a number: set type to number")
    if aggregation == "distinct_count" and prop is None:
        raise InputError("property_required", "distinct_count counts a property: name one")
    if aggregation == "sum" and (type_ not in ("number", "money") or prop is None):
        raise InputError("invalid_sum", "sum needs a property and the type number or money")
    if type_ == "timestamp" and (
        prop is not None or aggregation not in ("min", "max", "first", "last")
    ):
        raise InputError(
            "invalid_timestamp",
            "a timestamp attribute is the time of an event: min, max, first or last,"
            " with no property",
        )
    if aggregation in ("min", "max") and type_ not in ("number", "money", "timestamp"):
        raise InputError("invalid_type", f"{aggregation} needs the type number, money or timestamp")
    if aggregation in ("min", "max", "first", "last") and type_ != "timestamp" and prop is None:
        raise InputError("property_required", f"{aggregation} of a {type_} needs a property")


def _trait_spec(out: dict[str, Any]) -> dict[str, Any]:
    trait = out.get("trait")
    if not isinstance(trait, str) or not _PROPERTY.match(trait):
        raise InputError("invalid_trait", "a trait attribute needs trait: the trait's name")
    out.update(event_names=(), property=None, aggregation=None, window_days=None)
    return out


def _choice(out: dict[str, Any], key: str, allowed: tuple[str, ...]) -> None:
    if out.get(key) not in allowed:
        raise InputError(f"invalid_{key}", f"{key} must be one of {', '.join(allowed)}")


def _boolean(value: Any, key: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InputError(f"invalid_{key}", f"{key} must be true or false")
    return value


def _text(value: Any, key: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > 2000:
        raise InputError(f"invalid_{key}", f"{key} must be text of at most 2,000 characters")
    return value


def _days(value: Any, key: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= 36_500:
        raise InputError(f"invalid_{key}", f"{key} must be a whole number of days, 1 to 36,500")
    return value


def _lock_defined(conn: psycopg.Connection, name: str) -> Definition:
    if name in BUILT_IN_NAMES:
        raise InputError("attribute_built_in", f"{name!r} is built in and cannot be changed")
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "SELECT * FROM governance.attribute_definitions WHERE name = %s FOR UPDATE", (name,)
        ).fetchone()
    if row is None:
        raise UnknownAttribute("unknown_attribute", f"no attribute is defined as {name!r}")
    return _from_row(row)


def _from_row(row: dict[str, Any]) -> Definition:
    values = {key: row[key] for key in Definition.__dataclass_fields__ if key in row}
    values["event_names"] = tuple(row["event_names"] or ())
    return Definition(**values)
