"""Tracking plans: a JSON Schema per source and event name, enforced by the gateway after F1's
own validation, and the violations they find.

Which event a plan names: a track event by its `event` (`Order Completed`); every other type
by the type itself (`identify`, `page`, `screen`, `group`, `alias`). What the schema checks:
the event's `traits` for identify and group, its `properties` for the others (an alias has
none, so its schema sees `{}`). A plan's action says what a violation does: `flag` keeps the
event with a `tracking_plan: ...` warning, `dlq` sends it to c360-dlq with the code
`tracking_plan_violation`. Each change is a new version; one version per (source, event) is
active.

Violations are counted in Valkey per day, source, event and action (a hash increment, only
when a violation happens), with the last message and a few recent samples per event.

Touches: governance.tracking_plans, governance.audit_log, Valkey keys `c360:tp:*`.
"""

from __future__ import annotations

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
import redis
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

#: Event types whose schema checks traits; the others check properties.
_TRAIT_TYPES = ("identify", "group")


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

    def verdict(self, event: Event) -> Verdict | None:
        """None when the event fits the plan; otherwise the plan's action and the reason."""
        document = event.traits if event.type in _TRAIT_TYPES else event.properties
        error = jsonschema.exceptions.best_match(self.validator.iter_errors(document))
        if error is None:
            return None
        action: Literal["flag", "dlq"] = "dlq" if self.plan.action == "dlq" else "flag"
        return Verdict(action, VIOLATION_CODE, _message(self.plan, error))


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

    def __call__(self, event: Event) -> Verdict | None:
        """The verdict of the event's plan, if it has one."""
        compiled = self.plans.get(event_name(event))
        if compiled is None:
            return None
        verdict = compiled.verdict(event)
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
    _checked_schema(schema)
    if action not in ACTIONS:
        raise InputError("invalid_action", f"a plan's action is `flag` or `dlq`; got {action!r}")
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
    """The plan with a validator built for its schema's draft (2020-12 unless it says)."""
    validator_class = jsonschema.validators.validator_for(
        plan.schema, default=jsonschema.Draft202012Validator
    )
    validator = validator_class(plan.schema, format_checker=validator_class.FORMAT_CHECKER)
    return CompiledPlan(plan, validator)


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
    """An InputError naming what is wrong with a schema, if anything is."""
    if not isinstance(schema, (dict, bool)):
        raise InputError(
            "invalid_schema",
            f"a tracking plan's schema is a JSON Schema object; got {type(schema).__name__}",
        )
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


# The event types a plan can name besides track events' names (for the UI's pickers).
EVENT_TYPE_NAMES = tuple(t for t in EVENT_TYPES if t != "track")
