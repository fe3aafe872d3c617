"""Marketing knowledge API: load items (as JSON or as an uploaded CSV / JSON file), read and
delete one, and search by meaning and words with filters. Changes embed new text at once, so
a 200 means the items are searchable.

    POST   /v1/knowledge/items           [item, ...]                              knowledge:write
    POST   /v1/knowledge/files?type=&name=  CSV (text/csv) or JSON body            knowledge:write
    GET    /v1/knowledge/items/{item_id}   (the id may hold '/')                  knowledge:read
    GET    /v1/knowledge/items?id=         (any id, URL-encoded)                  knowledge:read
    DELETE /v1/knowledge/items/{item_id}   (or ?id=)                              knowledge:write
    GET    /v1/knowledge/search?q=&type=&region=&mode=&k=&at=&in_stock=           knowledge:read

An item is {"id", "type", "title", "body"?, "language"?, "attributes"?}; errors are 400s that
name the item's position (`items[2]`) or the file's line, and the field. A request holds at
most MAX_ITEMS items and a file at most MAX_UPLOAD_BYTES (413 otherwise, saying to split it or
to use `c360 knowledge load`), checked before anything is embedded: a request answers only
once its items are embedded, so a bigger one would leave the client waiting for minutes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict
from datetime import datetime
from functools import partial
from typing import Any

import anyio
from litestar import Request, Response, delete, get, post
from litestar.datastructures import State
from litestar.exceptions import NotFoundException
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath, RawBody

from c360.api import bodies
from c360.api.bodies import documented
from c360.errors import InputError
from c360.events.model import decode_any, encode
from c360.knowledge import loaders, search, store

#: Items per POST: a request embeds its new text before answering (~100 texts/s on 2 cores).
MAX_ITEMS = 1_000
#: Bytes per POST: 1,000 items with long bodies fit; the app's limit is for events.
MAX_UPLOAD_BYTES = 8 * 1024 * 1024
_SPLIT = "split it into files of at most 1,000 items, or load it with `c360 knowledge load`"
_SEARCH_PARAMETERS = ("q", "type", "region", "mode", "k", "at", "in_stock")


class TooManyItems(InputError):
    """A request over MAX_ITEMS items or MAX_UPLOAD_BYTES bytes."""

    status_code = 413


def _upload_too_large(request: Request, exc: RequestEntityTooLarge) -> Response[bytes]:
    """Litestar's 413 for a body over MAX_UPLOAD_BYTES, in the words of a knowledge load
    (the app's own answer is about events)."""
    error = {
        "code": "upload_too_large",
        "message": f"the upload is over {MAX_UPLOAD_BYTES:,} bytes; {_SPLIT}",
    }
    return _json(error, status_code=413)


_UPLOAD = {
    "request_max_body_size": MAX_UPLOAD_BYTES,
    "exception_handlers": {RequestEntityTooLarge: _upload_too_large},
}


@post(
    "/v1/knowledge/items",
    status_code=200,
    opt={"permission": "knowledge:write"},
    operation_class=documented(bodies.KNOWLEDGE_ITEMS),
    **_UPLOAD,
)
async def put_items(state: State, body: RawBody) -> Response[bytes]:
    """Insert or update items by id; answers what changed and how many texts were embedded."""
    items = _items(body)
    counts = await _in_thread(store.upsert, state.runtime, items)
    return _json(asdict(counts))


@post(
    "/v1/knowledge/files",
    status_code=200,
    opt={"permission": "knowledge:write"},
    operation_class=documented(bodies.KNOWLEDGE_FILE, bodies.KNOWLEDGE_FILE_QUERY),
    **_UPLOAD,
)
async def load_file(request: Request, state: State, body: RawBody) -> Response[bytes]:
    """Load a CSV (Content-Type text/csv) or JSON / JSON Lines file sent as the body."""
    params = request.query_params
    unknown = sorted(set(params) - {"type", "name"})
    if unknown:
        raise InputError("unknown_parameter", f"unknown parameter {unknown[0]}; use type, name")
    name = params.get("name") or "upload"
    kind = _kind(request.headers.get("content-type", ""), name)
    items = loaders.parse(body, name, params.get("type") or None, kind, type_option="?type=")
    _cap(len(items), "the file")
    counts = await _in_thread(store.upsert, state.runtime, items)
    return _json(asdict(counts) | {"items": len(items)})


@get("/v1/knowledge/items/{item_id:path}", opt={"permission": "knowledge:read"})
async def read_item(state: State, item_id: FromPath[str]) -> Response[bytes]:
    """One item as stored now; an id may hold '/' (cat/sub/item-1), as is or as %2F."""
    return await _read(state, _path_id(item_id))


@get("/v1/knowledge/items", opt={"permission": "knowledge:read"})
async def read_item_by_query(request: Request, state: State) -> Response[bytes]:
    """One item by ?id=, for any id a URL path cannot carry as it is."""
    return await _read(state, _query_id(request.query_params))


@delete("/v1/knowledge/items/{item_id:path}", opt={"permission": "knowledge:write"})
async def delete_item(state: State, item_id: FromPath[str]) -> None:
    """Remove an item; it is never found again. An id may hold '/', as is or as %2F."""
    await _delete(state, _path_id(item_id))


@delete("/v1/knowledge/items", opt={"permission": "knowledge:write"})
async def delete_item_by_query(request: Request, state: State) -> None:
    """Remove the item of ?id=, for any id a URL path cannot carry as it is."""
    await _delete(state, _query_id(request.query_params))


@get("/v1/knowledge/search", opt={"permission": "knowledge:read"})
async def search_items(request: Request, state: State) -> Response[bytes]:
    """The best items for `q` among those the filters keep, best first."""
    arguments = _search_arguments(request.query_params)
    hits = await _in_thread(partial(search.search, state.runtime, **arguments))
    return _json({"hits": [_item(hit) | {"score": hit.score} for hit in hits]})


def route_handlers() -> list[HTTPRouteHandler]:
    """Every knowledge route, for the app to register."""
    return [
        put_items,
        load_file,
        read_item,
        read_item_by_query,
        delete_item,
        delete_item_by_query,
        search_items,
    ]


async def _read(state: State, item_id: str) -> Response[bytes]:
    hit = await _in_thread(search.get, state.runtime, item_id)
    if hit is None:
        raise NotFoundException(_not_found(item_id))
    return _json(_item(hit))


async def _delete(state: State, item_id: str) -> None:
    if not await _in_thread(store.delete, state.runtime, [item_id]):
        raise NotFoundException(_not_found(item_id))


def _path_id(value: str) -> str:
    """The id in the path: Litestar hands a path parameter over with a leading '/'."""
    return value.removeprefix("/")


def _query_id(params: Mapping[str, Any]) -> str:
    unknown = sorted(set(params) - {"id"})
    if unknown:
        raise InputError("unknown_parameter", f"unknown parameter {unknown[0]}; use id")
    if not params.get("id"):
        raise InputError(
            "invalid_query", "id: give the item's id, as /v1/knowledge/items/{id} or ?id="
        )
    return str(params["id"])


def _not_found(item_id: str) -> str:
    """A path merges '//', drops a '/' at either end and resolves '.' and '..' segments
    (clients do too), so the id asked for may not be the id sent: say how to send it whole."""
    return (
        f"no knowledge item {item_id}; an id with '/' at either end, '//' or a '.' segment "
        "must be sent as /v1/knowledge/items?id= (URL-encoded)"
    )


def _items(body: bytes) -> list[store.Item]:
    """Checked items of a JSON array; errors name the position and the field."""
    try:
        data = decode_any(body or b"null")
    except ValueError:
        raise InputError("invalid_json", "the body is not valid JSON") from None
    if not isinstance(data, list):
        raise InputError("invalid_body", "send a JSON array of items: [{id, type, title}, ...]")
    if not data:
        raise InputError("empty_body", "the body has no items; send at least one")
    _cap(len(data), "the body")
    placed = [(f"items[{index}]", store.item_from_dict(raw, f"items[{index}]")) for index, raw
              in enumerate(data)]  # fmt: skip
    store.refuse_duplicates(placed)
    return [item for _, item in placed]


def _cap(count: int, what: str) -> None:
    """Refuse more than MAX_ITEMS items before any is embedded."""
    if count > MAX_ITEMS:
        raise TooManyItems(
            "too_many_items", f"{what} has {count:,} items; the most per request is "
            f"{MAX_ITEMS:,}: {_SPLIT}"
        )  # fmt: skip


def _search_arguments(params: Mapping[str, Any]) -> dict[str, Any]:
    """search() keyword arguments from the query string, each checked by name."""
    unknown = sorted(set(params) - set(_SEARCH_PARAMETERS))
    if unknown:
        raise InputError(
            "unknown_parameter",
            f"unknown parameter {unknown[0]}; use {', '.join(_SEARCH_PARAMETERS)}",
        )
    arguments: dict[str, Any] = {"text": params.get("q") or ""}
    types = [t.strip() for value in params.getall("type", []) for t in value.split(",")]
    arguments["types"] = [t for t in types if t] or None
    arguments["region"] = params.get("region") or None
    arguments["mode"] = params.get("mode") or "hybrid"
    arguments["k"] = _whole(params.get("k", "10"), "k")
    if params.get("at"):
        arguments["at"] = _moment(params["at"])
    if params.get("in_stock"):
        arguments["in_stock"] = _flag(params["in_stock"], "in_stock")
    return arguments


def _whole(value: str, name: str) -> int:
    """k: a whole number from 1 to search.MAX_K ('-1' is in range's terms, not a format's)."""
    text = value.strip()
    if not text.lstrip("-").isdigit() or not 1 <= int(text) <= search.MAX_K:
        raise InputError("invalid_query", f"{name} must be between 1 and {search.MAX_K}")
    return int(text)


def _moment(value: str) -> datetime:
    """`at` as given; without an offset it stays naive, and search reads it in the default
    time zone (C360_DEFAULT_TIMEZONE), as it reads validity dates."""
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(
            "invalid_query", f"at: {value} is not an ISO 8601 time such as 2026-12-31T18:00Z"
        ) from None


def _flag(value: str, name: str) -> bool:
    if value.lower() not in ("true", "false", "1", "0"):
        raise InputError("invalid_query", f"{name}: {value} must be true or false")
    return value.lower() in ("true", "1")


def _kind(content_type: str, name: str) -> str | None:
    """'csv' or 'json' from the Content-Type, else from the name's suffix."""
    media = content_type.split(";")[0].strip().lower()
    if media in ("text/csv", "application/csv"):
        return "csv"
    if media in ("application/json", "application/x-ndjson", "application/jsonl"):
        return "json"
    if not name.lower().endswith((".csv", ".json", ".jsonl")):
        raise InputError(
            "invalid_file",
            "send the file with Content-Type text/csv or application/json, or name it with "
            "?name=catalogue.csv",
        )
    return None


def _item(hit: search.Hit) -> dict[str, Any]:
    return {
        "id": hit.item_id,
        "type": hit.type,
        "title": hit.title,
        "body": hit.body,
        "language": hit.language,
        "attributes": hit.attributes,
    }


async def _in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """Blocking database and embedding work off the event loop (async handlers: see
    c360.api.segments for why not `sync_to_thread`)."""
    return await anyio.to_thread.run_sync(partial(fn, *args))


def _json(value: Any, status_code: int = 200) -> Response[bytes]:
    """Exact JSON: Decimal prices as numbers."""
    return Response(content=encode(value), media_type="application/json", status_code=status_code)
