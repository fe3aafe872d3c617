"""JSON endpoints for sources and write keys, tracking plans and their violations, and pipeline
health (stage lag, the dead-letter topic with inspect and replay).

Handlers are async and run the (blocking) service calls in a worker thread themselves:
Litestar 2.25 answers a 500 for a `sync_to_thread` GET that shares its path with another
`sync_to_thread` handler (the handler's coroutine is never awaited).

The service functions behind them (`c360.governance.sources`, `.tracking_plans`, `.pipeline`)
are the UI's service layer too. Every change is audited as the request's principal.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio.to_thread
from litestar import Request, Response, delete, get, post, put
from litestar.datastructures import State

from c360.errors import InputError, Unauthorized
from c360.events.model import encode
from c360.governance import pipeline, sources, tracking_plans

#: Blocking service calls run in a worker thread, off the event loop.
_run = anyio.to_thread.run_sync

#: Days of violations shown when the request names no window.
DEFAULT_VIOLATION_DAYS = 7

#: Actor of a change made with a settings API token before the sign-in guard names one.
_SETTINGS_TOKEN_ACTOR = "token:settings"


@get("/v1/admin/sources", opt={"permission": "governance:read"})
async def list_sources(request: Request, state: State) -> Response[bytes]:
    """Every source with its keys (prefixes and dates, never the keys)."""
    _actor(request, state)
    now = datetime.now(UTC)
    return _json(
        {"sources": [s.as_dict(now) for s in await _run(sources.list_sources, state.runtime)]}
    )


@post("/v1/admin/sources", opt={"permission": "sources:write"})
async def create_source(request: Request, state: State, data: Any = None) -> Response[bytes]:
    """Create a source: `{"name": "shop", "description": "..."}`; answers its first key, shown
    this once."""
    actor = _actor(request, state)
    body = _object(data, {"name", "description"}, '{"name": "shop", "description": "web shop"}')
    made = await _run(
        sources.create_source, state.runtime, body.get("name"), actor, body.get("description")
    )
    return _json(made, status_code=201)


@post(
    "/v1/admin/sources/{name:str}/keys",
    opt={"permission": "sources:write"},
)
async def rotate_key(
    request: Request, state: State, name: str, data: Any = None
) -> Response[bytes]:
    """Rotate a source's key: `{"grace_seconds": 86400}` (optional) keeps the old keys working
    that long; answers the new key, shown this once."""
    actor = _actor(request, state)
    body = _object(data or {}, {"grace_seconds"}, '{"grace_seconds": 86400}')
    grace = body.get("grace_seconds", sources.DEFAULT_GRACE.total_seconds())
    if not isinstance(grace, (int, float)) or isinstance(grace, bool):
        raise InputError("invalid_grace", "grace_seconds is a number of seconds, such as 3600")
    made = await _run(sources.rotate_key, state.runtime, name, actor, timedelta(seconds=grace))
    return _json(made, status_code=201)


@delete(
    "/v1/admin/sources/{name:str}/keys/{key_id:str}",
    status_code=200,
    opt={"permission": "sources:write"},
)
async def revoke_key(request: Request, state: State, name: str, key_id: str) -> Response[bytes]:
    """Revoke one key at once; gateways refuse it within the keyring's version check."""
    actor = _actor(request, state)
    key = await _run(sources.revoke_key, state.runtime, name, key_id, actor)
    return _json(key.as_dict(datetime.now(UTC)))


@get("/v1/admin/tracking-plans", opt={"permission": "governance:read"})
async def list_plans(request: Request, state: State) -> Response[bytes]:
    """The active tracking plans, optionally of one `source`."""
    _actor(request, state)
    source = request.query_params.get("source")
    return _json({"plans": await _run(tracking_plans.list_plans, state.runtime, source)})


@get(
    "/v1/admin/tracking-plans/{source:str}/{event:path}",
    opt={"permission": "governance:read"},
)
async def read_plan(request: Request, state: State, source: str, event: Path) -> Response[bytes]:
    """One plan: every version, newest first, and its recent violations."""
    _actor(request, state)
    name = str(event).removeprefix("/")
    versions = await _run(tracking_plans.plan_history, state.runtime, source, name)
    samples = await _run(tracking_plans.violation_samples, state.runtime, source, name)
    active = next((plan for plan in versions if plan.active), None)
    return _json({"plan": active, "versions": versions, "recent_violations": samples})


@put(
    "/v1/admin/tracking-plans/{source:str}/{event:path}",
    opt={"permission": "governance:write"},
)
async def save_plan(
    request: Request, state: State, source: str, event: Path, data: Any = None
) -> Response[bytes]:
    """Save a new version: `{"schema": {...}, "action": "flag" | "dlq", "active": true}`."""
    actor = _actor(request, state)
    body = _object(
        data, {"schema", "action", "active"}, '{"schema": {"type": "object"}, "action": "flag"}'
    )
    if "schema" not in body:
        raise InputError("missing_schema", "send the plan's JSON Schema as `schema`")
    active = body.get("active", True)
    if not isinstance(active, bool):
        raise InputError("invalid_active", "active is true or false")
    plan = await _run(
        tracking_plans.save_plan,
        state.runtime,
        source,
        str(event).removeprefix("/"),
        body["schema"],
        body.get("action", "flag"),
        actor,
        active,
    )
    return _json(plan)


@get("/v1/admin/violations", opt={"permission": "governance:read"})
async def read_violations(request: Request, state: State) -> Response[bytes]:
    """Violation counts per source, event and day: `since` and `until` are dates (UTC,
    inclusive), the last week by default."""
    _actor(request, state)
    params = request.query_params
    until = _date(params.get("until"), "until") or datetime.now(UTC).date()
    since = _date(params.get("since"), "since") or until - timedelta(
        days=DEFAULT_VIOLATION_DAYS - 1
    )
    rows = await _run(tracking_plans.violations, state.runtime, since, until)
    return _json({"since": since, "until": until, "violations": rows})


@get("/v1/pipeline/lag", opt={"permission": "pipeline:read"})
async def read_lag(request: Request, state: State) -> Response[bytes]:
    """Each stage's backlog and the age of its oldest waiting entry, and the DLQ size."""
    _actor(request, state)
    runtime = state.runtime
    stages = await _run(pipeline.stage_lag, runtime)
    return _json({"stages": stages, "dlq_size": await _run(pipeline.dlq_size, runtime)})


@get("/v1/pipeline/dlq", opt={"permission": "pipeline:read"})
async def read_dlq(request: Request, state: State) -> Response[bytes]:
    """A page of dead letters, newest first (`offset`, `limit`)."""
    _actor(request, state)
    params = request.query_params
    offset = _integer(params.get("offset"), 0, "offset")
    limit = _integer(params.get("limit"), 50, "limit")
    page = await _run(pipeline.dlq_entries, state.runtime, offset, limit)
    return _json(
        {
            "total": page.total,
            "offset": page.offset,
            "limit": page.limit,
            "entries": [entry.as_dict() for entry in page.entries],
        }
    )


@get("/v1/pipeline/dlq/{entry_id:str}", opt={"permission": "pipeline:read"})
async def read_dlq_entry(request: Request, state: State, entry_id: str) -> Response[bytes]:
    """One dead letter with its raw payload."""
    _actor(request, state)
    entry = await _run(pipeline.dlq_entry, state.runtime, entry_id)
    return _json(entry.as_dict())


@post(
    "/v1/pipeline/dlq/replay",
    status_code=200,
    opt={"permission": "pipeline:write"},
)
async def replay(request: Request, state: State, data: Any = None) -> Response[bytes]:
    """Replay dead letters: `{"entry_ids": ["..."]}`; answers each entry's outcome."""
    actor = _actor(request, state)
    body = _object(data, {"entry_ids"}, '{"entry_ids": ["3f2a..."]}')
    ids = body.get("entry_ids")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise InputError("invalid_replay", "entry_ids is a list of DLQ entry ids")
    return _json({"outcomes": await _run(pipeline.replay, state.runtime, ids, actor)})


def route_handlers() -> list[Any]:
    """Every handler of this module, for the app to mount."""
    return [
        list_sources,
        create_source,
        rotate_key,
        revoke_key,
        list_plans,
        read_plan,
        save_plan,
        read_violations,
        read_lag,
        read_dlq,
        read_dlq_entry,
        replay,
    ]


def _actor(request: Request, state: State) -> str:
    """Who acts: the principal the sign-in guard put on the request; until that guard runs,
    a settings API token as a bearer (then the route is refused without one)."""
    principal = request.scope.get("user")
    if principal is not None:
        return str(principal.actor)
    header = request.headers.get("authorization", "")
    tokens = state.settings.api_tokens
    if not header.lower().startswith("bearer ") or header[7:].strip() not in tokens:
        raise Unauthorized(
            "invalid_token", "sign in, or send `Authorization: Bearer <token>` with a valid token"
        )
    return _SETTINGS_TOKEN_ACTOR


def _object(data: Any, fields: set[str], example: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise InputError("invalid_body", f"send a JSON object such as {example}")
    unknown = sorted(set(data) - fields)
    if unknown:
        raise InputError(
            "unknown_field",
            f"unknown field {', '.join(unknown)}; the known ones are {', '.join(sorted(fields))}",
        )
    return data


def _date(value: str | None, name: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InputError(f"invalid_{name}", f"{name} is a date such as 2026-12-01") from None


def _integer(value: str | None, default: int, name: str) -> int:
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise InputError("invalid_page", f"{name} is a whole number") from None


def _json(value: Any, status_code: int = 200) -> Response[bytes]:
    """JSON with exact numbers and ISO times."""
    return Response(content=encode(value), media_type="application/json", status_code=status_code)
