"""What the F4 notification tests share: events sent through F1 -> F2 -> F3 and the
notifications stage (as the worker's pump feeds it), a clock the tests move by hand, a
runtime whose email channel talks to a local SMTP server, and rules and templates made
through the service the API uses."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from c360.adapters.bus import ID_RESOLUTION, UPDATED_PROFILES
from c360.channels import delivery
from c360.events.f1 import IngestContext, ParsedRequest, ingest
from c360.events.model import encode
from c360.notifications import scheduler, service
from c360.profile_service import get_profile
from c360.runtime import Runtime
from c360.settings import Settings
from c360.stages import f2_persist, f3_resolve, notifications_stage
from c360.stages.notifications_stage import NOTIFICATIONS_GROUP

ACTOR = "user:tester"
SECRET = "test-engage-secret"
_IDS = itertools.count(1)


class Clock:
    """Now, as the test says: the stage and the scheduler read it instead of the wall clock."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


def email_settings(settings: Settings, smtp_port: int, **changes: Any) -> Settings:
    """Settings whose email channel sends to the local SMTP peer (plain SMTP: STARTTLS has its
    own tests in the channel's suite), with a fixed link key and public address."""
    import dataclasses

    base = {
        "smtp_host": "127.0.0.1",
        "smtp_port": smtp_port,
        "smtp_starttls": False,
        "smtp_from": "shop@example.com",
        "engage_secret": SECRET,
        "public_url": "https://c360.example.com",
        "quiet_hours": "",
    }
    return dataclasses.replace(settings, **{**base, **changes})


def event_time(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def order(user: str, revenue: str, at: datetime, **consent: bool) -> dict[str, Any]:
    """An Order Completed event, with consent choices when given."""
    return _track(user, "Order Completed", at, {"revenue": Decimal(revenue)}, consent)


def cart(user: str, at: datetime) -> dict[str, Any]:
    """A Product Added event."""
    return _track(user, "Product Added", at, {"product_id": "p-1"}, {})


def identify(user: str, at: datetime, consent: dict[str, bool] | None = None, **traits: Any):
    """An identify event with traits (email, timezone, name...) and consent choices."""
    event: dict[str, Any] = {
        "type": "identify",
        "userId": user,
        "messageId": f"n-{next(_IDS)}",
        "timestamp": event_time(at),
        "traits": traits,
    }
    if consent:
        event["context"] = {"consent": {"categoryPreferences": consent}}
    return event


def feed(runtime: Runtime, clock: Clock, *events: dict[str, Any]) -> list[list[bytes]]:
    """Events through F1, F2 and F3, then the notifications stage at the clock's time;
    returns the batches the stage was given (to redeliver them)."""
    ctx = IngestContext(source="web", received_at=clock.now)
    result = ingest(
        ParsedRequest(events=[encode(e) for e in events]), ctx, runtime.settings, runtime.hooks
    )
    assert not result.rejected, result.rejected
    f2_persist.persist(runtime, [encode(event) for event in result.accepted])
    _drain(runtime, ID_RESOLUTION, "f3", f3_resolve.resolve)
    return _drain(
        runtime,
        UPDATED_PROFILES,
        NOTIFICATIONS_GROUP,
        lambda rt, payloads: notifications_stage.plan(rt, payloads, clock),
    )


def template(runtime: Runtime, name: str = "welcome", **spec: Any) -> dict[str, Any]:
    """Save an email template (a subject, a text body, an HTML body unless given)."""
    fields = {
        "name": name,
        "channel": "email",
        "subject": "Thanks, {{ profile.traits.name }}",
        "body": "Hello {{ profile.traits.name }}, thanks for your order.",
        "html": "<p>Hello {{ profile.traits.name }}</p>",
        **spec,
    }
    with runtime.pool.connection() as conn:
        return service.save_template(conn, ACTOR, fields)


def rule(runtime: Runtime, name: str = "first", **spec: Any) -> dict[str, Any]:
    """Save a rule (first purchase, email, purpose marketing unless given)."""
    fields = {
        "name": name,
        "trigger": "first_purchase",
        "template": "welcome",
        "channel": "email",
        "purpose": "marketing",
        **spec,
    }
    with runtime.pool.connection() as conn:
        return service.create_rule(conn, ACTOR, fields)


def sends(runtime: Runtime) -> list[dict[str, Any]]:
    """Every send row, oldest first."""
    from psycopg.rows import dict_row

    with runtime.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT * FROM notify.sends ORDER BY send_id").fetchall()


def run_scheduler(runtime: Runtime, clock: Clock) -> int:
    """One scheduler pass at the clock's time, then one outbox pass (the sender thread's)."""
    decided = scheduler.run_due(runtime, clock.now)
    delivery.run_due(runtime, now=clock.now)
    return decided


def profile_id(runtime: Runtime, user: str) -> str:
    found = get_profile(runtime, f"user_id:{user}")
    assert found is not None
    return str(found["profile_id"])


def _track(
    user: str, name: str, at: datetime, properties: dict[str, Any], consent: dict[str, bool]
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "track",
        "event": name,
        "userId": user,
        "messageId": f"n-{next(_IDS)}",
        "timestamp": event_time(at),
        "properties": properties,
    }
    if consent:
        event["context"] = {"consent": {"categoryPreferences": consent}}
    return event


def _drain(runtime: Runtime, topic: str, group: str, stage: Any) -> list[list[bytes]]:
    batches = []
    while deliveries := runtime.bus.consume(topic, group, "test", count=50, block_ms=10):
        for entry in deliveries:
            stage(runtime, entry.payloads)
            batches.append(entry.payloads)
        runtime.bus.ack(group, deliveries)
    return batches
