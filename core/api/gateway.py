"""The Segment HTTP Tracking API: `POST /v1/{track,identify,page,screen,group,alias,batch}`.

A request is authenticated by its write key (Basic-auth user, or `writeKey` in the body): a key
from settings (C360_WRITE_KEYS), or one stored in PostgreSQL and held in the process's keyring
(`c360.governance.keyring`, never a query per request). It is run through F1 inline, with the
source's tracking plans, and its accepted events published to `c360-raw-events` keyed by customer;
rejected ones go to `c360-dlq` with their reason. A single-event endpoint whose event is
rejected answers 400 `{code, message}`; `/v1/batch` answers 200 with counts, `errors` and
`warnings`, each entry naming its event by `index` (and messageId). A 200 means every accepted
event was written to the bus (Valkey with an append-only file, fsync every second: a process
crash loses nothing, a power cut may lose the last second).
"""

from __future__ import annotations

import base64
import binascii
import logging
from datetime import UTC, datetime
from typing import Any

import redis
from litestar import Request, Response, post
from litestar.datastructures import State

from c360 import counters
from c360.adapters.bus import DLQ, RAW_EVENTS
from c360.errors import InputError, Unauthorized
from c360.events.f1 import IngestContext, IngestResult, ParsedRequest, ingest, parse_request
from c360.events.model import Rejection, encode
from c360.governance.keyring import Keyring, Snapshot
from c360.governance.tracking_plans import Hit, queue_hits

log = logging.getLogger(__name__)

ENDPOINTS = ("track", "identify", "page", "screen", "group", "alias")


async def accept(request: Request, state: State, endpoint_type: str | None) -> Response:
    """Run one Segment request through auth, F1 and the bus."""
    settings = state.settings
    received_at = datetime.now(UTC)
    keyring = _keyring(state)
    keys = RequestKeys(settings.write_keys, await keyring.snapshot(), received_at, keyring)
    source = await _source_from_header(request, keys)
    body = await request.body()
    try:
        parsed = parse_request(body, endpoint_type)
    except InputError as exc:
        if source is not None:
            await _dead_letter_request(state, source, received_at, body, exc)
        raise
    if source is None:
        source = await _source_from_body(parsed, keys)

    ctx = IngestContext(
        source=source,
        received_at=received_at,
        client_ip=request.client.host if request.client else None,
        endpoint_type=endpoint_type,
        batch_sent_at=parsed.sent_at,
        batch_context=parsed.context,
        batch_integrations=parsed.integrations,
    )
    check = keys.snapshot.checker(source)
    result = ingest(parsed, ctx, settings, state.hooks, check)
    await state.bus.publish_many(
        {
            RAW_EVENTS: [(e.customer_key, encode(e)) for e in result.accepted],
            DLQ: [(r.source, encode(r)) for r in result.rejected],
        },
        counters.increments(source, len(result.accepted), len(result.rejected)),
    )
    if check is not None and check.hits:
        await _count_violations(state, check.hits)
    if endpoint_type is not None and result.rejected:
        # the request's only event was refused: say so as an error, not as a 200 success
        (rejection,) = result.rejected
        raise InputError(rejection.code, rejection.reason)
    return Response(_answer(result))


def _answer(result: IngestResult) -> dict[str, Any]:
    """The 200 body: counts, each rejection and each warning, named by position in the batch."""
    return {
        "success": True,
        "accepted": len(result.accepted),
        "rejected": len(result.rejected),
        "errors": [
            {"index": index, "messageId": r.message_id, "code": r.code, "message": r.reason}
            for index, r in zip(result.rejected_at, result.rejected, strict=True)
        ],
        "warnings": [
            {"index": index, "messageId": event.message_id, "message": warning}
            for index, event in zip(result.accepted_at, result.accepted, strict=True)
            for warning in event.warnings
        ],
    }


class RequestKeys:
    """The write keys a request is checked against: settings keys first, then stored ones."""

    def __init__(
        self,
        settings_keys: dict[str, str],
        snapshot: Snapshot,
        now: datetime,
        keyring: Keyring | None = None,
    ) -> None:
        self.settings_keys = settings_keys
        self.snapshot = snapshot
        self.now = now
        self.keyring = keyring

    async def lookup(self, key: str) -> str:
        """`source_for`, after one immediate keyring recheck when the key is not known yet (it
        may have been made a moment ago); Unauthorized when it is still unknown."""
        known = key in self.settings_keys or self.snapshot.source_for(key, self.now)
        if not known and self.keyring is not None:
            self.snapshot = await self.keyring.recheck()
        return self.source_for(key)

    def source_for(self, key: str) -> str:
        """The source of a key that works now; Unauthorized for any other key."""
        source = self.settings_keys.get(key) or self.snapshot.source_for(key, self.now)
        if source is None:
            raise Unauthorized(
                "unknown_write_key",
                "the write key is not known, or was revoked or rotated out: check the source's key",
            )
        return source


def _keyring(state: State) -> Keyring:
    """The process's keyring, made on first use."""
    keyring = state.get("keyring")
    if keyring is None:
        keyring = state["keyring"] = Keyring(state.runtime, state.valkey)
    return keyring


async def _count_violations(state: State, hits: list[Hit]) -> None:
    """Count tracking-plan violations; the events are on the bus already, so a failure to
    count is logged, not answered with an error that would make the client send them again."""
    try:
        async with state.valkey.pipeline(transaction=False) as pipe:
            queue_hits(pipe, hits)
            await pipe.execute()
    except (redis.RedisError, OSError) as exc:
        log.warning("Could not count %d tracking-plan violation(s): %s", len(hits), exc)


async def _source_from_header(request: Request, keys: RequestKeys) -> str | None:
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise Unauthorized(
            "invalid_auth", "the Authorization header is not valid Basic auth"
        ) from exc
    return await keys.lookup(decoded.partition(":")[0])


async def _source_from_body(parsed: ParsedRequest, keys: RequestKeys) -> str:
    if parsed.write_key is None:
        raise Unauthorized(
            "missing_write_key",
            "send the source's write key as the Basic-auth user or as `writeKey` in the body",
        )
    return await keys.lookup(parsed.write_key)


async def _dead_letter_request(
    state: State, source: str, received_at: datetime, body: bytes, exc: InputError
) -> None:
    rejection = Rejection(
        reason=exc.message,
        code=exc.code,
        source=source,
        received_at=received_at,
        payload=body[: 2 * 512 * 1024].decode("utf-8", errors="replace"),
    )
    await state.bus.publish_many(
        {DLQ: [(source, encode(rejection))]}, counters.increments(source, 0, 1)
    )


def make_handlers() -> list[Any]:
    """One POST handler per Segment endpoint, plus `/v1/batch` (and `/v1/import`)."""
    handlers = []
    for endpoint in ENDPOINTS:
        handlers.append(_handler(endpoint, f"/v1/{endpoint}"))
    handlers.append(_handler(None, ["/v1/batch", "/v1/import"]))
    return handlers


def _handler(endpoint_type: str | None, path: str | list[str]) -> Any:
    async def handle(request: Request, state: State) -> Response:
        return await accept(request, state, endpoint_type)

    handle.__name__ = f"segment_{endpoint_type or 'batch'}"
    handle.__doc__ = f"Segment {endpoint_type or 'batch'} endpoint."
    # write keys authenticate the gateway itself, not sessions or API tokens
    return post(path, status_code=200, name=handle.__name__, opt={"public": True})(handle)
