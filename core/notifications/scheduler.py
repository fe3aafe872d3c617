"""The notification scheduler: a thread in each worker process that takes due sends, checks
them again (the trigger still holds, the customer has not unsubscribed since it was planned,
consent, quiet hours, caps, throttle), renders the template and hands the message to the
channels' outbox with the idempotency key `notify:<send_id>`.

A due send is claimed with FOR UPDATE SKIP LOCKED, so two workers never handle one; its new
state is committed after the outbox has the message. A worker killed in between leaves the
send due, and the next pass hands it over again under the same key: the outbox keeps one.
Everything lives in PostgreSQL, so planned sends survive restarts. Touches notify.sends,
reads profiles and notify.*, writes channels.deliveries through c360.channels.delivery.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
import redis
from jinja2 import TemplateError
from psycopg.rows import dict_row

from c360.channels.base import OutboundMessage
from c360.errors import C360Error
from c360.notifications import policy, preferences, rules, templates
from c360.periodic import PeriodicTask
from c360.runtime import Runtime
from c360.stages.f3_resolve import load_documents

log = logging.getLogger(__name__)

#: How often the scheduler looks for due sends: a send goes out within about a second of
#: its time, for one indexed query a second.
INTERVAL_S = 1.0
#: Most sends one pass takes; the rest wait for the next pass (a few ms later when busy).
BATCH = 100

#: Where each channel finds a customer's address: identifier types first (normalised by F3),
#: then traits as the sources sent them.
ADDRESS_SOURCES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "email": (("email",), ("email",)),
    "sms": (("phone",), ("phone", "phoneNumber", "phone_number")),
    "zalo": (("zalo_id",), ("zalo_id", "zaloId")),
    "push": (("device_token", "push_token"), ("push_token", "device_token")),
}
#: Language traits, for choosing the template's language.
LANGUAGE_TRAITS = ("language", "lang", "locale")

Enqueue = Callable[..., int]


class NotificationScheduler(PeriodicTask):
    """Hand due sends to the outbox every `interval_s` seconds until `stop()`."""

    def __init__(
        self,
        runtime: Runtime,
        interval_s: float = INTERVAL_S,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        super().__init__("notification-scheduler", interval_s)
        self._runtime = runtime
        self._clock = clock or _now

    def tick(self) -> None:
        """Every send due now; a store that cannot be reached is tried again next pass."""
        try:
            while run_due(self._runtime, self._clock()) == BATCH:
                pass  # a full pass: more may be due at once
        except (psycopg.Error, redis.RedisError, OSError) as exc:
            log.warning("Could not hand due notifications over: %s; trying again.", exc)


def run_due(runtime: Runtime, now: datetime, enqueue: Enqueue | None = None) -> int:
    """Decide every send due at `now` (up to BATCH); returns how many were decided."""
    enqueue = enqueue or outbox_enqueue
    with runtime.pool.connection() as conn, conn.transaction():
        with conn.cursor(row_factory=dict_row) as cur:
            due = cur.execute(
                "SELECT * FROM notify.sends WHERE state IN ('scheduled', 'held')"
                " AND scheduled_at <= %s ORDER BY scheduled_at, send_id LIMIT %s"
                " FOR UPDATE SKIP LOCKED",
                (now, BATCH),
            ).fetchall()
        for send in due:
            outcome = _decide(runtime, conn, send, now, enqueue)
            _write(conn, send["send_id"], outcome, now)
    return len(due)


def address_for(channel: str, profile: dict[str, Any]) -> str | None:
    """The customer's address on a channel, from the profile; None when it has none."""
    if channel == "webhook":
        return str(profile["profile_id"])
    id_types, trait_names = ADDRESS_SOURCES.get(channel, ((), ()))
    for ident in profile.get("identifiers") or ():
        if ident.get("type") in id_types and ident.get("value"):
            return str(ident["value"])
    traits = profile.get("traits") or {}
    for name in trait_names:
        value = traits.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def language_of(profile: dict[str, Any]) -> str | None:
    """The customer's language ('vi', 'en') from their traits, if any."""
    traits = profile.get("traits") or {}
    for name in LANGUAGE_TRAITS:
        value = traits.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip().replace("_", "-").split("-")[0].lower()
    return None


def context_for(
    profile: dict[str, Any] | None, send: dict[str, Any], rule_name: str, unsubscribe: str
) -> dict[str, Any]:
    """What a template sees: the profile's facts (no identifiers), the trigger's facts, the
    rule's name and the unsubscribe link."""
    shown = {}
    if profile is not None:
        shown = {
            key: profile.get(key)
            for key in (
                "profile_id",
                "traits",
                "attributes",
                "order_count",
                "revenue",
                "first_order_at",
                "last_order_at",
                "rfm",
            )
        }
    return {
        "profile": shown,
        "trigger": dict(send.get("facts") or {}),
        "rule": rule_name,
        "unsubscribe_url": unsubscribe,
    }


def message_for(
    runtime: Runtime,
    conn: psycopg.Connection,
    send: dict[str, Any],
    template: dict[str, Any],
    profile: dict[str, Any] | None,
    rule_name: str,
    *,
    sample: bool = False,
) -> OutboundMessage:
    """The rendered message of a send, with its unsubscribe link (and the open pixel when
    the customer allows tracking); with no profile and `sample`, the template sees the sample
    customer its checks use (a test send). Raises TemplateError for a template failing on the
    data."""
    settings = runtime.settings
    unsubscribe = preferences.unsubscribe_url(settings, send["send_id"])
    context = context_for(profile, send, rule_name, unsubscribe)
    if profile is None and sample:
        context["profile"] = dict(templates.SAMPLE_CONTEXT["profile"])
    rendered = templates.render(template, context)
    metadata = {"unsubscribe_url": unsubscribe, "send_id": str(send["send_id"])}
    if profile is not None and policy.allows_tracking(conn, profile["profile_id"]):
        metadata["open_pixel_url"] = preferences.open_pixel_url(settings, send["send_id"])
    return OutboundMessage(
        channel=send["channel"],
        to=send["address"],
        text=rendered.text,
        idempotency_key=idempotency_key(send["send_id"]),
        purpose=send["purpose"],
        profile_id=str(profile["profile_id"]) if profile else None,
        subject=rendered.subject,
        html=rendered.html,
        metadata=metadata,
    )


def idempotency_key(send_id: int) -> str:
    """The outbox key of a send: the same send is sent at most once."""
    return f"notify:{send_id}"


#: What becomes of a send: the columns to set on its row.
_Outcome = dict[str, Any]


def _decide(
    runtime: Runtime,
    conn: psycopg.Connection,
    send: dict[str, Any],
    now: datetime,
    enqueue: Enqueue,
) -> _Outcome:
    """What becomes of one due send: suppressed, held, or handed to the outbox."""
    rule = _rule(conn, send["rule_id"])
    if rule is None or not rule.enabled:
        return _suppressed("rule_disabled")
    docs = load_documents(conn, [send["profile_id"]])
    if not docs:
        return _suppressed("profile_gone")
    profile = docs[0]
    reason = rules.recheck(conn, send["trigger"], send["facts"], str(profile["profile_id"]))
    if reason:
        return _suppressed(reason)
    address = address_for(send["channel"], profile)
    if address is None:
        return _suppressed("no_address")
    send = {**send, "address": address}
    template = templates.current_template(conn, rule.template, rule.channel, language_of(profile))
    if template is None:
        return _suppressed("no_template")

    decision = policy.decide(conn, runtime.valkey, runtime.settings, send, profile, now)
    if decision.action == "suppress":
        return _suppressed(decision.reason or "policy", address=address)
    if decision.action == "hold":
        return {"state": "held", "reason": decision.reason, "scheduled_at": decision.until}
    return _hand_over(runtime, conn, send, template, profile, rule.name, now, enqueue)


def _hand_over(
    runtime: Runtime,
    conn: psycopg.Connection,
    send: dict[str, Any],
    template: dict[str, Any],
    profile: dict[str, Any],
    rule_name: str,
    now: datetime,
    enqueue: Enqueue,
) -> _Outcome:
    try:
        message = message_for(runtime, conn, send, template, profile, rule_name)
    except (TemplateError, ArithmeticError, TypeError, ValueError, RecursionError) as exc:
        # over the sandbox's limits (templates.TooBig) too: the send fails, the worker goes on
        log.warning("Template %r failed for send %r: %s", template["name"], send["send_id"], exc)
        return _suppressed(f"template_error: {exc}"[:300], address=send["address"])
    try:
        delivery_id = enqueue(runtime, message, now=now)
    except C360Error as exc:  # e.g. the rule's channel is not configured here
        log.warning("Send %r cannot go out: %s", send["send_id"], exc)
        return _suppressed(f"channel_error: {exc}"[:300], address=send["address"])
    return {
        "state": "enqueued",
        "reason": None,
        "address": send["address"],
        "template_id": template["template_id"],
        "delivery_id": delivery_id,
        "enqueued_at": now,
    }


def _write(conn: psycopg.Connection, send_id: int, outcome: _Outcome, now: datetime) -> None:
    columns = {**outcome, "updated_at": now}
    assignments = ", ".join(f"{name} = %({name})s" for name in columns)
    conn.execute(
        f"UPDATE notify.sends SET {assignments} WHERE send_id = %(send_id)s",
        {**columns, "send_id": send_id},
    )


def _suppressed(reason: str, **more: Any) -> _Outcome:
    return {"state": "suppressed", "reason": reason, **more}


def _rule(conn: psycopg.Connection, rule_id: int | None) -> rules.Rule | None:
    if rule_id is None:
        return None
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "SELECT * FROM notify.rules WHERE rule_id = %s AND deleted_at IS NULL", (rule_id,)
        ).fetchone()
    return rules.rule_from_row(row) if row else None


def outbox_enqueue(runtime: Runtime, message: OutboundMessage, *, now: datetime) -> int:
    """Put a message in the channels' outbox (c360.channels.delivery); its delivery id."""
    from c360.channels import delivery  # the outbox and its channels load only when sending

    return delivery.enqueue(runtime, message, now=now)


def _now() -> datetime:
    return datetime.now(UTC)
