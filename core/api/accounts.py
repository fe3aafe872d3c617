"""The JSON API of accounts: sign in and out (`/v1/session`), who am I (`/v1/me`), and for
administrators users, roles and API tokens under `/v1/admin/`.

Every change goes through c360.accounts or c360.tokens, which write the audit entry in the same
transaction; a change that ends a user's sessions also deletes them from Valkey at once.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from litestar import Request, Response, Router, delete, get, patch, post, put
from litestar.datastructures import State

from c360 import accounts, sessions, tokens
from c360.api.auth import SIGN_IN_HINT, actor, principal, secure_cookies
from c360.errors import InputError
from c360.events.model import encode

#: The longest life a token can be given, in days (a longer-lived one should be re-issued).
MAX_TOKEN_DAYS = 3650

_ADMIN = {"permission": "users:write"}


@post(
    "/v1/session",
    sync_to_thread=True,
    status_code=200,
    opt={"public": True, "csrf": "double_submit"},
)
def create_session(
    request: Request[Any, Any, Any], state: State, data: dict[str, Any]
) -> Response[bytes]:
    """Sign in with {name, password}; sets the session cookie and answers with the principal
    and its CSRF token. Send the `c360_csrf` cookie and the same value as X-CSRF-Token."""
    _only(data, ("name", "password"))
    name = _text(data, "name")
    password = _text(data, "password")
    remote = request.client.host if request.client else ""
    session_id, who = accounts.sign_in(state.runtime, name, password, remote)
    response = _json(_me(who))
    response.set_cookie(sessions.session_cookie(session_id, secure_cookies(request)))
    return response


@delete(
    "/v1/session",
    sync_to_thread=True,
    status_code=204,
    opt={"public": True, "csrf": "double_submit"},
)
def delete_session(request: Request[Any, Any, Any], state: State) -> Response[None]:
    """Sign out: end this session and clear its cookie (nothing to do without one)."""
    who = principal(request)
    if who is not None and who.session_id:
        sessions.sign_out(state.runtime, who.session_id)
    response: Response[None] = Response(None, status_code=204)
    response.delete_cookie(sessions.COOKIE, path="/")
    return response


@get("/v1/me", sync_to_thread=False, opt={"public": True, SIGN_IN_HINT: True})
def read_me(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Who the request acts as, with its permissions (and CSRF token, for a session). Not
    signed in, the 401 sets the `c360_csrf` cookie and answers its value as `csrf_token`:
    what POST /v1/session needs."""
    who = principal(request)
    if who is None:
        raise accounts.SignInRefused(
            "not_signed_in",
            "sign in first: POST /v1/session with {name, password}, this answer's c360_csrf "
            "cookie, and its csrf_token as the X-CSRF-Token header",
        )
    return _json(_me(who))


# -- users --------------------------------------------------------------------------------


@get("/v1/admin/users", sync_to_thread=True, opt=_ADMIN)
def read_users(state: State) -> Response[bytes]:
    """Every user (without password hashes)."""
    with state.runtime.pool.connection() as conn:
        users = accounts.list_users(conn)
    return _json({"users": [user.as_json() for user in users]})


@post("/v1/admin/users", sync_to_thread=True, status_code=201, opt=_ADMIN)
def create_user(
    request: Request[Any, Any, Any], state: State, data: dict[str, Any]
) -> Response[bytes]:
    """Add a user: {name, role, password, email?}."""
    _only(data, ("name", "role", "password", "email"))
    with state.runtime.pool.connection() as conn:
        user = accounts.create_user(
            conn,
            actor(request),
            _text(data, "name"),
            _text(data, "role"),
            _text(data, "password"),
            email=_optional_text(data, "email"),
        )
    return _json(user.as_json(), status_code=201)


@patch("/v1/admin/users/{name:str}", sync_to_thread=True, opt=_ADMIN)
def change_user(
    request: Request[Any, Any, Any], state: State, name: str, data: dict[str, Any]
) -> Response[bytes]:
    """Change a user's role and/or disabled state: {role?, disabled?}; ends their sessions."""
    _only(data, ("role", "disabled"))
    if not data:
        raise InputError("invalid_change", 'send {"role": ...} and/or {"disabled": true|false}')
    runtime, who = state.runtime, actor(request)
    with runtime.pool.connection() as conn:
        user = accounts.get_user(conn, name)
        if "role" in data:
            user = accounts.set_role(conn, who, name, _text(data, "role"))
        if "disabled" in data:
            if not isinstance(data["disabled"], bool):
                raise InputError("invalid_change", "disabled must be true or false")
            change = accounts.disable_user if data["disabled"] else accounts.enable_user
            user = change(conn, who, name)
    sessions.end_user_sessions(runtime, user.user_id)
    return _json(user.as_json())


@post("/v1/admin/users/{name:str}/unlock", sync_to_thread=True, status_code=200, opt=_ADMIN)
def unlock_user(request: Request[Any, Any, Any], state: State, name: str) -> Response[bytes]:
    """Lift a user's lock-out."""
    with state.runtime.pool.connection() as conn:
        user = accounts.unlock_user(conn, actor(request), name)
    return _json(user.as_json())


@post("/v1/admin/users/{name:str}/password", sync_to_thread=True, status_code=200, opt=_ADMIN)
def set_password(
    request: Request[Any, Any, Any], state: State, name: str, data: dict[str, Any]
) -> Response[bytes]:
    """Give a user a new password: {password}; ends their sessions."""
    _only(data, ("password",))
    with state.runtime.pool.connection() as conn:
        user = accounts.reset_password(conn, actor(request), name, _text(data, "password"))
    sessions.end_user_sessions(state.runtime, user.user_id)
    return _json(user.as_json())


# -- roles --------------------------------------------------------------------------------


@get("/v1/admin/roles", sync_to_thread=True, opt=_ADMIN)
def read_roles(state: State) -> Response[bytes]:
    """Every role with its permissions."""
    with state.runtime.pool.connection() as conn:
        roles = accounts.list_roles(conn)
    return _json({"roles": [role.as_json() for role in roles]})


@post("/v1/admin/roles", sync_to_thread=True, status_code=201, opt=_ADMIN)
def create_role(
    request: Request[Any, Any, Any], state: State, data: dict[str, Any]
) -> Response[bytes]:
    """Add a custom role: {name, permissions: [...], description?}."""
    _only(data, ("name", "permissions", "description"))
    with state.runtime.pool.connection() as conn:
        role = accounts.create_role(
            conn,
            actor(request),
            _text(data, "name"),
            _names(data, "permissions"),
            _optional_text(data, "description") or "",
        )
    return _json(role.as_json(), status_code=201)


@put("/v1/admin/roles/{name:str}", sync_to_thread=True, opt=_ADMIN)
def update_role(
    request: Request[Any, Any, Any], state: State, name: str, data: dict[str, Any]
) -> Response[bytes]:
    """Replace a custom role's permissions: {permissions: [...], description?}."""
    _only(data, ("permissions", "description"))
    with state.runtime.pool.connection() as conn:
        role = accounts.update_role(
            conn,
            actor(request),
            name,
            _names(data, "permissions"),
            _optional_text(data, "description"),
        )
    return _json(role.as_json())


@delete("/v1/admin/roles/{name:str}", sync_to_thread=True, status_code=204, opt=_ADMIN)
def delete_role(request: Request[Any, Any, Any], state: State, name: str) -> None:
    """Delete a custom role no user holds."""
    with state.runtime.pool.connection() as conn:
        accounts.delete_role(conn, actor(request), name)


# -- tokens -------------------------------------------------------------------------------


@get("/v1/admin/tokens", sync_to_thread=True, opt=_ADMIN)
def read_tokens(state: State) -> Response[bytes]:
    """Every API token (never the token itself)."""
    with state.runtime.pool.connection() as conn:
        found = tokens.list_tokens(conn)
    return _json({"tokens": [token.as_json() for token in found]})


@post("/v1/admin/tokens", sync_to_thread=True, status_code=201, opt=_ADMIN)
def create_token(
    request: Request[Any, Any, Any], state: State, data: dict[str, Any]
) -> Response[bytes]:
    """Make a token: {label, scopes: [...], expires_in_days? or expires_at? (ISO 8601, in
    the future)}; the answer holds the token, shown this once."""
    _only(data, ("label", "scopes", "expires_in_days", "expires_at"))
    expires = _expiry(data, datetime.now(UTC))
    with state.runtime.pool.connection() as conn:
        token, record = tokens.create_token(
            conn, actor(request), _text(data, "label"), _names(data, "scopes"), expires
        )
    return _json({**record.as_json(), "token": token}, status_code=201)


@delete("/v1/admin/tokens/{token_id:int}", sync_to_thread=True, status_code=200, opt=_ADMIN)
def revoke_token(request: Request[Any, Any, Any], state: State, token_id: int) -> Response[bytes]:
    """Revoke a token for good."""
    with state.runtime.pool.connection() as conn:
        record = tokens.revoke_token(conn, actor(request), token_id)
    return _json(record.as_json())


#: Every accounts route, in one Router: Litestar 2.25 wraps a sync handler a second time when
#: another handler for the same path is registered on the app separately (GET and POST of
#: /v1/admin/users), and the wrapped handler then answers with a coroutine; registered
#: together, each is prepared once.
ROUTER = Router(
    path="/",
    route_handlers=[
        create_session,
        delete_session,
        read_me,
        read_users,
        create_user,
        change_user,
        unlock_user,
        set_password,
        read_roles,
        create_role,
        update_role,
        delete_role,
        read_tokens,
        create_token,
        revoke_token,
    ],
)


def _me(who: Any) -> dict[str, Any]:
    return {
        "kind": who.kind,
        "name": who.name,
        "role": who.role,
        "permissions": sorted(who.permissions),
        "csrf_token": who.csrf_token,
    }


def _expiry(data: dict[str, Any], now: datetime) -> datetime | None:
    """When a new token expires: `expires_in_days` from now, or the time `expires_at`, which
    must be in the future and at most MAX_TOKEN_DAYS away; None (never) without either."""
    days, at = data.get("expires_in_days"), data.get("expires_at")
    if days is not None and at is not None:
        raise InputError("invalid_expiry", "send expires_in_days or expires_at, not both")
    if at is not None:
        return _expires_at(at, now)
    if days is not None and (
        not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= MAX_TOKEN_DAYS
    ):
        raise InputError(
            "invalid_expiry", f"expires_in_days must be a whole number from 1 to {MAX_TOKEN_DAYS}"
        )
    return now + timedelta(days=days) if days else None


def _expires_at(value: Any, now: datetime) -> datetime:
    """`expires_at` read as an ISO 8601 time (UTC when it names no zone)."""
    try:
        when = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        when = None
    if when is None:
        raise InputError(
            "invalid_expiry", 'expires_at must be an ISO 8601 time, e.g. "2027-01-31T00:00:00Z"'
        )
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    if not now < when <= now + timedelta(days=MAX_TOKEN_DAYS):
        raise InputError(
            "invalid_expiry",
            f"expires_at must be in the future and at most {MAX_TOKEN_DAYS} days away; "
            f"got {value[:40]!r}",
        )
    return when


def _only(data: dict[str, Any], fields: tuple[str, ...]) -> None:
    """Refuse a body with a field this endpoint does not read: a typo (or a field meant for
    another endpoint) would otherwise be silently ignored."""
    unknown = sorted(str(key) for key in data if key not in fields)
    if unknown:
        raise InputError(
            "unknown_field",
            f"unknown field {', '.join(unknown)[:200]}; the body may hold {', '.join(fields)}",
        )


def _text(data: dict[str, Any], field: str) -> str:
    value = data.get(field)
    if not isinstance(value, str) or not value:
        raise InputError(f"missing_{field}", f"send {field} as a non-empty string")
    return value


def _optional_text(data: dict[str, Any], field: str) -> str | None:
    value = data.get(field)
    if value is not None and not isinstance(value, str):
        raise InputError(f"invalid_{field}", f"{field} must be a string")
    return value


def _names(data: dict[str, Any], field: str) -> list[str]:
    value = data.get(field)
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InputError(
            f"invalid_{field}",
            f'send {field} as a list of permission names, e.g. ["profiles:read"]',
        )
    return value


def _json(value: Any, status_code: int = 200) -> Response[bytes]:
    return Response(content=encode(value), media_type="application/json", status_code=status_code)
