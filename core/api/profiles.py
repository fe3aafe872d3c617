"""F5: read profiles. `GET /v1/profiles/{reference}` takes any known identifier;
`GET /v1/profiles` lists profiles with simple filters. Bearer-token auth (or the principal
the auth middleware set). Personal data the principal may not see is masked
(c360.governance.policies), and every answer that shows PII unmasked is audited.

Both answer with the same encoder, which writes Decimal money as exact JSON numbers, so a profile
reads the same from either endpoint whether it came from the cache or from PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from litestar import Request, Response, get
from litestar.datastructures import State
from litestar.exceptions import NotFoundException

from c360 import audit
from c360.access import SETTINGS_TOKEN_PERMISSIONS, Principal
from c360.errors import InputError, Unauthorized
from c360.events.model import encode
from c360.events.money import read_money
from c360.events.timestamps import parse_time
from c360.governance.policies import mask_profiles
from c360.profile_service import ProfileFilter, get_profile, list_profiles

#: Query parameters the list endpoint understands; any other is a typo worth reporting.
LIST_PARAMETERS = ("min_orders", "min_revenue", "seen_after", "order_by", "limit", "offset")

#: Deepest page: beyond it PostgreSQL's OFFSET would overflow or scan for minutes.
MAX_OFFSET = 10_000_000

#: Largest min_orders worth asking for; larger would overflow the integer column's comparison.
MAX_ORDERS = 1_000_000_000

_ORDER_BY = ("revenue", "last_seen", "orders")

#: Who a request holding a token from the `api_tokens` setting is, when no auth middleware
#: set a principal (the same as c360.tokens.SETTINGS_PRINCIPAL).
_SETTINGS_PRINCIPAL = Principal(
    kind="token", name="settings", role="api", permissions=frozenset(SETTINGS_TOKEN_PERMISSIONS)
)


@get("/v1/profiles/{reference:path}", sync_to_thread=True, opt={"permission": "profiles:read"})
def read_profile(request: Request, state: State, reference: Path) -> Response[bytes]:
    """One profile by profile id, `type:value` or a bare userId / email / phone / anonymousId.
    The id may hold slashes (`x%2Fy` arrives decoded as `x/y`), hence a path parameter."""
    principal = _principal(request, state)
    reference = str(reference).removeprefix("/")
    doc = get_profile(state.runtime, reference)
    if doc is None:
        raise NotFoundException(f"no profile is known by {reference!r}")
    (masked,) = _masked(request, state, principal, [doc])
    return _json(masked)


@get("/v1/profiles", sync_to_thread=True, opt={"permission": "profiles:read"})
def read_profiles(request: Request, state: State) -> Response[bytes]:
    """Profiles filtered by orders, revenue and last activity; paged by limit and offset."""
    principal = _principal(request, state)
    filters = _filters(request.query_params)
    profiles = _masked(request, state, principal, list_profiles(state.runtime, filters))
    return _json(
        {
            "profiles": profiles,
            "count": len(profiles),
            "limit": filters.limit,
            "offset": filters.offset,
        }
    )


def _principal(request: Request, state: State) -> Principal:
    """The principal the auth middleware set; without one, the settings token is checked
    here as before the global guard existed."""
    # TODO: drop the fallback and _require_token once c360.api.auth's middleware is wired
    user = request.scope.get("user")
    if isinstance(user, Principal):
        return user
    _require_token(request, state)
    return _SETTINGS_PRINCIPAL


def _route_of(request: Request) -> str:
    """The path template of the route answering (`/v1/profiles/{reference:path}`)."""
    return min(request.route_handler.paths, default="/v1/profiles")


def _masked(
    request: Request, state: State, principal: Principal, docs: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The documents masked for the principal; PII shown unmasked is audited."""
    if not docs:
        return docs
    with state.runtime.pool.connection() as conn:
        masked, shown = mask_profiles(conn, principal, docs)
        if shown:
            audit.record_pii_read(
                conn,
                actor=principal.actor,
                profile_ids=[doc["profile_id"] for doc in docs],
                fields=shown,
                # the route, not the path: a path may hold the email or phone looked up, and
                # the audit log must not copy personal data (the profile ids say who)
                via=f"api:{_route_of(request)}",
            )
    return masked


def _require_token(request: Request, state: State) -> None:
    tokens = state.settings.api_tokens
    if not tokens:
        raise Unauthorized("api_disabled", "no API token is configured: set C360_API_TOKENS")
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("bearer ") or header[7:].strip() not in tokens:
        raise Unauthorized(
            "invalid_token", "send `Authorization: Bearer <token>` with a valid token"
        )


def _json(value: Any) -> Response[bytes]:
    """JSON with Decimal as exact numbers (13990.93, never a float's 13990.929999)."""
    return Response(content=encode(value), media_type="application/json")


def _filters(params: Any) -> ProfileFilter:
    """The list filters from the query string, each checked with a message saying the fix."""
    unknown = sorted(set(params.keys()) - set(LIST_PARAMETERS))
    if unknown:
        raise InputError(
            "unknown_parameter",
            f"unknown query parameter {', '.join(unknown)}; "
            f"the known ones are {', '.join(LIST_PARAMETERS)}",
        )
    order_by = params.get("order_by", "revenue")
    if order_by not in _ORDER_BY:
        raise InputError("invalid_order_by", "order_by must be revenue, last_seen or orders")
    return ProfileFilter(
        min_orders=_integer(params, "min_orders", None, (0, MAX_ORDERS), "invalid_min_orders"),
        min_revenue=_revenue(params.get("min_revenue")),
        seen_after=_seen_after(params.get("seen_after")),
        order_by=order_by,
        limit=_integer(params, "limit", 50, (1, 1000), "invalid_page"),
        offset=_integer(params, "offset", 0, (0, MAX_OFFSET), "invalid_page"),
    )


def _integer(
    params: Any, name: str, default: int | None, bounds: tuple[int, int], code: str
) -> int | None:
    """A whole-number parameter within bounds; out of them it would overflow in SQL."""
    low, high = bounds
    text = params.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise InputError(
            code,
            f"{name} must be a whole number from {low:,} to {high:,}; got {text[:50]!r}",
        )
    return value


def _revenue(text: str | None) -> Any:
    if text is None:
        return None
    revenue = read_money(text)
    if revenue is None:  # NaN, Infinity, 1e999 would reach SQL
        raise InputError("invalid_min_revenue", "min_revenue must be a plain number, e.g. 99.50")
    return revenue


def _seen_after(text: str | None) -> datetime | None:
    """An ISO 8601 time, or a plain date meaning its midnight UTC; no zone means UTC."""
    if text is None:
        return None
    moment = parse_time(text)
    if moment is None:
        raise InputError(
            "invalid_seen_after",
            "seen_after must be an ISO 8601 time such as 2026-03-01T00:00:00Z, or a date "
            f"such as 2026-03-01 (midnight UTC); got {text[:50]!r}",
        )
    return moment
