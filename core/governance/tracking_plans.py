"""Tracking plans: a JSON Schema per source and event name, enforced by the gateway after F1's
own validation, and the violations they find.

Which event a plan names: a track event by its `event` (`Order Completed`); every other type
by the type itself (`identify`, `page`, `screen`, `group`, `alias`). What the schema checks:
the event's `traits` for identify and group, its `properties` for the others (an alias has
none, so its schema sees `{}`). A plan's action says what a violation does: `flag` keeps the
event with a `tracking_plan: ...` warning, `dlq` sends it to c360-dlq with the code
`tracking_plan_violation`. Each change is a new version; one version per (source, event) is
active.

A plan's schema is data from an admin applied to every event, so it is held to what runs in
bounded time: its size and depth are limited, `pattern`, `patternProperties` and `format:
regex` run on RE2 (linear time, no backtracking), and `$ref` resolves only inside the schema
(nothing is ever fetched). Whatever still fails while checking an event is a violation that
says the plan could not be evaluated, never an error of the request.

Violations are counted in Valkey per day, source, event and action (a hash increment, only
when a violation happens), with the last message and a few recent samples per event.

Touches: governance.tracking_plans, governance.audit_log, Valkey keys `c360:tp:*`.
"""

from __future__ import annotations

import contextvars
import functools
import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

import jsonschema
import jsonschema.exceptions
import jsonschema.validators
import psycopg
import re2
import redis
import referencing
import referencing.exceptions
import referencing.jsonschema
from psycopg.types.json import Jsonb

from c360 import audit
from c360.errors import InputError
from c360.events.f1 import Verdict
from c360.events.model import EVENT_TYPES, Event, encode
from c360.governance.sources import SourceNotFound, bump_version
from c360.runtime import Runtime

log = logging.getLogger(__name__)

ACTIONS = ("flag", "dlq")

#: The rejection code of an event a `dlq` plan refused.
VIOLATION_CODE = "tracking_plan_violation"

#: Longest violation message kept: a validator can quote a whole oversized value.
MAX_MESSAGE_CHARS = 500

#: Recent violations kept per source and event, newest first.
SAMPLES_KEPT = 10

#: Days the daily violation counts are kept: long enough for a yearly compliance report.
KEEP_DAYS = 400

_COUNTS = "c360:tp:count:"  # + day: hash of [source, event, action] -> count
_LAST = "c360:tp:last:"  # + day: hash of [source, event, action] -> last message
_SAMPLES = "c360:tp:samples:"  # + [source, event]: list of recent violations

#: Largest schema, as compact JSON: checking a schema against its meta-schema costs about
#: 0.2 ms per subschema, so a megabyte took seconds to save and as long to check an event.
MAX_SCHEMA_BYTES = 64 * 1024

#: Deepest nesting of a schema's objects and arrays: validating descends a few Python frames
#: per level, and far below the interpreter's recursion limit.
MAX_SCHEMA_DEPTH = 40

#: Message of the violation of a plan that failed while checking an event.
UNEVALUATED = "the plan could not be evaluated ({}); fix or replace the plan"

#: Event types whose schema checks traits; the others check properties.
_TRAIT_TYPES = ("identify", "group")

#: Keywords whose value is data, not a schema: nothing inside them is a keyword.
_DATA_KEYWORDS = frozenset({"const", "enum", "default", "examples", "$comment", "description"})

#: Keywords whose value maps names to subschemas.
_SCHEMA_MAPS = frozenset(
    {"properties", "patternProperties", "$defs", "definitions", "dependentSchemas", "dependencies"}
)

#: Keywords that apply their subschemas to the same instance: a cycle through them never ends.
_IN_PLACE = ("allOf", "anyOf", "oneOf", "not", "if", "then", "else", "dependentSchemas")

#: Keyword checks one event may cost a plan: with references, a schema of a few kilobytes can
#: apply its keywords an exponential number of times; a normal plan uses a few hundred.
MAX_STEPS = 20_000

#: Keyword checks one request (a batch) may cost its plans in all: the gateway checks plans
#: inline, so this bounds how long one request can hold it (about a second at worst).
MAX_REQUEST_STEPS = 100_000

#: The steps left to the plan check running in this context (a one-item list), if any.
_BUDGET: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
    "c360_tracking_plan_budget", default=None
)

#: Plans (source, event, version) whose failure was logged already: once each per process.
_FAILED_LOGGED: set[tuple[str, str, int]] = set()


@dataclass(frozen=True, slots=True)
class Plan:
    """One version of a tracking plan."""

    source: str
    event: str
    version: int
    schema: Any
    action: str
    active: bool
    created_at: datetime
    created_by: str


@dataclass(frozen=True, slots=True)
class CompiledPlan:
    """An active plan with its validator, built once per version."""

    plan: Plan
    validator: Any

    def verdict(self, event: Event, budget: list[int] | None = None) -> Verdict | None:
        """None when the event fits the plan; otherwise the plan's action and the reason. A plan
        that fails on the event (an unresolvable reference, a recursion, its `budget` of
        keyword checks spent, anything) is a violation too: a stored plan must never turn a
        request into an error."""
        document = event.traits if event.type in _TRAIT_TYPES else event.properties
        try:
            if self.validator is None:
                raise ValueError("its schema cannot be compiled")
            error = _best_error(self.validator, document, budget or [MAX_STEPS])
        except Exception as exc:  # any failure of a plan is its violation
            return self._unevaluated(exc)
        if error is None:
            return None
        return Verdict(self._action(), VIOLATION_CODE, _message(self.plan, error))

    def _action(self) -> Literal["flag", "dlq"]:
        return "dlq" if self.plan.action == "dlq" else "flag"

    def _unevaluated(self, exc: Exception) -> Verdict:
        plan = self.plan
        name = (plan.source, plan.event, plan.version)
        if name not in _FAILED_LOGGED:
            _FAILED_LOGGED.add(name)
            log.warning(
                "Tracking plan %r/%r v%d could not be evaluated: %s: %s",
                plan.source,
                plan.event,
                plan.version,
                type(exc).__name__,
                exc,
            )
        detail = str(exc) if isinstance(exc, PlanTooCostly) else type(exc).__name__
        reason = UNEVALUATED.format(detail)
        text = f"tracking_plan: {plan.event!r} v{plan.version}: {reason}"
        return Verdict(self._action(), VIOLATION_CODE, text[:MAX_MESSAGE_CHARS])


class PlanTooCostly(Exception):
    """A plan spent its budget of keyword checks on one event."""


def _best_error(validator: Any, document: Any, budget: list[int]) -> Any:
    """The most relevant violation of the document, within MAX_STEPS keyword checks and what
    is left of the request's `budget` (which this spends)."""
    allowed = min(MAX_STEPS, budget[0])
    left = [allowed]
    token = _BUDGET.set(left)
    try:
        return jsonschema.exceptions.best_match(validator.iter_errors(document))
    finally:
        _BUDGET.reset(token)
        budget[0] -= allowed - max(left[0], 0)


@dataclass(frozen=True, slots=True)
class Hit:
    """One event that broke a plan."""

    source: str
    event: str
    action: str
    message: str
    message_id: str
    at: datetime


@dataclass
class PlanChecker:
    """The F1 check for one request of one source; remembers each violation it finds."""

    source: str
    plans: dict[str, CompiledPlan]
    hits: list[Hit] = field(default_factory=list)
    budget: list[int] = field(default_factory=lambda: [MAX_REQUEST_STEPS])

    def __call__(self, event: Event) -> Verdict | None:
        """The verdict of the event's plan, if it has one."""
        compiled = self.plans.get(event_name(event))
        if compiled is None:
            return None
        verdict = compiled.verdict(event, self.budget)
        if verdict is not None:
            self.hits.append(
                Hit(
                    self.source,
                    compiled.plan.event,
                    verdict.action,
                    verdict.message,
                    event.message_id,
                    event.received_at,
                )
            )
        return verdict


@dataclass(frozen=True, slots=True)
class ViolationCount:
    """Violations of one plan on one day."""

    source: str
    event: str
    day: date
    count: int
    action: str
    last_message: str | None


def event_name(event: Event) -> str:
    """The name a plan gives an event: a track event's `event`, else its type."""
    if event.type == "track" and event.event:
        return event.event
    return event.type


def save_plan(
    runtime: Runtime,
    source: str,
    event: str,
    schema: Any,
    action: str,
    actor: str,
    active: bool = True,
) -> Plan:
    """Store a new version of the plan of (source, event), active unless `active` is False
    (which turns the plan off); the schema must be a valid JSON Schema."""
    source, event = _checked_name("source", source), _checked_name("event", event)
    # the action first: it is cheap, and the schema check may take a while
    if action not in ACTIONS:
        raise InputError("invalid_action", f"a plan's action is `flag` or `dlq`; got {action!r}")
    _checked_schema(schema)
    with runtime.pool.connection() as conn, conn.transaction():
        # one writer per plan at a time, even before its first version exists
        conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 6))", (f"{source}/{event}",)
        )
        before = _active(conn, source, event)
        conn.execute(
            "UPDATE governance.tracking_plans SET active = false"
            " WHERE source = %s AND event = %s AND active",
            (source, event),
        )
        row = conn.execute(
            "INSERT INTO governance.tracking_plans"
            " (source, event, version, schema, action, active, created_by)"
            " SELECT %s, %s, coalesce(max(version), 0) + 1, %s, %s, %s, %s"
            " FROM governance.tracking_plans WHERE source = %s AND event = %s"
            " RETURNING source, event, version, schema, action, active, created_at, created_by",
            (source, event, Jsonb(schema), action, active, actor, source, event),
        ).fetchone()
        assert row is not None
        plan = Plan(*row)
        audit.record(
            conn,
            actor=actor,
            action="tracking_plan.save",
            target=f"tracking_plan:{source}/{event}",
            before=_audited(before),
            after=_audited(plan),
        )
    bump_version(runtime.valkey)
    return plan


def list_plans(runtime: Runtime, source: str | None = None) -> list[Plan]:
    """The active plans (of one source, or all), by source and event."""
    with runtime.pool.connection() as conn:
        return [plan for plan in active_plans(conn) if source is None or plan.source == source]


def plan_history(runtime: Runtime, source: str, event: str) -> list[Plan]:
    """Every version of one plan, newest first; SourceNotFound when it has none."""
    with runtime.pool.connection() as conn:
        rows = conn.execute(
            "SELECT source, event, version, schema, action, active, created_at, created_by"
            " FROM governance.tracking_plans WHERE source = %s AND event = %s"
            " ORDER BY version DESC",
            (source, event),
        ).fetchall()
    if not rows:
        raise SourceNotFound(
            "unknown_plan", f"source {source!r} has no tracking plan for {event!r}"
        )
    return [Plan(*row) for row in rows]


def active_plans(conn: psycopg.Connection) -> list[Plan]:
    """Every active plan (what the keyring loads)."""
    rows = conn.execute(
        "SELECT source, event, version, schema, action, active, created_at, created_by"
        " FROM governance.tracking_plans WHERE active ORDER BY source, event"
    ).fetchall()
    return [Plan(*row) for row in rows]


def compile_plan(plan: Plan) -> CompiledPlan:
    """The plan with a safe validator built for its schema's draft (2020-12 unless it says);
    a schema that cannot be compiled (stored before today's checks) makes every event it
    names a violation rather than stop the keyring loading."""
    try:
        validator = safe_validator(plan.schema)
    except Exception as exc:  # one bad stored plan must not stop the others
        log.warning("Tracking plan %r/%r v%d cannot be compiled: %s", *_named(plan), exc)
        validator = None
    return CompiledPlan(plan, validator)


def safe_validator(schema: Any) -> Any:
    """A validator of the schema's draft in which no keyword can run for long on event data:
    patterns on RE2, references inside the schema only, `format: regex` compiled by RE2."""
    validator_class = _safe_class(
        jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    )
    return validator_class(
        schema, registry=_registry(), format_checker=_format_checker(validator_class)
    )


def queue_hits(pipe: Any, hits: Iterable[Hit]) -> None:
    """Queue on a (sync or async) Valkey pipeline the counting of these violations."""
    for hit in hits:
        day = hit.at.astimezone(UTC).date().isoformat()
        name = json.dumps([hit.source, hit.event, hit.action])
        pipe.hincrby(_COUNTS + day, name, 1)
        pipe.hset(_LAST + day, name, hit.message)
        pipe.expire(_COUNTS + day, KEEP_DAYS * 86_400)
        pipe.expire(_LAST + day, KEEP_DAYS * 86_400)
        samples = _SAMPLES + json.dumps([hit.source, hit.event])
        sample = {
            "action": hit.action,
            "message": hit.message,
            "messageId": hit.message_id,
            "at": hit.at,
        }
        pipe.lpush(samples, encode(sample))
        pipe.ltrim(samples, 0, SAMPLES_KEPT - 1)


def count_hits(client: redis.Redis, hits: list[Hit]) -> None:
    """Count violations found outside the gateway (a replay)."""
    if hits:
        with client.pipeline(transaction=False) as pipe:
            queue_hits(pipe, hits)
            pipe.execute()


def violations(runtime: Runtime, since: date, until: date) -> list[ViolationCount]:
    """Violation counts per source, event, action and day, for days `since` to `until`
    inclusive (UTC; a datetime stands for its UTC day), by day then source and event."""
    since, until = _utc_day(since), _utc_day(until)
    if until < since:
        raise InputError("invalid_window", "`until` must not be before `since`")
    # counts live KEEP_DAYS and none lie ahead: read only days that can hold any
    today = datetime.now(UTC).date()
    days = list(_days(max(since, today - timedelta(days=KEEP_DAYS)), min(until, today)))
    with runtime.valkey.pipeline(transaction=False) as pipe:
        for day in days:
            pipe.hgetall(_COUNTS + day.isoformat())
            pipe.hgetall(_LAST + day.isoformat())
        replies = pipe.execute()
    rows = []
    for index, day in enumerate(days):
        counts, last = replies[2 * index], replies[2 * index + 1]
        for name, count in counts.items():
            source, event, action = json.loads(name)
            message = last.get(name)
            rows.append(
                ViolationCount(
                    source, event, day, int(count), action, message.decode() if message else None
                )
            )
    return sorted(rows, key=lambda r: (r.day, r.source, r.event, r.action))


def violation_samples(runtime: Runtime, source: str, event: str) -> list[dict[str, Any]]:
    """The most recent violations of one plan, newest first."""
    raw = runtime.valkey.lrange(_SAMPLES + json.dumps([source, event]), 0, SAMPLES_KEPT - 1)
    return [json.loads(item) for item in raw]


def _utc_day(value: date) -> date:
    if isinstance(value, datetime):
        return value.astimezone(UTC).date()
    return value


def _days(since: date, until: date) -> Iterator[date]:
    day = since
    while day <= until:
        yield day
        day += timedelta(days=1)


def _checked_schema(schema: Any) -> None:
    """An InputError naming what is wrong with a schema, if anything is: its type, size and
    depth first (cheap), then the meta-schema, its patterns and its references."""
    if not isinstance(schema, (dict, bool)):
        raise InputError(
            "invalid_schema",
            f"a tracking plan's schema is a JSON Schema object; got {type(schema).__name__}",
        )
    _checked_size(schema)
    validator_class = jsonschema.validators.validator_for(
        schema, default=jsonschema.Draft202012Validator
    )
    try:
        validator_class.check_schema(schema)
    except jsonschema.exceptions.SchemaError as exc:
        where = "/".join(str(part) for part in exc.path) or "the top level"
        raise InputError(
            "invalid_schema", f"the schema is not a valid JSON Schema at {where}: {exc.message}"
        ) from None
    subschemas = list(_subschemas(schema))
    _checked_patterns(subschemas)
    _checked_references(schema, validator_class)


def _checked_size(schema: Any) -> None:
    size = len(json.dumps(schema, separators=(",", ":")).encode())
    if size > MAX_SCHEMA_BYTES:
        raise InputError(
            "schema_too_large",
            f"the schema is {size} bytes of JSON; a tracking plan's schema is at most "
            f"{MAX_SCHEMA_BYTES} bytes: split it or drop what events do not need",
        )
    depth = _depth(schema)
    if depth > MAX_SCHEMA_DEPTH:
        raise InputError(
            "schema_too_deep",
            f"the schema nests {depth} levels deep; a tracking plan's schema nests at most "
            f"{MAX_SCHEMA_DEPTH}: flatten it, or name shared parts in $defs",
        )


def _depth(value: Any) -> int:
    """How deep objects and arrays nest in a JSON value, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        if isinstance(item, (dict, list)):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in children)
    return deepest


def _subschemas(schema: Any) -> Iterator[dict[str, Any]]:
    """Every object of a schema that can hold keywords (skipping `enum`, `const` and other
    data); a property *named* like a keyword is a key of `properties`, never a keyword here."""
    stack = [schema]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            yield item
            stack.extend(_children(item))


def _checked_patterns(subschemas: list[dict[str, Any]]) -> None:
    """Every `pattern` and `patternProperties` key must compile in RE2, which runs in linear
    time; Python's backtracking `re` would let one pattern freeze the gateway."""
    patterns: list[Any] = []
    for subschema in subschemas:
        patterns.append(subschema.get("pattern"))
        if isinstance(subschema.get("patternProperties"), dict):
            patterns.extend(subschema["patternProperties"])
    uses_unevaluated = any("unevaluatedProperties" in sub for sub in subschemas)
    if uses_unevaluated and any(
        isinstance(sub.get("patternProperties"), dict) for sub in subschemas
    ):
        raise InputError(
            "unsupported_schema",
            "`unevaluatedProperties` in a schema with `patternProperties` is not supported (it "
            "would run the patterns on Python's backtracking regex engine): use "
            "`additionalProperties` instead",
        )
    for pattern in patterns:
        if isinstance(pattern, str):
            _checked_pattern(pattern)


def _checked_pattern(pattern: str) -> None:
    try:
        _re2(pattern)
    except re2.error as exc:
        raise InputError(
            "unsupported_pattern",
            f"the pattern {pattern!r} is not valid RE2 syntax ({_re2_reason(exc)}): tracking "
            "plans use RE2, which has no backreferences or lookaround",
        ) from None


def _re2_reason(exc: Exception) -> str:
    reason = exc.args[0] if exc.args else str(exc)
    return reason.decode(errors="replace") if isinstance(reason, bytes) else str(reason)


def _checked_references(schema: Any, validator_class: Any) -> None:
    """Every `$ref` must resolve inside the schema, and no chain of references (with other
    keywords applied to the same value) may loop back without reaching a keyword."""
    root = _registry().resolver_with_root(_specification(validator_class).create_resource(schema))
    nodes: dict[int, list[Any]] = {}
    stack: list[tuple[Any, referencing.Resolver[Any]]] = [(schema, root)]
    while stack:
        subschema, resolver = stack.pop()
        if not isinstance(subschema, dict) or id(subschema) in nodes:
            continue
        resolver = _entered(resolver, subschema, validator_class)
        targets = _in_place(subschema, resolver)
        nodes[id(subschema)] = [target for target, _ in targets]
        stack.extend(targets)
        stack.extend((child, resolver) for child in _children(subschema) if isinstance(child, dict))
    _refuse_cycles(nodes)


def _entered(resolver: Any, subschema: dict[str, Any], validator_class: Any) -> Any:
    """The resolver inside a subschema (which may set its own `$id`)."""
    return resolver.in_subresource(_specification(validator_class).create_resource(subschema))


def _specification(validator_class: Any) -> Any:
    """The referencing rules (how `$id` and anchors work) of the validator's draft."""
    return referencing.jsonschema.specification_with(
        validator_class.META_SCHEMA.get("$schema", ""), default=referencing.jsonschema.DRAFT202012
    )


def _in_place(subschema: dict[str, Any], resolver: Any) -> list[tuple[Any, Any]]:
    """The schemas applied to the same value as this one: its reference and applicators."""
    targets: list[tuple[Any, Any]] = []
    ref = subschema.get("$ref")
    if isinstance(ref, str):
        try:
            resolved = resolver.lookup(ref)
        except referencing.exceptions.Unresolvable:
            raise InputError(
                "unresolvable_reference",
                f"the reference {ref!r} does not point inside the schema: tracking plans "
                "resolve `$ref` only within the plan itself (use `#/$defs/...`), never fetch it",
            ) from None
        if not isinstance(resolved.contents, (dict, bool)):
            raise InputError(
                "unresolvable_reference",
                f"the reference {ref!r} points at a value that is not a schema: point it at "
                "an object under `$defs` or `properties`",
            )
        targets.append((resolved.contents, resolved.resolver))
    for keyword in _IN_PLACE:
        value = subschema.get(keyword)
        children = value if isinstance(value, list) else [value]
        if isinstance(value, dict) and keyword == "dependentSchemas":
            children = list(value.values())
        targets.extend((child, resolver) for child in children if isinstance(child, dict))
    return targets


def _children(subschema: dict[str, Any]) -> Iterator[Any]:
    """Every subschema right below a subschema (the values of `properties` and the like, the
    items of `allOf` and the like), keywords' data excepted."""
    for key, value in subschema.items():
        if key in _DATA_KEYWORDS:
            continue
        if isinstance(value, list):
            yield from value
        elif isinstance(value, dict) and key in _SCHEMA_MAPS:
            yield from value.values()
        elif isinstance(value, dict):
            yield value


def _refuse_cycles(nodes: dict[int, list[Any]]) -> None:
    """An InputError if schemas applied in place form a cycle (validation would never end)."""
    done: set[int] = set()
    for start in nodes:
        on_path: set[int] = set()
        stack: list[tuple[int, bool]] = [(start, False)]
        while stack:
            node, leaving = stack.pop()
            if leaving:
                on_path.discard(node)
                done.add(node)
                continue
            if node in done:
                continue
            if node in on_path:
                raise InputError(
                    "cyclic_reference",
                    "the schema's `$ref`s loop back to themselves on the same value without "
                    "reaching a keyword: make each reference end in a schema that checks",
                )
            on_path.add(node)
            stack.append((node, True))
            stack.extend((id(target), False) for target in nodes.get(node, ()))


def _checked_name(kind: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        raise InputError(
            f"invalid_{kind}",
            f"a tracking plan names its {kind} with text of 1 to 200 characters",
        )
    return value.strip()


def _message(plan: Plan, error: jsonschema.exceptions.ValidationError) -> str:
    where = ".".join(str(part) for part in error.absolute_path)
    field = "traits" if plan.event in _TRAIT_TYPES else "properties"
    text = f"tracking_plan: {plan.event!r} v{plan.version}: {field}"
    text += f".{where}" if where else ""
    return f"{text}: {error.message}"[:MAX_MESSAGE_CHARS]


def _active(conn: psycopg.Connection, source: str, event: str) -> Plan | None:
    row = conn.execute(
        "SELECT source, event, version, schema, action, active, created_at, created_by"
        " FROM governance.tracking_plans WHERE source = %s AND event = %s AND active",
        (source, event),
    ).fetchone()
    return Plan(*row) if row else None


def _audited(plan: Plan | None) -> dict[str, Any] | None:
    if plan is None:
        return None
    return {
        "version": plan.version,
        "schema": plan.schema,
        "action": plan.action,
        "active": plan.active,
    }


# -- the safe validator: RE2 for patterns, references inside the schema only ----------------

#: RE2 options: errors are raised (and said in our own message), not also logged to stderr.
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False

#: Safe validator classes by the draft's class, built once each.
_SAFE_CLASSES: dict[Any, Any] = {}


@functools.lru_cache(maxsize=1024)
def _re2(pattern: str) -> Any:
    """A pattern compiled by RE2, once per process (plans' patterns are few)."""
    return re2.compile(pattern, _RE2_OPTIONS)


def _safe_class(validator_class: Any) -> Any:
    """The draft's validator class with its regex keywords on RE2, `uniqueItems` in linear
    time, and every keyword counted against the budget of the event being checked."""
    safe = _SAFE_CLASSES.get(validator_class)
    if safe is None:
        keywords = dict(validator_class.VALIDATORS)
        keywords.update(pattern=_pattern, patternProperties=_pattern_properties)
        keywords.update(uniqueItems=_unique_items, additionalProperties=_additional_properties)
        if "additionalProperties" not in validator_class.VALIDATORS:
            del keywords["additionalProperties"]
        budgeted = {name: _budgeted(function) for name, function in keywords.items()}
        safe = jsonschema.validators.extend(validator_class, budgeted)
        _SAFE_CLASSES[validator_class] = safe
    return safe


def _budgeted(function: Any) -> Any:
    """The keyword, spending one step of the current check's budget each time it applies."""

    def keyword(validator: Any, value: Any, instance: Any, schema: Any) -> Any:
        budget = _BUDGET.get()
        if budget is not None:
            budget[0] -= 1
            if budget[0] < 0:
                raise PlanTooCostly("it needs more keyword checks than one event is allowed")
        return function(validator, value, instance, schema)

    return keyword


def _unique_items(validator: Any, unique: Any, instance: Any, schema: Any) -> Iterator[Any]:
    """jsonschema's `uniqueItems` by hashing (linear), not by comparing every pair."""
    if not unique or not validator.is_type(instance, "array"):
        return
    seen = {_hashable(item) for item in instance}
    if len(seen) < len(instance):
        yield jsonschema.exceptions.ValidationError(f"{instance!r} has non-unique elements")


def _hashable(value: Any) -> Any:
    """A JSON value as a hashable one that is equal exactly when JSON Schema says the values
    are: 1 and 1.0 are equal, true and 1 are not, objects ignore their keys' order."""
    if isinstance(value, bool) or value is None:
        return ("literal", value)
    if isinstance(value, list):
        return ("array", tuple(_hashable(item) for item in value))
    if isinstance(value, dict):
        return ("object", frozenset((key, _hashable(item)) for key, item in value.items()))
    return ("value", value)


def _registry() -> referencing.Registry[Any]:
    """A registry that retrieves nothing: a validator adds its schema as the root resource,
    so references resolve inside the schema only."""
    return referencing.Registry(retrieve=_refuse_retrieval)  # type: ignore[call-arg]


def _refuse_retrieval(uri: str) -> referencing.Resource[Any]:
    """Never fetch a schema: a plan's `$ref` to a URL would make the gateway a web client."""
    raise referencing.exceptions.NoSuchResource(ref=uri)


def _format_checker(validator_class: Any) -> jsonschema.FormatChecker:
    """The draft's formats, but `regex` compiled by RE2: Python's `re.compile` of event data
    can take exponential time."""
    checker = jsonschema.FormatChecker(())
    checker.checkers.update(validator_class.FORMAT_CHECKER.checkers)
    checker.checks("regex", raises=re2.error)(_is_re2)
    return checker


def _is_re2(instance: object) -> bool:
    if isinstance(instance, str):
        _re2(instance)
    return True


def _pattern(validator: Any, pattern: Any, instance: Any, schema: Any) -> Iterator[Any]:
    if validator.is_type(instance, "string") and not _re2(pattern).search(instance):
        yield jsonschema.exceptions.ValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(validator: Any, patterns: Any, instance: Any, schema: Any) -> Iterator[Any]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        for name, value in instance.items():
            if _re2(pattern).search(name):
                yield from validator.descend(value, subschema, path=name, schema_path=pattern)


def _additional_properties(
    validator: Any, additional: Any, instance: Any, schema: Any
) -> Iterator[Any]:
    """jsonschema's `additionalProperties`, with `patternProperties` matched by RE2."""
    if not validator.is_type(instance, "object"):
        return
    properties = schema.get("properties", {})
    patterns = list(schema.get("patternProperties", {}))
    extras = [
        name
        for name in instance
        if name not in properties and not any(_re2(p).search(name) for p in patterns)
    ]
    if validator.is_type(additional, "object"):
        for extra in extras:
            yield from validator.descend(instance[extra], additional, path=extra)
    elif not additional and extras:
        names = ", ".join(repr(name) for name in sorted(extras))
        if patterns:
            listed = ", ".join(repr(p) for p in sorted(patterns))
            verb = "does" if len(extras) == 1 else "do"
            yield jsonschema.exceptions.ValidationError(
                f"{names} {verb} not match any of the regexes: {listed}"
            )
        else:
            yield jsonschema.exceptions.ValidationError(
                f"Additional properties are not allowed ({names} unexpected)"
            )


def _named(plan: Plan) -> tuple[str, str, int]:
    return plan.source, plan.event, plan.version


# The event types a plan can name besides track events' names (for the UI's pickers).
EVENT_TYPE_NAMES = tuple(t for t in EVENT_TYPES if t != "track")
