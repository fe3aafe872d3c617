"""Browser sessions, kept server-side in Valkey: a random 256-bit id in the `c360_session`
cookie, and under a hash of that id the user, role, CSRF token and times.

A session ends after `session_idle_minutes` unused (a sliding Valkey TTL), after
`session_max_hours` however busy, at sign-out, and when the user's role, password or enabled
state changes (a per-user set of session keys; the user's `sessions_valid_after` catches changes
made where Valkey is out of reach, such as the CLI). Touches Valkey keys under `c360:session:`
and `c360:user-sessions:`, and reads `governance.users` through c360.accounts.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from typing import TYPE_CHECKING

from litestar.datastructures import Cookie

from c360 import accounts
from c360.access import Principal

if TYPE_CHECKING:
    from c360.runtime import Runtime

#: The cookie that carries the session id.
COOKIE = "c360_session"

_SESSION_PREFIX = "c360:session:"
_USER_PREFIX = "c360:user-sessions:"
#: What `secrets.token_urlsafe(32)` makes: 43 URL-safe characters (256 bits).
_SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{43}$")
_FIELDS = {"user_id", "role", "csrf", "created", "last_seen"}


def start_session(runtime: Runtime, user_id: int, role: str) -> tuple[str, str]:
    """Open a session for a user who has just signed in; returns (session id, CSRF token)."""
    session_id = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    key = session_key(session_id)
    now = time.time()
    settings = runtime.settings
    pipe = runtime.valkey.pipeline()
    pipe.hset(
        key,
        mapping={
            "user_id": user_id,
            "role": role,
            "csrf": csrf,
            "created": repr(now),
            "last_seen": repr(now),
        },
    )
    pipe.expire(key, settings.session_idle_minutes * 60)
    pipe.sadd(_user_key(user_id), key)
    pipe.expire(_user_key(user_id), settings.session_max_hours * 3600)
    pipe.execute()
    return session_id, csrf


def load_session(runtime: Runtime, session_id: str) -> Principal | None:
    """The principal of a live session (its idle timer restarted), or None when the id is
    unknown, the session has run out, or the user has been disabled or changed since."""
    if not _SESSION_ID.match(session_id or ""):
        return None
    key = session_key(session_id)
    data = {k.decode(): v.decode() for k, v in runtime.valkey.hgetall(key).items()}
    if not data:
        return None
    if not data.keys() >= _FIELDS:  # half a session (expired while last touched): gone
        _forget(runtime, key, data.get("user_id"))
        return None
    created = float(data["created"])
    remaining = runtime.settings.session_max_hours * 3600 - (time.time() - created)
    principal = _current_principal(runtime, data, created) if remaining > 0 else None
    if principal is None:
        _forget(runtime, key, data.get("user_id"))
        return None
    _touch(runtime, key, min(runtime.settings.session_idle_minutes * 60, remaining))
    return Principal(
        kind=principal.kind,
        name=principal.name,
        role=principal.role,
        permissions=principal.permissions,
        user_id=principal.user_id,
        session_id=session_id,
        csrf_token=data["csrf"],
    )


def sign_out(runtime: Runtime, session_id: str) -> None:
    """End one session (nothing happens if it has ended already)."""
    if not _SESSION_ID.match(session_id or ""):
        return
    key = session_key(session_id)
    user_id = runtime.valkey.hget(key, "user_id")
    _forget(runtime, key, user_id.decode() if user_id else None)


def end_user_sessions(runtime: Runtime, user_id: int) -> int:
    """End every session of one user; returns how many were live."""
    keys = runtime.valkey.smembers(_user_key(user_id))
    pipe = runtime.valkey.pipeline()
    if keys:
        pipe.delete(*keys)
    pipe.delete(_user_key(user_id))
    ended = pipe.execute()
    return int(ended[0]) if keys else 0


def session_cookie(session_id: str, secure: bool) -> Cookie:
    """The cookie that carries a session id: HttpOnly (no script reads it), SameSite=Lax (no
    other site's form posts it), for the whole site, and Secure when served over HTTPS. It
    has no expiry of its own: the server ends the session."""
    return Cookie(
        key=COOKIE, value=session_id, path="/", httponly=True, samesite="lax", secure=secure
    )


def session_key(session_id: str) -> str:
    """The Valkey key of a session: a hash of its id, so the keys in Valkey (a dump, a
    replica) are not themselves usable cookies."""
    return _SESSION_PREFIX + hashlib.sha256(session_id.encode()).hexdigest()


def _current_principal(runtime: Runtime, data: dict[str, str], created: float) -> Principal | None:
    """The user's principal if the session still stands for them: enabled, same role, and no
    password or role change since it started."""
    user_id = int(data["user_id"])
    with runtime.pool.connection() as conn:
        state = accounts.sessions_valid_after(conn, user_id)
        if state is None:
            return None
        role, valid_after = state
        if role != data["role"] or created < valid_after.timestamp():
            return None
        return accounts.principal_for_user(conn, user_id)


def _touch(runtime: Runtime, key: str, ttl_s: float) -> None:
    """Restart the idle timer; a session that expired meanwhile is not brought back."""
    if runtime.valkey.expire(key, max(1, int(ttl_s))):
        runtime.valkey.hset(key, "last_seen", repr(time.time()))


def _forget(runtime: Runtime, key: str, user_id: str | None) -> None:
    pipe = runtime.valkey.pipeline()
    pipe.delete(key)
    if user_id:
        pipe.srem(_user_key(int(user_id)), key)
    pipe.execute()


def _user_key(user_id: int) -> str:
    return f"{_USER_PREFIX}{user_id}"
