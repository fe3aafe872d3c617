"""What customers send us: each inbound message is recorded once (`channels.inbound`, keyed by
channel and the provider's id, so a redelivered webhook is answered once), handed to a
responder (the agent, c360.agents.service.converse, by default), and its replies sent
through the outbox (c360.channels.delivery.send_now).

Webhooks answer the provider at once: `record` in the request, `handle_in_background` after
the answer. A message whose process died before it was answered is answered by a worker's
`handle_stale` once its lease (a minute) runs out, at most MAX_ATTEMPTS times. A responder
that keys its replies with `reply_key` sends each reply once however often it runs.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio.to_thread
from psycopg.types.json import Jsonb

from c360.channels.base import InboundMessage, OutboundMessage
from c360.channels.delivery import send_now
from c360.errors import InputError
from c360.runtime import Runtime
from c360.settings import Settings

log = logging.getLogger(__name__)

#: A responder: the replies to one inbound message (possibly none).
Responder = Callable[[Runtime, InboundMessage], list[OutboundMessage]]

#: A message not answered this long after it arrived (or after a worker took it up) is taken
#: up by a worker: the process that received it has died or is stuck.
LEASE = timedelta(minutes=1)

#: A message whose responder failed this many times is set aside with its last error, rather
#: than tried forever.
MAX_ATTEMPTS = 3

#: Most stale messages one `handle_stale` call answers; the rest wait for the next pass.
MAX_PER_PASS = 20


class SignatureRefused(InputError):
    """A webhook's signature is missing or wrong: it did not come from the provider."""

    status_code = 403


def public_url(settings: Settings, path: str) -> str:
    """The address a provider reaches `path` at: `public_url`, or http://host:port."""
    base = settings.public_url or f"http://{settings.host}:{settings.port}"
    return base.rstrip("/") + path


def reply_key(message: InboundMessage, number: int = 0) -> str:
    """The idempotency key of the `number`th reply to `message`: the same on every run."""
    return f"reply:{message.channel}:{message.external_id}:{number}"


def receive(
    runtime: Runtime, message: InboundMessage, responder: Responder | None = None
) -> list[int]:
    """Record `message` and answer it now; the reply deliveries' ids. A message received
    before (same channel and external id) does nothing and returns []."""
    inbound_id = record(runtime, message)
    if inbound_id is None:
        return []
    return handle(runtime, inbound_id, message, responder)


def record(
    runtime: Runtime,
    message: InboundMessage,
    *,
    handled: bool = False,
    now: datetime | None = None,
) -> int | None:
    """Keep `message` once; its id, or None when it was received before. `handled`: it needs
    no answer (a channel dealt with it, e.g. an SMS STOP)."""
    moment = now or _now()
    with runtime.pool.connection() as conn:
        row = conn.execute(
            "INSERT INTO channels.inbound (channel, external_id, sender, message, received_at,"
            " lease_until, attempts, handled_at) VALUES (%s, %s, %s, %s, %s, %s, 1, %s)"
            " ON CONFLICT (channel, external_id) DO NOTHING RETURNING inbound_id",
            (
                message.channel,
                message.external_id,
                message.sender,
                Jsonb(_to_json(message)),
                message.received_at,
                moment + LEASE,
                moment if handled else None,
            ),
        ).fetchone()
    if row is None:
        log.info("Message %r on %s was received before.", message.external_id, message.channel)
        return None
    return int(row[0])


def handle(
    runtime: Runtime,
    inbound_id: int,
    message: InboundMessage,
    responder: Responder | None = None,
) -> list[int]:
    """Ask the responder for replies, send each, and mark the message answered; the reply
    deliveries' ids. A failing responder (or send) leaves the message for `handle_stale`."""
    try:
        replies = (responder or default_responder)(runtime, message)
        sent = [send_now(runtime, reply).delivery_id for reply in replies]
    except _NoResponder as exc:
        log.warning("Message %r on %s is not answered: %s.", inbound_id, message.channel, exc)
        mark_handled(runtime, inbound_id, error=str(exc))
        return []
    except Exception as exc:  # left for handle_stale, which tries again after the lease
        log.exception("Answering message %r on %s failed.", inbound_id, message.channel)
        _note_error(runtime, inbound_id, f"answering failed: {exc!r}")
        return []
    mark_handled(runtime, inbound_id, sent)
    return sent


async def handle_in_background(runtime: Runtime, inbound_id: int, message: InboundMessage) -> None:
    """`handle` off the event loop, for a webhook's BackgroundTask (after its answer)."""
    await anyio.to_thread.run_sync(handle, runtime, inbound_id, message)


def mark_handled(
    runtime: Runtime, inbound_id: int, replies: list[int] | None = None, error: str | None = None
) -> None:
    """Mark a message answered (or set aside, with `error`), with its replies' delivery ids."""
    with runtime.pool.connection() as conn:
        conn.execute(
            "UPDATE channels.inbound SET handled_at = %s, replies = %s,"
            " last_error = coalesce(%s, last_error) WHERE inbound_id = %s",
            (_now(), replies or [], error, inbound_id),
        )


def handle_stale(
    runtime: Runtime,
    responder: Responder | None = None,
    *,
    now: datetime | None = None,
    limit: int = MAX_PER_PASS,
) -> int:
    """Answer messages nobody answered within their lease (their process died); how many
    were taken up. One that has failed MAX_ATTEMPTS times is set aside with its error."""
    taken = 0
    while taken < limit:
        claimed = _claim_stale(runtime, now or _now())
        if claimed is None:
            break
        taken += 1
        inbound_id, payload, attempts, last_error = claimed
        if attempts > MAX_ATTEMPTS:
            log.error("Message %r was not answered in %d attempts.", inbound_id, MAX_ATTEMPTS)
            mark_handled(runtime, inbound_id, error=f"gave up: {last_error or 'no answer'}")
            continue
        handle(runtime, inbound_id, message_of(payload), responder)
    return taken


def message_of(payload: dict[str, Any]) -> InboundMessage:
    """The InboundMessage a row's JSON holds."""
    fields = {field.name for field in dataclasses.fields(InboundMessage)}
    values = {key: value for key, value in payload.items() if key in fields}
    values["received_at"] = datetime.fromisoformat(values["received_at"])
    values["identifiers"] = tuple(tuple(pair) for pair in values.get("identifiers", ()))
    return InboundMessage(**values)


def default_responder(runtime: Runtime, message: InboundMessage) -> list[OutboundMessage]:
    """The agent's answer (c360.agents.service.converse), imported when first needed."""
    try:
        from c360.agents import service
    except ImportError as exc:
        raise _NoResponder("no agent is installed (c360.agents.service is missing)") from exc
    return list(service.converse(runtime, message))


class _NoResponder(Exception):
    """Nothing can answer inbound messages in this installation."""


def _claim_stale(runtime: Runtime, moment: datetime) -> tuple[int, Any, int, str | None] | None:
    with runtime.pool.connection() as conn:
        row = conn.execute(
            "UPDATE channels.inbound SET lease_until = %s, attempts = attempts + 1"
            " WHERE inbound_id = (SELECT inbound_id FROM channels.inbound"
            " WHERE handled_at IS NULL AND lease_until <= %s ORDER BY lease_until LIMIT 1"
            " FOR UPDATE SKIP LOCKED) RETURNING inbound_id, message, attempts, last_error",
            (moment + LEASE, moment),
        ).fetchone()
    return None if row is None else (row[0], row[1], row[2], row[3])


def _note_error(runtime: Runtime, inbound_id: int, error: str) -> None:
    with runtime.pool.connection() as conn:
        conn.execute(
            "UPDATE channels.inbound SET last_error = %s WHERE inbound_id = %s",
            (error, inbound_id),
        )


def _to_json(message: InboundMessage) -> dict[str, Any]:
    data = dataclasses.asdict(message)
    data["received_at"] = message.received_at.isoformat()
    return data


def _now() -> datetime:
    return datetime.now(UTC)
