"""F5: read profiles. `GET /v1/profiles/{reference}` takes any known identifier;
`GET /v1/profiles` lists profiles with simple filters. Bearer-token auth."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from litestar import Request, get
from litestar.datastructures import State
from litestar.exceptions import NotFoundException

from c360.errors import InputError, Unauthorized
from c360.events.money import read_money
from c360.profile_service import ProfileFilter, get_profile, list_profiles


def _require_token(request: Request, state: State) -> None:
    tokens = state.settings.api_tokens
    if not tokens:
        raise Unauthorized("api_disabled", "no API token is configured: set C360_API_TOKENS")
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("bearer ") or header[7:].strip() not in tokens:
        raise Unauthorized(
            "invalid_token", "send `Authorization: Bearer <token>` with a valid token"
        )


@get("/v1/profiles/{reference:str}", sync_to_thread=True)
def read_profile(request: Request, state: State, reference: str) -> dict[str, Any]:
    """One profile by profile id, `type:value` or a bare userId / email / phone / anonymousId."""
    _require_token(request, state)
    doc = get_profile(state.runtime, reference)
    if doc is None:
        raise NotFoundException(f"no profile is known by {reference!r}")
    return doc


@get("/v1/profiles", sync_to_thread=True)
def read_profiles(
    request: Request,
    state: State,
    min_orders: int | None = None,
    min_revenue: str | None = None,
    seen_after: datetime | None = None,
    order_by: str = "revenue",
    limit: int = 50,
    offset: int = 0,
) -> dict[str, Any]:
    """Profiles filtered by orders, revenue and last activity; paged by limit and offset."""
    _require_token(request, state)
    if order_by not in ("revenue", "last_seen", "orders"):
        raise InputError("invalid_order_by", "order_by must be revenue, last_seen or orders")
    if not 1 <= limit <= 1000 or offset < 0:
        raise InputError("invalid_page", "limit must be 1..1000 and offset 0 or more")
    revenue = read_money(min_revenue) if min_revenue is not None else None
    if min_revenue is not None and revenue is None:  # NaN, Infinity, 1e999 would reach SQL
        raise InputError("invalid_min_revenue", "min_revenue must be a plain number, e.g. 99.50")
    filters = ProfileFilter(min_orders, revenue, seen_after, order_by, limit, offset)
    profiles = list_profiles(state.runtime, filters)
    return {"profiles": profiles, "count": len(profiles), "limit": limit, "offset": offset}
