"""F5 segments API: the builder's preview, saved segments, their members, CSV export and
shares. Every change is audited (by c360.segments.service); member pages and exports are
masked for the principal, so `segments:read` shows members without unmasking personal data.

    POST   /v1/segments/preview                {spec, limit?, offset?}    segments:read
    POST   /v1/segments/export.csv             {spec}                     exports:create
    GET    /v1/segments                                                   segments:read
    POST   /v1/segments                        {name, spec, description?} segments:write
    GET    /v1/segments/{id}                                              segments:read
    PUT    /v1/segments/{id}                   {name?, spec?, description?} segments:write
    DELETE /v1/segments/{id}                                              segments:write
    GET    /v1/segments/{id}/members?limit=&offset=                       segments:read
    GET    /v1/segments/{id}/export.csv                                   exports:create
    POST   /v1/segments/{id}/shares            {role} or {user_id}        segments:write
    DELETE /v1/segments/{id}/shares/{share_id}                            segments:write

Bodies are read with Decimal numbers, so `{"value": 99.95}` compares as exactly 99.95.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import anyio
from litestar import Request, Response, delete, get, post, put
from litestar.datastructures import State
from litestar.handlers import HTTPRouteHandler
from litestar.response import Stream

from c360.access import Principal
from c360.errors import InputError, Unauthorized
from c360.events.model import decode_any, encode
from c360.segments import service

#: Keys each body may hold; any other is a typo worth reporting.
_PREVIEW_KEYS = ("spec", "limit", "offset")
_SAVE_KEYS = ("name", "spec", "description")
_SHARE_KEYS = ("role", "user_id")


@post("/v1/segments/preview", status_code=200, opt={"permission": "segments:read"})
async def preview_segment(request: Request, state: State, body: bytes) -> Response[bytes]:
    """Count and first page of an unsaved filter: the builder's live count."""
    principal = _principal(request)
    data = _body(body, _PREVIEW_KEYS, required=("spec",))
    limit, offset = _page(data)
    found = await _in_thread(service.preview, state.runtime, data["spec"], limit, offset, principal)
    return _json(found)


@post("/v1/segments/export.csv", status_code=200, opt={"permission": "exports:create"})
async def export_filter(request: Request, state: State, body: bytes) -> Stream:
    """CSV of every profile an unsaved filter matches."""
    principal = _principal(request)
    data = _body(body, ("spec",), required=("spec",))
    chunks = await _in_thread(service.export_csv, state.runtime, data["spec"], principal)
    return _csv(chunks, "segment.csv")


@get("/v1/segments", opt={"permission": "segments:read"})
async def list_segments(request: Request, state: State) -> Response[bytes]:
    """Saved segments this principal may see: own and shared."""
    found = await _with_conn(state, service.list_segments, _principal(request))
    return _json({"segments": found})


@post("/v1/segments", opt={"permission": "segments:write"})
async def create_segment(request: Request, state: State, body: bytes) -> Response[bytes]:
    """Save a filter; its members are computed at once. 409 when the name is taken."""
    principal = _principal(request)
    data = _body(body, _SAVE_KEYS, required=("name", "spec"))
    saved = await _with_conn(
        state,
        service.save,
        principal.actor,
        data["name"],
        data["spec"],
        data.get("description", ""),
        state.settings.default_region,
        principal,
    )
    return _json(saved, status_code=201)


@get("/v1/segments/{segment_id:int}", opt={"permission": "segments:read"})
async def read_segment(request: Request, state: State, segment_id: int) -> Response[bytes]:
    """One saved segment with its shares."""
    return _json(await _with_conn(state, service.get_segment, _principal(request), segment_id))


@put("/v1/segments/{segment_id:int}", opt={"permission": "segments:write"})
async def update_segment(
    request: Request, state: State, segment_id: int, body: bytes
) -> Response[bytes]:
    """Rename, re-describe or re-filter a segment (owner or admin)."""
    principal = _principal(request)
    data = _body(body, _SAVE_KEYS, required=())
    change = partial(
        service.update,
        name=data.get("name"),
        spec=data.get("spec"),
        description=data.get("description"),
        region=state.settings.default_region,
    )
    return _json(await _with_conn(state, change, principal, segment_id))


@delete("/v1/segments/{segment_id:int}", opt={"permission": "segments:write"})
async def delete_segment(request: Request, state: State, segment_id: int) -> None:
    """Delete a segment with its members and shares (owner or admin)."""
    await _with_conn(state, service.delete, _principal(request), segment_id)


@get("/v1/segments/{segment_id:int}/members", opt={"permission": "segments:read"})
async def segment_members(request: Request, state: State, segment_id: int) -> Response[bytes]:
    """A page of members, most valuable first, masked for the principal."""
    principal = _principal(request)
    limit, offset = _page(_query(request.query_params))
    found = await _in_thread(service.members, state.runtime, segment_id, limit, offset, principal)
    return _json(found)


@get("/v1/segments/{segment_id:int}/export.csv", opt={"permission": "exports:create"})
async def export_segment(request: Request, state: State, segment_id: int) -> Stream:
    """CSV of a saved segment's members."""
    principal = _principal(request)
    chunks = await _in_thread(service.export_csv, state.runtime, segment_id, principal)
    return _csv(chunks, f"segment-{segment_id}.csv")


@post("/v1/segments/{segment_id:int}/shares", opt={"permission": "segments:write"})
async def share_segment(
    request: Request, state: State, segment_id: int, body: bytes
) -> Response[bytes]:
    """Share with a role (`{"role": "marketer"}`) or a user (`{"user_id": 7}`)."""
    principal = _principal(request)
    data = _body(body, _SHARE_KEYS, required=())
    grant = partial(service.share_segment, role=data.get("role"), user_id=data.get("user_id"))
    made = await _with_conn(state, grant, principal, segment_id)
    return _json(made.as_dict(), status_code=201)


@delete("/v1/segments/{segment_id:int}/shares/{share_id:int}", opt={"permission": "segments:write"})
async def unshare_segment(request: Request, state: State, segment_id: int, share_id: int) -> None:
    """Withdraw one share."""
    await _with_conn(state, service.unshare_segment, _principal(request), segment_id, share_id)


def route_handlers() -> list[HTTPRouteHandler]:
    """Every segments route, for the app to register."""
    return [
        preview_segment,
        export_filter,
        list_segments,
        create_segment,
        read_segment,
        update_segment,
        delete_segment,
        segment_members,
        export_segment,
        share_segment,
        unshare_segment,
    ]


def _principal(request: Request) -> Principal:
    """The request's principal, which the accounts guard has checked against the route's
    permission; a route reached without one (no guard in front) is refused."""
    user = request.scope.get("user")
    if not isinstance(user, Principal):
        raise Unauthorized("not_signed_in", "sign in, or send `Authorization: Bearer <token>`")
    return user


async def _in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """Run blocking database work off the event loop. The handlers are async, not
    `sync_to_thread=True`: Litestar 2.25 wraps a sync handler again each time another method
    is registered on its path, and the twice-wrapped one answers a coroutine (a 500)."""
    return await anyio.to_thread.run_sync(partial(fn, *args))


async def _with_conn(state: State, fn: Callable[..., Any], *args: Any) -> Any:
    """`fn(conn, *args)` in a worker thread with a pooled connection."""

    def run() -> Any:
        with state.runtime.pool.connection() as conn:
            return fn(conn, *args)

    return await anyio.to_thread.run_sync(run)


def _body(body: bytes, allowed: tuple[str, ...], required: tuple[str, ...]) -> dict[str, Any]:
    """The JSON object sent, with Decimal numbers; unknown and missing keys named."""
    try:
        data = decode_any(body or b"null")
    except ValueError:
        raise InputError("invalid_json", "the body is not valid JSON") from None
    if not isinstance(data, Mapping):
        raise InputError("invalid_body", f"send a JSON object with {', '.join(allowed)}")
    unknown = sorted(str(key) for key in data if key not in allowed)
    if unknown:
        raise InputError(
            "unknown_field",
            f"unknown field {', '.join(unknown)}; the body may hold {', '.join(allowed)}",
        )
    missing = [key for key in required if key not in data]
    if missing:
        raise InputError("missing_key", f"the body needs {', '.join(missing)}")
    return dict(data)


def _query(params: Any) -> dict[str, Any]:
    unknown = sorted(set(params.keys()) - {"limit", "offset"})
    if unknown:
        raise InputError(
            "unknown_parameter", f"unknown query parameter {', '.join(unknown)}; use limit, offset"
        )
    return {key: params.get(key) for key in ("limit", "offset") if key in params}


def _page(data: Mapping[str, Any]) -> tuple[int, int]:
    """limit and offset, whole numbers from a body or a query string."""
    values = []
    for key, default in (("limit", 50), ("offset", 0)):
        value = data.get(key, default)
        try:
            number = int(value) if not isinstance(value, bool) else None
        except (TypeError, ValueError):
            number = None
        if number is None or str(number) != str(value).strip():
            raise InputError("invalid_page", f"{key} must be a whole number; got {value!r}")
        values.append(number)
    return values[0], values[1]


def _json(value: Any, status_code: int = 200) -> Response[bytes]:
    """Exact JSON: Decimal money as numbers, times as ISO 8601."""
    return Response(content=encode(value), media_type="application/json", status_code=status_code)


def _csv(chunks: Any, filename: str) -> Stream:
    return Stream(
        chunks,
        media_type="text/csv",  # Litestar adds "; charset=utf-8" to any text/ type
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
