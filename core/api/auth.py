"""Who is asking, and may they: the authentication middleware, the global guard, CSRF checks,
and the answers for requests that are not signed in or not allowed.

The middleware sets `request.user` to the Principal of the session cookie or of an
`Authorization: Bearer` token (a token from the `api_tokens` setting or a scoped token from
c360.tokens), else None. The guard reads each route's `opt`: `permission` must be held by
the principal, `public` lets anyone in. State-changing requests carrying a live session cookie
must also carry the session's CSRF token (header `X-CSRF-Token` or form field `_csrf`); public
forms (sign-in) use a double-submit cookie `c360_csrf` instead. Touches nothing itself: it
reads sessions and tokens through c360.sessions and c360.tokens.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Iterable
from functools import partial
from typing import Any
from urllib.parse import quote, urlsplit

import anyio.to_thread
from litestar import Litestar, Request, Response
from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie
from litestar.handlers import BaseRouteHandler
from litestar.response import Redirect
from litestar.routes import HTTPRoute
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from c360 import sessions, tokens
from c360.access import PERMISSIONS, Principal
from c360.errors import InputError, Unauthorized
from c360.runtime import Runtime

#: The double-submit cookie of forms used before signing in.
CSRF_COOKIE = "c360_csrf"
#: Where a script or API client sends the CSRF token.
CSRF_HEADER = "x-csrf-token"
#: Where an HTML form sends it.
CSRF_FIELD = "_csrf"
#: Methods that change something, and so need a CSRF token when a cookie authenticates them.
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

_SCOPE_SESSION = "c360.session"  # the live session of the cookie (even when a token wins)
_SCOPE_VIA = "c360.via"  # "session", "token" or None
_SCOPE_BEARER = "c360.bearer"  # whether an Authorization: Bearer header came
_SCOPE_NEW_CSRF = "c360.new_csrf"  # a double-submit token to set, when the cookie is absent


class NotSignedIn(Unauthorized):
    """The route needs a principal and the request has none."""


class Forbidden(InputError):
    """The principal lacks the route's permission, or the CSRF token is missing or wrong."""

    status_code = 403


class UnguardedRoute(RuntimeError):
    """A route declares neither a permission nor that it is public (a bug: fail at start)."""


# -- helpers for handlers and templates -------------------------------------------------------


def csrf_token(request: ASGIConnection[Any, Any, Any, Any]) -> str:
    """The CSRF token a page puts in its forms and `hx-headers`: the session's when signed in,
    else the double-submit cookie's (set on this response if the browser has none yet)."""
    user = request.scope.get("user")
    if isinstance(user, Principal) and user.csrf_token:
        return user.csrf_token
    kept = request.cookies.get(CSRF_COOKIE)
    if kept:
        return kept
    fresh: str = request.scope.setdefault(  # type: ignore[call-overload]
        _SCOPE_NEW_CSRF, secrets.token_urlsafe(32)
    )
    return fresh


def wants_html(request: ASGIConnection[Any, Any, Any, Any]) -> bool:
    """Whether the request is a browser's page or HTMX request (answer with pages and
    redirects) rather than an API call (answer with JSON)."""
    if request.url.path.startswith("/v1/") or request.url.path == "/v1":
        return False
    accept = request.headers.get("accept", "")
    return "text/html" in accept or request.headers.get("hx-request") == "true"


def safe_next(target: str | None) -> str:
    """`target` if it is a path on this site, else `/`: a sign-in link must never send the
    browser to another site (`//evil.example`, `https://...`, `/\\evil.example`)."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    if any(ch in target for ch in "\r\n\t\\") or any(ord(ch) < 32 for ch in target):
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/"
    return target


def secure_cookies(request: ASGIConnection[Any, Any, Any, Any]) -> bool:
    """Whether cookies get the Secure flag: `cookie_secure` always / never, or (auto) when the
    request came over HTTPS, directly or through a proxy that says so in X-Forwarded-Proto."""
    setting = request.app.state.settings.cookie_secure
    if setting != "auto":
        return bool(setting == "always")
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return request.url.scheme == "https" or forwarded == "https"


def principal(request: ASGIConnection[Any, Any, Any, Any]) -> Principal | None:
    """The request's principal, or None (never raises)."""
    user = request.scope.get("user")
    return user if isinstance(user, Principal) else None


def actor(request: ASGIConnection[Any, Any, Any, Any]) -> str:
    """How the audit log names whoever sent the request."""
    user = principal(request)
    return user.actor if user is not None else "anonymous"


# -- the middleware -------------------------------------------------------------------------


class AuthenticationMiddleware:
    """Sets `scope["user"]` for every HTTP request, and the double-submit cookie on pages."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            scope["user"] = None
            await self.app(scope, receive, send)
            return
        connection: ASGIConnection[Any, Any, Any, Any] = ASGIConnection(scope)
        await _authenticate(connection, connection.app.state.runtime)
        if CSRF_COOKIE in connection.cookies or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        await self.app(scope, receive, partial(_set_csrf_cookie, connection, send))


async def _authenticate(connection: ASGIConnection[Any, Any, Any, Any], runtime: Runtime) -> None:
    scope = connection.scope
    header = connection.headers.get("authorization", "")
    bearer = header[7:].strip() if header[:7].lower() == "bearer " else None
    session_id = connection.cookies.get(sessions.COOKIE)
    session = None
    if session_id:
        session = await anyio.to_thread.run_sync(sessions.load_session, runtime, session_id)
    token = None
    if bearer:
        token = await _token_principal(runtime, bearer)
    scope[_SCOPE_SESSION] = session  # type: ignore[literal-required]
    scope[_SCOPE_BEARER] = bearer is not None  # type: ignore[literal-required]
    via = "token" if token else "session" if session else None
    scope[_SCOPE_VIA] = via  # type: ignore[literal-required]
    scope["user"] = token or session


async def _token_principal(runtime: Runtime, bearer: str) -> Principal | None:
    if any(hmac.compare_digest(bearer, known) for known in runtime.settings.api_tokens):
        return tokens.SETTINGS_PRINCIPAL
    if not bearer.startswith(tokens.TOKEN_PREFIX):
        return None

    def look_up() -> Principal | None:
        with runtime.pool.connection() as conn:
            return tokens.principal_for_token(conn, bearer)

    return await anyio.to_thread.run_sync(look_up)


async def _set_csrf_cookie(
    connection: ASGIConnection[Any, Any, Any, Any], send: Send, message: Message
) -> None:
    """Give a page's response the double-submit cookie the browser lacks."""
    if message["type"] == "http.response.start":
        headers = list(message.get("headers", []))
        media = dict(headers).get(b"content-type", b"")
        if media.startswith(b"text/html"):
            token = connection.scope.get(_SCOPE_NEW_CSRF) or secrets.token_urlsafe(32)
            headers.append(csrf_cookie(connection, token).to_encoded_header())
            message = {**message, "headers": headers}  # type: ignore[typeddict-item]
    await send(message)


# -- the guard ------------------------------------------------------------------------------


async def guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """Let the request through only if the route is public or the principal holds the route's
    permission; check the CSRF token of state-changing requests a cookie authenticates."""
    opt = handler.opt
    method = connection.scope.get("method", "GET")
    if opt.get("public") or _is_preflight(handler):
        if method in UNSAFE_METHODS and _double_submit(connection, opt):
            await _check_double_submit(connection)
        return
    permission = opt["permission"]
    user = principal(connection)
    if user is None:
        if connection.scope.get(_SCOPE_BEARER):
            raise NotSignedIn(
                "invalid_token", "send `Authorization: Bearer <token>` with a valid token"
            )
        raise NotSignedIn(
            "not_signed_in",
            "sign in first (POST /v1/session), or send `Authorization: Bearer <token>`",
        )
    session = connection.scope.get(_SCOPE_SESSION)
    if method in UNSAFE_METHODS and session is not None:
        await _check_synchronizer(connection, session.csrf_token or "")
    if not user.can(permission):
        raise Forbidden(
            "forbidden", f"this needs the {permission} permission, which {user.actor} lacks"
        )


def check_routes(app: Litestar) -> None:
    """Refuse to start when any route declares neither a permission c360 knows nor that it is
    public, so that nothing ships unguarded."""
    problems = []
    for route in app.routes:
        handlers: Iterable[Any] = getattr(route, "route_handlers", ())
        for handler in handlers:
            if isinstance(route, HTTPRoute) and _is_preflight(handler):
                continue
            problem = _declaration_problem(handler.opt)
            if problem:
                problems.append(f"{route.path} ({handler.handler_name}): {problem}")
    if problems:
        raise UnguardedRoute(
            "routes without a valid access declaration; give each opt={'permission': ...} or "
            "opt={'public': True}: " + "; ".join(problems)
        )


def _declaration_problem(opt: dict[str, Any]) -> str | None:
    if opt.get("public") is True:
        return None
    permission = opt.get("permission")
    if permission is None:
        return "declares neither a permission nor public"
    if permission not in PERMISSIONS:
        return f"unknown permission {permission!r}"
    return None


def _is_preflight(handler: BaseRouteHandler) -> bool:
    """Litestar's own OPTIONS answer (CORS preflight): it carries no credentials, changes
    nothing and reveals only the allowed methods."""
    methods = getattr(handler, "http_methods", None)
    return methods == {"OPTIONS"} and "permission" not in handler.opt


def _double_submit(connection: ASGIConnection[Any, Any, Any, Any], opt: dict[str, Any]) -> bool:
    """Public forms (pages, not /v1) and routes that ask for it check the double-submit
    cookie; the gateway's public /v1 routes authenticate by write key and carry no cookies.
    A signed link (a notification's one-click unsubscribe) is its own credential: a mail
    client posts it with no cookie at all (RFC 8058)."""
    if opt.get("csrf") == "signed_link":
        return False
    return opt.get("csrf") == "double_submit" or not connection.url.path.startswith("/v1/")


async def _check_double_submit(connection: ASGIConnection[Any, Any, Any, Any]) -> None:
    sent = await _sent_token(connection)
    cookie = connection.cookies.get(CSRF_COOKIE, "")
    session = connection.scope.get(_SCOPE_SESSION)
    expected = [cookie] + ([session.csrf_token] if session and session.csrf_token else [])
    if not sent or not any(value and hmac.compare_digest(sent, value) for value in expected):
        raise _csrf_failed()


async def _check_synchronizer(
    connection: ASGIConnection[Any, Any, Any, Any], expected: str
) -> None:
    sent = await _sent_token(connection)
    if not sent or not expected or not hmac.compare_digest(sent, expected):
        raise _csrf_failed()


async def _sent_token(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """The token in the header, else in the form body (read through Litestar's cache, so the
    handler still gets its form)."""
    header = connection.headers.get(CSRF_HEADER)
    if header:
        return header
    media = connection.headers.get("content-type", "")
    if isinstance(connection, Request) and media.startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        value = (await connection.form()).get(CSRF_FIELD)
        return value if isinstance(value, str) else ""
    return ""


def _csrf_failed() -> Forbidden:
    return Forbidden(
        "csrf_failed",
        "the request lacks a valid CSRF token: reload the page and try again. API clients: "
        "GET /v1/me first, keep the c360_csrf cookie it sets and send its csrf_token as the "
        "X-CSRF-Token header (to sign in with POST /v1/session, and on every change made "
        "with the session cookie)",
    )


# -- answers for pages ------------------------------------------------------------------------


def refusal_response(
    request: Request[Any, Any, Any], status: int, code: str, message: str
) -> Response[Any]:
    """A 401 or 403 in the form the client understands: JSON for the API; for a page, a
    redirect to the sign-in form (401) or a small HTML page (403). An API 401 also carries
    the double-submit token an API client needs to sign in (see api_refusal)."""
    if not wants_html(request):
        return api_refusal(request, status, code, message)
    if status == 401:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        location = f"/login?next={quote(safe_next(target), safe='')}"
        if request.headers.get("hx-request") == "true":  # HTMX follows no 303 for a page
            return Response(b"", status_code=401, headers={"HX-Redirect": location})
        return Redirect(path=location, status_code=303)
    return Response(
        _FORBIDDEN_PAGE,
        status_code=status,
        media_type="text/html",
        headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
    )


def api_refusal(
    request: Request[Any, Any, Any], status: int, code: str, message: str
) -> Response[Any]:
    """A JSON 401 or 403. A 401 from a /v1 route a session can use answers the double-submit
    token as `csrf_token` and sets it as the `c360_csrf` cookie when the client has none, so
    that an API client can sign in (POST /v1/session wants that cookie and the same value as
    X-CSRF-Token). The gateway's routes, which take write keys and never sessions, do not."""
    if status != 401 or not _session_route(request):
        return Response({"code": code, "message": message}, status_code=status)
    token = csrf_token(request)
    body = {"code": code, "message": message, "csrf_token": token}
    if request.cookies.get(CSRF_COOKIE) == token:
        return Response(body, status_code=status)
    return Response(body, status_code=status, cookies=[csrf_cookie(request, token)])


#: The opt a public /v1 route sets to say it serves sessions (GET /v1/me), so that its 401
#: carries the token to sign in with.
SIGN_IN_HINT = "sign_in_hint"


def _session_route(request: Request[Any, Any, Any]) -> bool:
    """A /v1 route that needs a permission, signs in, or asks for the sign-in token."""
    if not request.url.path.startswith("/v1/"):
        return False
    try:
        opt = request.route_handler.opt
    except (AttributeError, KeyError):  # no route matched (a 401 raised before routing)
        return False
    return "permission" in opt or "csrf" in opt or bool(opt.get(SIGN_IN_HINT))


def csrf_cookie(request: ASGIConnection[Any, Any, Any, Any], token: str) -> Cookie:
    """The double-submit cookie holding `token` (HTTP-only: clients read the token from a
    page's form or an API answer)."""
    return Cookie(
        key=CSRF_COOKIE,
        value=token,
        path="/",
        httponly=True,
        samesite="lax",
        secure=secure_cookies(request),
    )


_FORBIDDEN_PAGE = (
    '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Not allowed - c360'
    "</title></head><body><main><h1>Not allowed</h1><p>Your role does not give you access to "
    'this page. Ask an administrator if you need it.</p><p><a href="/">Back to the overview'
    "</a></p></main></body></html>"
)
