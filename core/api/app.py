"""The Litestar application: gateway, F5 API, identity actions, accounts and health, with JSON
errors `{code, message}` (pages get a redirect to sign in, or a small HTML page).

Every route declares the permission it needs or that it is public; the guard in c360.api.auth
enforces it, and the app refuses to start when a route declares neither.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from html import escape
from importlib import metadata
from typing import Any

import anyio.to_thread
import psycopg
import psycopg_pool
import redis
import redis.asyncio as aioredis
from litestar import Litestar, Request, Response, Router, get
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.exceptions import HTTPException
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin

from c360 import accounts
from c360.api import accounts as accounts_api
from c360.api import agents as agents_api
from c360.api import analytics as analytics_api
from c360.api import governance as governance_api
from c360.api import governance_sources as sources_api
from c360.api import knowledge as knowledge_api
from c360.api import notifications as notifications_api
from c360.api import reports as reports_api
from c360.api import segments as segments_api
from c360.api.auth import (
    AuthenticationMiddleware,
    check_routes,
    guard,
    refusal_response,
    wants_html,
)
from c360.api.gateway import make_handlers
from c360.api.gzip import GzipRequestMiddleware
from c360.api.identity import decide_review, identity_error, read_merges, read_reviews, undo
from c360.api.metrics import metrics
from c360.api.profiles import read_profile, read_profiles
from c360.channels.registry import route_handlers as channel_routes
from c360.errors import BusUnavailable, InputError
from c360.events.model import MAX_BATCH_BYTES, MAX_DEPTH, too_deep
from c360.merges import IdentityError
from c360.plugins_manager import default_manager
from c360.runtime import Runtime
from c360.settings import Settings, load_settings

log = logging.getLogger(__name__)


@get("/health", opt={"public": True})
async def health(state: State) -> dict[str, Any]:
    """Liveness: the process answers, and Valkey (counters, stage queues) and the event bus
    (Valkey or Kafka) are reachable; 503 when either is not."""
    try:
        await state.valkey.ping()
    except (redis.ConnectionError, OSError) as exc:
        raise BusUnavailable(f"Valkey is unreachable: {exc}") from exc
    await state.bus.check()
    return {"status": "ok"}


def app_from_environment() -> Litestar:
    """The app for the settings in the environment (for servers that start several processes)."""
    return create_app(load_settings())


def create_app(
    settings: Settings,
    extra_route_handlers: Sequence[Any] = (),
    template_config: Any = None,
) -> Litestar:
    """The app for these settings, with any extra routes (the UI's pages, handed in by the
    appliance) and their template set-up; connections open on start-up and close on shutdown.
    Raises UnguardedRoute when a route declares neither a permission nor that it is public."""
    valkey = aioredis.Redis.from_url(settings.valkey_url)
    runtime = Runtime(settings)
    state = State(
        {
            "settings": settings,
            "hooks": default_manager().hook,
            "valkey": valkey,
            "bus": runtime.async_bus(valkey),
            "runtime": runtime,
        }
    )

    async def close() -> None:
        await valkey.aclose()
        runtime.close()

    async def sync_roles() -> None:
        await anyio.to_thread.run_sync(_sync_built_in_roles, runtime)

    def warm_agent() -> None:
        from c360.agents.service import warm_up  # models load in the background

        app.state.agent_warm_up = warm_up(settings)

    app = Litestar(
        route_handlers=[
            *make_handlers(),
            read_profile,
            read_profiles,
            read_merges,
            undo,
            read_reviews,
            decide_review,
            health,
            metrics,
            accounts_api.ROUTER,
            *analytics_api.route_handlers(),
            *governance_api.route_handlers(),
            *sources_api.route_handlers(),
            *segments_api.route_handlers(),
            *knowledge_api.route_handlers(),
            *agents_api.route_handlers(),
            *notifications_api.route_handlers(),
            reports_api.ROUTER,
            *channel_routes(settings),  # every channel's webhooks and sockets (web chat's too)
            *extra_route_handlers,
        ],
        state=state,
        middleware=[
            DefineMiddleware(GzipRequestMiddleware, max_bytes=MAX_BATCH_BYTES * 2),
            DefineMiddleware(AuthenticationMiddleware),
        ],
        guards=[guard],
        template_config=template_config,
        cors_config=CORSConfig(
            allow_origins=["*"],
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "Content-Encoding"],
        ),
        exception_handlers={
            InputError: _input_error,
            IdentityError: identity_error,
            BusUnavailable: _bus_unavailable,
            psycopg.OperationalError: _store_unavailable,
            psycopg_pool.PoolTimeout: _store_unavailable,
            psycopg.DataError: _value_refused_by_store,
            HTTPException: _http_error,
            RecursionError: _recursion_error,
            Exception: _internal_error,
        },
        before_request=refuse_deep_bodies,
        on_startup=[sync_roles, warm_agent],
        on_shutdown=[close],
        request_max_body_size=MAX_BATCH_BYTES * 4,
        openapi_config=_openapi(),
        logging_config=None,  # c360.appliance.logs formats every record, in text or JSON
        debug=False,
    )
    check_routes(app)
    return app


#: Bodies of these media types are forms, not JSON: their brackets are not nesting.
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


async def refuse_deep_bodies(request: Request) -> None:
    """Refuse a JSON body nested more than MAX_DEPTH levels (the gateway's F1 rule) before a
    handler decodes it: decoders and the code walking the result recurse, and a few thousand
    brackets would exhaust the stack. The gateway's own routes (which read the raw body and
    dead-letter such events one by one) are left to F1."""
    if request.method in ("GET", "HEAD", "OPTIONS") or not _decodes_body(request):
        return
    if request.content_type[0] in _FORM_TYPES:
        return
    if too_deep(await request.body()):
        raise too_deeply_nested("the body")


def too_deeply_nested(what: str) -> InputError:
    """The error for JSON nested deeper than the gateway accepts, worded for `what`."""
    return InputError(
        "too_deeply_nested",
        f"{what} nests objects or arrays more than {MAX_DEPTH} levels deep: flatten it",
    )


def _decodes_body(request: Request) -> bool:
    """True when the route's handler takes the body (`data` or `body`), as every API route
    reading JSON does; the gateway's handlers take only the request."""
    parameters = request.route_handler.parsed_fn_signature.parameters
    return "data" in parameters or "body" in parameters


def _openapi() -> OpenAPIConfig:
    """The OpenAPI document of the /v1 API at /schema/openapi.json (public: it describes the
    API, it grants nothing); JSON only, so no documentation site loads scripts from a CDN."""
    return OpenAPIConfig(
        title="c360",
        version=_version(),
        description="Events in, unified customer profiles out: gateway, F5 analytics and "
        "profile API, identity actions, accounts, governance, marketing knowledge, agents and "
        "notifications. Authenticate with a session cookie (POST /v1/session) or "
        "`Authorization: Bearer <token>`.",
        # each route's docstring says what it does and what it answers when it refuses
        use_handler_docstrings=True,
        render_plugins=[JsonRenderPlugin()],
        openapi_router=Router(
            path="/schema", route_handlers=[], opt={"public": True}, include_in_schema=False
        ),
    )


def _version() -> str:
    try:
        return metadata.version("c360")
    except metadata.PackageNotFoundError:
        return "0"


def _sync_built_in_roles(runtime: Runtime) -> None:
    """Bring the built-in roles in step with this version's code; a database not migrated
    yet (a gateway started before `c360 migrate`) is left for the migration to seed."""
    try:
        with runtime.pool.connection() as conn:
            changed = accounts.ensure_built_in_roles(conn)
    except psycopg.errors.UndefinedTable:
        log.warning("The governance tables are missing: run `c360 migrate`.")
        return
    if changed:
        log.info("Brought the built-in roles %r in step with this version.", changed)


def _input_error(request: Request, exc: InputError) -> Response:
    if exc.status_code in (401, 403):
        return refusal_response(request, exc.status_code, exc.code, exc.message)
    return Response({"code": exc.code, "message": exc.message}, status_code=exc.status_code)


def _bus_unavailable(request: Request, exc: BusUnavailable) -> Response:
    log.warning("Refusing a request: %s", exc)
    return Response(
        {"code": "bus_unavailable", "message": "events cannot be stored right now; retry shortly"},
        status_code=503,
        headers={"Retry-After": "5"},
    )


def _value_refused_by_store(request: Request, exc: psycopg.DataError) -> Response:
    """A value PostgreSQL cannot hold (a NUL character in text, a number out of range) that
    no check caught earlier: the request's fault, so a 400 that says which kind, never a 500."""
    log.info("The store refused a value of %s %s: %s", request.method, request.url.path, exc)
    if "NUL" in str(exc):
        message = "a value holds a NUL character (\\u0000), which text cannot hold: remove it"
        return Response({"code": "invalid_text", "message": message}, status_code=400)
    message = f"a value is not acceptable to the store ({exc.__class__.__name__}): check it"
    return Response({"code": "invalid_value", "message": message}, status_code=400)


def _store_unavailable(request: Request, exc: Exception) -> Response:
    """PostgreSQL out of reach (a profile not in the cache, an identity action): try later."""
    log.warning("Cannot reach PostgreSQL for %s: %s", request.url.path, exc)
    return Response(
        {"code": "store_unavailable", "message": "the profile store is out of reach; retry soon"},
        status_code=503,
        headers={"Retry-After": "5"},
    )


def _http_error(request: Request, exc: HTTPException) -> Response:
    if exc.status_code == 413:  # over Litestar's body limit: answer like any oversized body
        return Response(_too_large(request.url.path), status_code=400)
    code = {
        400: "bad_request",
        401: "not_signed_in",
        403: "forbidden",
        404: "not_found",
        405: "method_not_allowed",
    }.get(exc.status_code, "http_error")
    if exc.status_code in (401, 403):  # raised by a page: redirect to sign in, or say so
        return refusal_response(request, exc.status_code, code, exc.detail)
    return Response({"code": code, "message": exc.detail}, status_code=exc.status_code)


def _too_large(path: str) -> dict[str, str]:
    """The error for a body over Litestar's limit, worded for a batch or a single event."""
    limit = f"{MAX_BATCH_BYTES * 4:,}"
    if path.rstrip("/").endswith(("/batch", "/import")):
        return {
            "code": "batch_too_large",
            "message": f"the request is over {limit} bytes; a batch may be at most 500 KB: "
            "send fewer events per request",
        }
    return {
        "code": "event_too_large",
        "message": f"the event is over {limit} bytes; an event may be at most 32 KB: "
        "trim its properties or traits",
    }


def _recursion_error(request: Request, exc: RecursionError) -> Response:
    """Input nested so deep that decoding or walking it ran out of stack: the client's to
    fix, never a failure of c360 (a page's JSON field, a body the depth check did not see)."""
    log.info("Refusing %s %s: its input nests too deep.", request.method, request.url.path)
    error = too_deeply_nested("the input")
    if wants_html(request):  # a page or an HTMX swap: a sentence, not JSON
        text = f'<p class="error" id="error-message">{escape(error.message)}</p>'
        return Response(text, status_code=400, media_type="text/html")
    return Response({"code": error.code, "message": error.message}, status_code=400)


def _internal_error(request: Request, exc: Exception) -> Response:
    log.exception("Request %s %s failed.", request.method, request.url.path, exc_info=exc)
    return Response(
        {"code": "internal_error", "message": "c360 failed to answer; the error is in its log"},
        status_code=500,
    )
