"""Dramatiq actors for the stages. Import this module only after `dramatiq.set_broker()`:
actors bind to the broker that is current when they are declared. `bind()` gives them their
runtime. Payloads travel as text (JSON lines), since Dramatiq messages are JSON."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

import dramatiq
import psycopg
import redis

from c360.adapters.bus import DLQ, RAW_EVENTS
from c360.errors import AdapterError
from c360.events.f1 import IngestContext, ParsedRequest, ingest
from c360.events.model import encode
from c360.governance.keyring import PlanCache
from c360.governance.tracking_plans import count_hits
from c360.runtime import Runtime
from c360.stages import (
    agents_stage,
    f2_persist,
    f3_resolve,
    lake_sink,
    notifications_stage,
    segments_stage,
)

log = logging.getLogger(__name__)

_RUNTIME: Runtime | None = None
_PLANS: PlanCache | None = None

#: Retries back off up to a minute; a batch still failing then goes to Dramatiq's dead letters.
RETRIES = dict(max_retries=20, min_backoff=200, max_backoff=60_000)


def bind(runtime: Runtime) -> None:
    """Give the actors of this process their runtime."""
    global _RUNTIME, _PLANS
    _RUNTIME = runtime
    _PLANS = PlanCache(runtime)


def _runtime() -> Runtime:
    if _RUNTIME is None:
        raise RuntimeError("c360.stages.actors.bind(runtime) was not called in this process")
    return _RUNTIME


#: Failures that say nothing about the batch itself (a server away, a lost connection): the
#: whole batch is retried later. Any other failure may come from one bad event in the batch.
TRANSIENT = (psycopg.OperationalError, redis.ConnectionError, redis.TimeoutError, AdapterError)


def isolate_failures(
    stage: Callable[[Runtime, list[bytes]], object],
    retry_halves: Callable[[list[str]], object],
    payloads: list[str],
) -> None:
    """Run a stage on a batch; if the batch itself fails, hand on its halves as new messages,
    so one bad event ends alone in the dead letters instead of taking its batch with it."""
    try:
        stage(_runtime(), [p.encode() for p in payloads])
    except TRANSIENT:
        raise
    except Exception:
        if len(payloads) == 1:
            raise
        middle = len(payloads) // 2
        log.warning(
            "A batch of %d failed; retrying its halves apart.", len(payloads), exc_info=True
        )
        retry_halves(payloads[:middle])
        retry_halves(payloads[middle:])


@dramatiq.actor(queue_name="c360-f2", **RETRIES)
def persist_events(payloads: list[str]) -> None:
    """F2 over a batch of enriched events."""
    isolate_failures(f2_persist.persist, persist_events.send, payloads)


@dramatiq.actor(queue_name="c360-f3", **RETRIES)
def resolve_events(payloads: list[str]) -> None:
    """F3 over a batch of (source, messageId) references."""
    isolate_failures(f3_resolve.resolve, resolve_events.send, payloads)


@dramatiq.actor(queue_name="c360-segments", **RETRIES)
def refresh_segments(payloads: list[str]) -> None:
    """Saved segments' members for a batch of updated profile documents."""
    isolate_failures(segments_stage.refresh, refresh_segments.send, payloads)


@dramatiq.actor(queue_name="c360-notifications", **RETRIES)
def plan_notifications(payloads: list[str]) -> None:
    """Notification sends planned from a batch of updated profile documents."""
    isolate_failures(notifications_stage.plan, plan_notifications.send, payloads)


@dramatiq.actor(queue_name="c360-agents", **RETRIES)
def refresh_agents(payloads: list[str]) -> None:
    """Open conversations' context snapshots for a batch of updated profile documents."""
    isolate_failures(agents_stage.refresh, refresh_agents.send, payloads)


@dramatiq.actor(queue_name="c360-lake", **RETRIES)
def sink_events(batch_name: str, payloads: list[str]) -> None:
    """The lake sink over a batch of enriched events."""
    lake_sink.sink(_runtime(), batch_name, [p.encode() for p in payloads])


@dramatiq.actor(queue_name="c360-f1", **RETRIES)
def ingest_events(source: str, received_at: str, events: list[str]) -> None:
    """F1 for events from connectors (not HTTP): validate, enrich, publish like the gateway."""
    runtime = _runtime()
    ctx = IngestContext(source=source, received_at=datetime.fromisoformat(received_at))
    # connectors' events follow the source's tracking plans, as the gateway's do
    check = _PLANS.checker(source) if _PLANS is not None else None
    result = ingest(
        ParsedRequest(events=[e.encode() for e in events]),
        ctx,
        runtime.settings,
        runtime.hooks,
        check,
    )
    runtime.bus.publish(RAW_EVENTS, [(e.customer_key, encode(e)) for e in result.accepted])
    runtime.bus.publish(DLQ, [(r.source, encode(r)) for r in result.rejected])
    if check is not None:
        count_hits(runtime.valkey, check.hits)
