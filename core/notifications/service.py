"""What the notifications API does: rules and templates kept and changed (every change audited),
test sends, and the list of sends with their outcomes and counts.

Touches notify.*, the audit log, and channels.deliveries (read for outcomes; a test send is
enqueued there).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from c360 import audit
from c360.errors import InputError
from c360.notifications import preferences, rules, scheduler, templates
from c360.runtime import Runtime
from c360.stages.f3_resolve import load_documents

#: Longest page of sends one request returns.
MAX_PAGE = 500
SEND_STATES = ("scheduled", "held", "enqueued", "suppressed")
_SEND_FILTERS = ("state", "channel", "rule_id", "profile_id")
#: What each column of a listed send means (the sends list answers it as `columns`).
SEND_COLUMNS = {
    "state": "what the scheduler decided: scheduled, held, enqueued (handed to the channel's"
    " outbox) or suppressed (see reason)",
    "delivery_status": "what the channel then did: pending, sending, sent, retry, failed,"
    " bounced, delivered, read (null before the outbox has it)",
    "outcome": "where the send ended: the delivery's status once there is one, else the state",
}
#: Address forms checked at a test send, where a channel's addresses have one.
_EMAIL = re.compile(r"^[^@\s<>(),;:\"]+@[^@\s<>(),;:\"]+\.[^@\s<>(),;:\".]{2,}$")
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")


class NotFound(InputError):
    """No rule, template or send by that name or id."""

    status_code = 404


class Conflict(InputError):
    """The change clashes with what is stored (a name taken, a template in use)."""

    status_code = 409


def list_rules(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Live rules (enabled or not), oldest first."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT * FROM notify.rules WHERE deleted_at IS NULL ORDER BY rule_id"
        ).fetchall()


def get_rule(conn: psycopg.Connection, rule_id: int) -> dict[str, Any]:
    """One live rule; NotFound otherwise."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "SELECT * FROM notify.rules WHERE rule_id = %s AND deleted_at IS NULL", (rule_id,)
        ).fetchone()
    if row is None:
        raise NotFound("unknown_rule", f"no notification rule has the id {rule_id}")
    return row


def create_rule(
    conn: psycopg.Connection, actor: str, spec: Any, channels: Collection[str] | None = None
) -> dict[str, Any]:
    """Check and store a new rule; `channels` (the configured ones), when given, must hold
    the rule's channel."""
    clean = rules.check_rule(spec)
    values = {"conditions": {}, "delay_s": 0, "enabled": True, **clean}
    _require_channel(values["channel"], channels)
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        _require_template(cur, values["template"], values["channel"])
        try:
            row = cur.execute(
                "INSERT INTO notify.rules (name, trigger, conditions, template, channel,"
                " purpose, delay_s, enabled, created_by, updated_by) VALUES (%(name)s,"
                " %(trigger)s, %(conditions)s, %(template)s, %(channel)s, %(purpose)s,"
                " %(delay_s)s, %(enabled)s, %(actor)s, %(actor)s) RETURNING *",
                {**values, "conditions": Jsonb(values["conditions"]), "actor": actor},
            ).fetchone()
        except psycopg.errors.UniqueViolation:
            raise _name_taken(values["name"]) from None
        audit.record(
            conn, actor=actor, action="notification_rule.create", target=_target(row), after=row
        )
    assert row is not None
    return row


def update_rule(
    conn: psycopg.Connection,
    actor: str,
    rule_id: int,
    spec: Any,
    channels: Collection[str] | None = None,
) -> dict[str, Any]:
    """Change some of a rule's fields; the whole result is checked as a new rule would be."""
    if not isinstance(spec, dict) or not spec:
        raise InputError("invalid_rule", "send the rule fields to change as a JSON object")
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        before = get_rule(conn, rule_id)
        kept = {key: before[key] for key in rules.RULE_KEYS}
        if "trigger" in spec and "conditions" not in spec:
            kept["conditions"] = {}  # another trigger's conditions mean nothing to this one
        clean = rules.check_rule({**kept, **spec})
        if "channel" in spec:
            _require_channel(clean["channel"], channels)
        _require_template(cur, clean["template"], clean["channel"])
        try:
            after = cur.execute(
                "UPDATE notify.rules SET name = %(name)s, trigger = %(trigger)s,"
                " conditions = %(conditions)s, template = %(template)s, channel = %(channel)s,"
                " purpose = %(purpose)s, delay_s = %(delay_s)s, enabled = %(enabled)s,"
                " updated_by = %(actor)s, updated_at = now() WHERE rule_id = %(rule_id)s"
                " RETURNING *",
                {
                    **clean,
                    "conditions": Jsonb(clean["conditions"]),
                    "actor": actor,
                    "rule_id": rule_id,
                },
            ).fetchone()
        except psycopg.errors.UniqueViolation:
            raise _name_taken(clean["name"]) from None
        audit.record(
            conn,
            actor=actor,
            action="notification_rule.update",
            target=_target(before),
            before=before,
            after=after,
        )
    assert after is not None
    return after


def delete_rule(conn: psycopg.Connection, actor: str, rule_id: int) -> None:
    """Retire a rule: it plans nothing more and its due sends are suppressed; the sends it made
    stay on record."""
    with conn.transaction():
        before = get_rule(conn, rule_id)
        conn.execute(
            "UPDATE notify.rules SET deleted_at = now(), enabled = false, updated_by = %s,"
            " updated_at = now() WHERE rule_id = %s",
            (actor, rule_id),
        )
        audit.record(
            conn,
            actor=actor,
            action="notification_rule.delete",
            target=_target(before),
            before=before,
        )


def save_template(conn: psycopg.Connection, actor: str, spec: Any) -> dict[str, Any]:
    """Store a template as its next version (checked and sandbox-tested first)."""
    row = templates.save_template(conn, actor, spec)
    audit.record(
        conn,
        actor=actor,
        action="notification_template.save",
        target=f"template:{row['name']}/{row['channel']}/{row['language']}",
        after=row,
    )
    return row


def template_versions(conn: psycopg.Connection, name: str) -> list[dict[str, Any]]:
    """Every version of a template; NotFound when it has none."""
    found = templates.list_templates(conn, name)
    if not found:
        raise NotFound("unknown_template", f"no template is named {name!r}")
    return found


def delete_template(conn: psycopg.Connection, actor: str, name: str) -> None:
    """Delete every version of a template no live rule uses and no send was made with."""
    with conn.transaction():
        template_versions(conn, name)
        used = conn.execute(
            "SELECT name FROM notify.rules WHERE template = %s AND deleted_at IS NULL", (name,)
        ).fetchall()
        if used:
            rule_names = ", ".join(row[0] for row in used)
            raise Conflict(
                "template_in_use", f"the rules {rule_names} use {name!r}: change or delete them"
            )
        sent = conn.execute(
            "SELECT 1 FROM notify.sends s JOIN notify.templates t USING (template_id)"
            " WHERE t.name = %s LIMIT 1",
            (name,),
        ).fetchone()
        if sent:
            raise Conflict(
                "template_sent",
                f"messages were sent with {name!r} and point at it; save a new version instead",
            )
        conn.execute("DELETE FROM notify.templates WHERE name = %s", (name,))
        audit.record(conn, actor=actor, action="notification_template.delete", target=name)


def test_send(runtime: Runtime, actor: str, spec: Any, enqueue: Any = None) -> dict[str, Any]:
    """Render a template for one address (with a profile's data when `profile_id` is given,
    else sample data) and hand it to the outbox at once. Policy does not apply: the operator
    chose the address, but an address that unsubscribed from test messages (the link in a
    test message) is refused. Recorded as a send with trigger 'test'."""
    data = _test_spec(spec)
    _require_channel(data["channel"], configured_channels(runtime))
    _check_address(runtime, data["channel"], data["to"])
    now = datetime.now(UTC)
    with runtime.pool.connection() as conn, conn.transaction():
        profile = _profile(conn, data.get("profile_id"))
        _require_subscribed(conn, data, profile)
        template = templates.current_template(
            conn, data["template"], data["channel"], data.get("language")
        )
        if template is None:
            raise NotFound(
                "unknown_template",
                f"no template {data['template']!r} for the channel {data['channel']!r}",
            )
        row = conn.execute(
            "INSERT INTO notify.sends (profile_id, trigger, trigger_key, channel, purpose,"
            " address, template_id, state, scheduled_at, facts)"
            " VALUES (%s, 'test', %s, %s, 'test', %s, %s, 'scheduled', %s, %s) RETURNING send_id",
            (
                profile["profile_id"] if profile else None,
                f"test:{uuid.uuid4()}",
                data["channel"],
                data["to"],
                template["template_id"],
                now,
                Jsonb({"trigger": "test", "by": actor}),
            ),
        ).fetchone()
        assert row is not None
        send = {"send_id": row[0], "channel": data["channel"], "purpose": "test"}
        send |= {"address": data["to"], "facts": {"trigger": "test"}}
        try:
            message = scheduler.message_for(
                runtime, conn, send, template, profile, "test", sample=True
            )
        except Exception as exc:  # the template failed on this profile's data: say so
            raise InputError("template_failed", f"the template failed to render: {exc}") from None
        delivery_id = (enqueue or scheduler.outbox_enqueue)(runtime, message, now=now)
        conn.execute(
            "UPDATE notify.sends SET state = 'enqueued', delivery_id = %s, enqueued_at = %s"
            " WHERE send_id = %s",
            (delivery_id, now, send["send_id"]),
        )
    return {
        "send_id": send["send_id"],
        "delivery_id": delivery_id,
        "subject": message.subject,
        "text": message.text,
    }


def list_sends(conn: psycopg.Connection, filters: dict[str, Any], limit: int, offset: int) -> Any:
    """A page of sends, newest first, each with its delivery's status; counts by state and
    channel, and suppressions by reason, over every send the filters match."""
    where, params = _send_filters(filters)
    with conn.cursor(row_factory=dict_row) as cur:
        page = cur.execute(
            "SELECT s.send_id, s.rule_id, r.name AS rule, s.profile_id, s.trigger,"
            " s.trigger_key, s.channel, s.purpose, s.address, s.state, s.reason,"
            " s.scheduled_at, s.enqueued_at, s.opened_at, s.delivery_id, s.created_at,"
            " coalesce(d.status, s.state) AS outcome, d.status AS delivery_status,"
            " d.attempts AS delivery_attempts,"
            " d.last_error AS delivery_error"
            " FROM notify.sends s LEFT JOIN notify.rules r USING (rule_id)"
            " LEFT JOIN channels.deliveries d ON d.delivery_id = s.delivery_id"
            f" WHERE {where} ORDER BY s.send_id DESC LIMIT %(limit)s OFFSET %(offset)s",
            {**params, "limit": min(limit, MAX_PAGE), "offset": offset},
        ).fetchall()
        counts = cur.execute(
            "SELECT s.state, s.channel, s.reason, d.status AS delivery_status,"
            " count(*) AS n, count(s.opened_at) AS opened"
            " FROM notify.sends s LEFT JOIN channels.deliveries d"
            " ON d.delivery_id = s.delivery_id"
            f" WHERE {where} GROUP BY 1, 2, 3, 4",
            params,
        ).fetchall()
    return {"sends": page, "columns": SEND_COLUMNS, **summarise(counts)}


def summarise(counts: list[dict[str, Any]]) -> dict[str, Any]:
    """Totals by state, by channel, by delivery outcome and by suppression reason."""
    by_state: dict[str, int] = {}
    by_channel: dict[str, dict[str, int]] = {}
    outcomes: dict[str, int] = {}
    reasons: dict[str, int] = {}
    opened = 0
    for row in counts:
        n = row["n"]
        by_state[row["state"]] = by_state.get(row["state"], 0) + n
        channel = by_channel.setdefault(row["channel"], {})
        channel[row["state"]] = channel.get(row["state"], 0) + n
        if row["delivery_status"]:
            outcomes[row["delivery_status"]] = outcomes.get(row["delivery_status"], 0) + n
        if row["state"] == "suppressed":
            reason = _reason_kind(row["reason"])
            reasons[reason] = reasons.get(reason, 0) + n
        opened += row["opened"]
    return {
        "total": sum(by_state.values()),
        "by_state": by_state,
        "by_channel": by_channel,
        "deliveries": outcomes,
        "suppressed_by_reason": reasons,
        "opened": opened,
    }


def check_send_filters(params: Any) -> tuple[dict[str, Any], int, int]:
    """The sends list's query parameters, checked."""
    allowed = (*_SEND_FILTERS, "limit", "offset")
    unknown = sorted(set(params.keys()) - set(allowed))
    if unknown:
        raise InputError(
            "unknown_parameter",
            f"unknown query parameter {', '.join(unknown)}; use {', '.join(allowed)}",
        )
    filters = {key: params.get(key) for key in _SEND_FILTERS if params.get(key)}
    if "state" in filters and filters["state"] not in SEND_STATES:
        raise InputError("invalid_state", f"state must be one of {', '.join(SEND_STATES)}")
    if "rule_id" in filters and not str(filters["rule_id"]).isdigit():
        raise InputError("invalid_rule_id", "rule_id must be a whole number")
    if "profile_id" in filters and not _is_uuid(str(filters["profile_id"])):
        raise InputError("invalid_profile_id", "profile_id must be a profile's id (a UUID)")
    limit = _whole(params.get("limit", 50), "limit", 1, MAX_PAGE)
    offset = _whole(params.get("offset", 0), "offset", 0, 10**9)
    return filters, limit, offset


def _send_filters(filters: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    clauses = ["true"]
    for key in _SEND_FILTERS:
        if key in filters:
            clauses.append(f"s.{key} = %({key})s")
    params = dict(filters)
    if "rule_id" in params:
        params["rule_id"] = int(params["rule_id"])
    return " AND ".join(clauses), params


def _reason_kind(reason: str | None) -> str:
    """A reason without its detail ('template_error: ...' counts as template_error)."""
    return (reason or "unknown").split(":", 1)[0]


def _test_spec(spec: Any) -> dict[str, Any]:
    allowed = ("template", "channel", "to", "language", "profile_id")
    if not isinstance(spec, dict):
        raise InputError("invalid_body", f"send a JSON object with {', '.join(allowed)}")
    unknown = sorted(set(spec) - set(allowed))
    if unknown:
        raise InputError("unknown_field", f"unknown field {', '.join(unknown)}")
    for key in ("template", "channel", "to"):
        if not isinstance(spec.get(key), str) or not spec[key].strip():
            raise InputError("missing_key", f"a test send needs {key} (text)")
    if spec.get("profile_id") is not None and not _is_uuid(str(spec["profile_id"])):
        raise InputError("invalid_profile_id", "profile_id must be a profile's id (a UUID)")
    return {**spec, "to": spec["to"].strip()}


def _profile(conn: psycopg.Connection, profile_id: str | None) -> dict[str, Any] | None:
    if profile_id is None:
        return None
    docs = load_documents(conn, [profile_id])
    if not docs:
        raise NotFound("unknown_profile", f"no profile has the id {profile_id}")
    return docs[0]


def configured_channels(runtime: Runtime) -> list[str]:
    """The names of the channels this c360 has configured."""
    from c360.channels.registry import channels_for  # channels load only when asked

    return sorted(channels_for(runtime.settings))


def _require_channel(channel: str, channels: Collection[str] | None) -> None:
    if channels is not None and channel not in channels:
        raise InputError(
            "unknown_channel",
            f"no channel named {channel!r} is configured; configured: "
            f"{', '.join(sorted(channels)) or 'none'}",
        )


def _check_address(runtime: Runtime, channel: str, address: str) -> None:
    """Refuse an address the channel could never deliver to, where its form can be told."""
    if channel == "email" and not _EMAIL.match(address):
        raise InputError(
            "invalid_address", f"{address[:80]!r} is not an e-mail address such as ops@example.com"
        )
    if channel == "sms" and not _E164.match(address):
        raise InputError(
            "invalid_address",
            f"{address[:80]!r} is not a phone number in E.164 form, such as +84901234567",
        )
    if channel == "webchat":
        from c360.plugins.channel_webchat import visitor_key  # only for web-chat sends

        if not runtime.valkey.exists(visitor_key(address)):
            raise InputError(
                "invalid_address",
                f"no web-chat conversation {address[:80]!r} is open (it ended, expired or "
                "never existed): use the id (wc_...) of a conversation open now",
            )


def _require_subscribed(
    conn: psycopg.Connection, data: dict[str, Any], profile: dict[str, Any] | None
) -> None:
    allowed = preferences.allows(
        conn,
        channel=data["channel"],
        purpose="test",
        profile_id=profile["profile_id"] if profile else None,
        address=data["to"],
    )
    if not allowed:
        raise Conflict(
            "unsubscribed",
            f"{data['to'][:80]!r} unsubscribed from messages by {data['channel']} (test ones "
            "included): "
            "nothing was sent; send the test to another address",
        )


def _require_template(cur: psycopg.Cursor, name: str, channel: str) -> None:
    row = cur.execute(
        "SELECT 1 FROM notify.templates WHERE name = %s AND channel = %s LIMIT 1", (name, channel)
    ).fetchone()
    if row is None:
        raise InputError(
            "unknown_template",
            f"no template {name!r} for the channel {channel!r}: save it first "
            "(POST /v1/notifications/templates)",
        )


def _name_taken(name: str) -> Conflict:
    return Conflict("name_taken", f"a rule is already named {name!r}: choose another name")


def _target(row: dict[str, Any] | None) -> str:
    return f"notification_rule:{row['name']}" if row else "notification_rule"


def _whole(value: Any, key: str, low: int, high: int) -> int:
    text = str(value).strip()
    if not text.isdigit() or not low <= int(text) <= high:
        raise InputError("invalid_page", f"{key} must be a whole number from {low} to {high}")
    return int(text)


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
