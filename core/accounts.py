"""People who sign in, and the roles they hold: users with argon2id password hashes, lock-out
after failed sign-ins in a row, and custom roles beside the built-in ones.

Touches `governance.users` and `governance.roles` (and writes `governance.audit_log` in the
same transaction as every change); sessions themselves live in Valkey (c360.sessions). A
change that must end a user's sessions (role, password, disabling) moves the user's
`sessions_valid_after`, so even a change made by the CLI, which cannot reach Valkey, ends them;
the API also deletes them at once with c360.sessions.end_user_sessions.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING, Any

import psycopg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from c360 import audit, sessions
from c360.access import BUILT_IN_ROLES, PERMISSIONS, Principal, unknown_permissions
from c360.errors import InputError

if TYPE_CHECKING:
    from c360.runtime import Runtime

log = logging.getLogger(__name__)

#: Shortest password accepted: long passphrases beat complexity rules (NIST SP 800-63B).
MIN_PASSWORD_LENGTH = 12
#: Longest password accepted: hashing megabytes of "password" would be a cheap way to load
#: the server.
MAX_PASSWORD_LENGTH = 1024
#: User and role names: letters, digits and . _ - @, starting with a letter or digit.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")

#: argon2id with the library's current defaults; a hash made with older parameters is
#: replaced at the next successful sign-in.
HASHER = PasswordHasher()


class AccountError(InputError):
    """A user or role change c360 refuses; the message says what to change."""


class UnknownAccount(AccountError):
    """No user, role or token by that name or id."""

    status_code = 404


class AccountConflict(AccountError):
    """The change clashes with what exists (a duplicate name, a role in use)."""

    status_code = 409


class SignInRefused(InputError):
    """A sign-in that did not succeed: `bad_credentials`, `locked_out` or `disabled`."""

    status_code = 401


@dataclass(frozen=True)
class User:
    """A user as the admin pages and the API show one (never the password hash)."""

    user_id: int
    name: str
    email: str | None
    role: str
    disabled: bool
    failed_attempts: int
    locked_until: datetime | None
    created_at: datetime
    last_sign_in_at: datetime | None

    def as_json(self) -> dict[str, Any]:
        """The user for a JSON answer or an audit entry."""
        return asdict(self)


@dataclass(frozen=True)
class Role:
    """A named set of permissions."""

    name: str
    permissions: tuple[str, ...]
    description: str
    built_in: bool

    def as_json(self) -> dict[str, Any]:
        """The role for a JSON answer or an audit entry."""
        return {**asdict(self), "permissions": list(self.permissions)}


_USER_COLUMNS = (
    "user_id, name, email, role, disabled, failed_attempts, locked_until, created_at,"
    " last_sign_in_at"
)


# -- signing in ---------------------------------------------------------------------------


def sign_in(runtime: Runtime, name: str, password: str, remote: str) -> tuple[str, Principal]:
    """Check name and password, start a session and return its id with the principal.
    Unknown names and wrong passwords are refused alike (code `bad_credentials`), after the
    same amount of hashing work, so neither the answer nor its timing says which names exist."""
    with runtime.pool.connection() as conn, conn.transaction():
        refusal, user_id = _check_sign_in(runtime, conn, name, password, remote)
    if refusal is not None:
        raise refusal
    assert user_id is not None
    with runtime.pool.connection() as conn:
        principal = principal_for_user(conn, user_id)
    if principal is None:  # disabled in the instant between the two transactions
        raise SignInRefused("disabled", _DISABLED_MESSAGE)
    session_id, csrf = sessions.start_session(runtime, user_id, principal.role)
    return session_id, _with_session(principal, session_id, csrf)


def principal_for_user(conn: psycopg.Connection, user_id: int) -> Principal | None:
    """The principal a user acts as now (their role's current permissions); None when the
    user is disabled or gone. The reports scheduler builds a report as its owner with it."""
    row = conn.execute(
        "SELECT u.user_id, u.name, u.role, r.permissions FROM governance.users u"
        " JOIN governance.roles r ON r.name = u.role WHERE u.user_id = %s AND NOT u.disabled",
        (user_id,),
    ).fetchone()
    if row is None:
        return None
    user_id, name, role, permissions = row
    return Principal(
        kind="user", name=name, role=role, permissions=frozenset(permissions), user_id=user_id
    )


def sessions_valid_after(conn: psycopg.Connection, user_id: int) -> tuple[str, datetime] | None:
    """(role, time) for an enabled user: sessions started before that time are over."""
    row = conn.execute(
        "SELECT role, sessions_valid_after FROM governance.users"
        " WHERE user_id = %s AND NOT disabled",
        (user_id,),
    ).fetchone()
    return None if row is None else (row[0], row[1])


_BAD_CREDENTIALS = "the name or password is not right; check both and try again"
_DISABLED_MESSAGE = "this account is disabled; ask an administrator to enable it"


def _check_sign_in(
    runtime: Runtime, conn: psycopg.Connection, name: str, password: str, remote: str
) -> tuple[SignInRefused | None, int | None]:
    """Decide one sign-in and write its consequences (counters, lock, audit entry); the
    refusal is returned rather than raised so that those writes are committed."""
    settings = runtime.settings
    row = conn.execute(
        "SELECT user_id, name, password_hash, disabled, failed_attempts, locked_until"
        " FROM governance.users WHERE lower(name) = lower(%s) FOR UPDATE",
        (name,),
    ).fetchone()
    target = f"user:{(row[1] if row else name)[:100]}"
    now = datetime.now(UTC)
    if row is None:
        _verify(_dummy_hash(), password)  # same work as for a real user
        code, message = _count_unknown_failure(runtime, name, now)
        return _refused(conn, target, code, message, "unknown_user", remote)
    user_id, _, password_hash, disabled, failed, locked_until = row
    if locked_until is not None and locked_until > now:
        _verify(_dummy_hash(), password)
        return _refused(conn, target, "locked_out", _locked_message(locked_until), "locked", remote)
    if not _verify(password_hash, password):
        return _count_failure(conn, user_id, target, failed + 1, settings, remote)
    if disabled:
        return _refused(conn, target, "disabled", _DISABLED_MESSAGE, "disabled", remote)
    _succeed(conn, user_id, password_hash, password, target, remote)
    return None, user_id


def _count_failure(
    conn: psycopg.Connection, user_id: int, target: str, failed: int, settings: Any, remote: str
) -> tuple[SignInRefused, None]:
    """One more failure in a row; at the limit, lock the account and start counting afresh."""
    if failed < settings.lockout_attempts:
        conn.execute(
            "UPDATE governance.users SET failed_attempts = %s WHERE user_id = %s",
            (failed, user_id),
        )
        return _refused(conn, target, "bad_credentials", _BAD_CREDENTIALS, "password", remote)
    until = datetime.now(UTC) + timedelta(minutes=settings.lockout_minutes)
    conn.execute(
        "UPDATE governance.users SET failed_attempts = 0, locked_until = %s WHERE user_id = %s",
        (until, user_id),
    )
    audit.record(
        conn, actor="system:sign-in", action="user.lock", target=target, after={"until": until}
    )
    return _refused(conn, target, "locked_out", _locked_message(until), "password", remote)


#: Valkey keys counting failed sign-ins under names no user has, so that they are locked out
#: exactly as a real user would be and the answers do not tell which names exist.
_UNKNOWN_PREFIX = "c360:sign-in-unknown:"
#: How long a count for an unknown name is kept without a new failure.
_UNKNOWN_TTL_S = 24 * 3600


def _count_unknown_failure(runtime: Runtime, name: str, now: datetime) -> tuple[str, str]:
    """(code, message) for a failed sign-in under a name no user has: counted and locked in
    Valkey (keyed by the lower-cased name) the same way as a real user's failures."""
    settings = runtime.settings
    digest = hashlib.sha256(name.lower().encode()).hexdigest()
    key = _UNKNOWN_PREFIX + digest
    stored = {k.decode(): v.decode() for k, v in runtime.valkey.hgetall(key).items()}
    until = datetime.fromisoformat(stored["until"]) if stored.get("until") else None
    if until is not None and until > now:
        return "locked_out", _locked_message(until)
    failed = int(stored.get("failed", 0)) + 1
    if failed < settings.lockout_attempts:
        runtime.valkey.hset(key, mapping={"failed": failed, "until": ""})
        runtime.valkey.expire(key, _UNKNOWN_TTL_S)
        return "bad_credentials", _BAD_CREDENTIALS
    until = now + timedelta(minutes=settings.lockout_minutes)
    runtime.valkey.hset(key, mapping={"failed": 0, "until": until.isoformat()})
    runtime.valkey.expire(key, max(_UNKNOWN_TTL_S, settings.lockout_minutes * 60))
    return "locked_out", _locked_message(until)


def _succeed(
    conn: psycopg.Connection,
    user_id: int,
    password_hash: str,
    password: str,
    target: str,
    remote: str,
) -> None:
    """Reset the failure count, note the time, and re-hash if the parameters have changed."""
    new_hash = HASHER.hash(password) if HASHER.check_needs_rehash(password_hash) else None
    conn.execute(
        "UPDATE governance.users SET failed_attempts = 0, locked_until = NULL,"
        " last_sign_in_at = now(), password_hash = coalesce(%s, password_hash)"
        " WHERE user_id = %s",
        (new_hash, user_id),
    )
    audit.record(
        conn,
        actor=target,
        action="session.sign_in",
        target=target,
        detail={"remote": remote, "rehashed": new_hash is not None},
    )


def _refused(
    conn: psycopg.Connection, target: str, code: str, message: str, reason: str, remote: str
) -> tuple[SignInRefused, None]:
    audit.record(
        conn,
        actor="anonymous",
        action="session.sign_in_failed",
        target=target,
        detail={"reason": reason, "remote": remote},
    )
    return SignInRefused(code, message), None


def _locked_message(until: datetime) -> str:
    return (
        "too many failed sign-ins: this account is locked until "
        f"{until.astimezone(UTC):%H:%M} UTC; wait, or ask an administrator to unlock it"
    )


def _verify(password_hash: str, password: str) -> bool:
    try:
        return HASHER.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@cache
def _dummy_hash() -> str:
    """A hash of nothing anyone knows, verified against when the user does not exist."""
    return HASHER.hash("c360 dummy password that no account has")


def _with_session(principal: Principal, session_id: str, csrf: str) -> Principal:
    return Principal(
        kind=principal.kind,
        name=principal.name,
        role=principal.role,
        permissions=principal.permissions,
        user_id=principal.user_id,
        session_id=session_id,
        csrf_token=csrf,
    )


# -- users ---------------------------------------------------------------------------------


def list_users(conn: psycopg.Connection) -> list[User]:
    """Every user, by name."""
    rows = conn.execute(
        f"SELECT {_USER_COLUMNS} FROM governance.users ORDER BY lower(name)"
    ).fetchall()
    return [User(*row) for row in rows]


def get_user(conn: psycopg.Connection, name: str) -> User:
    """The user called `name` (any case); UnknownAccount if there is none."""
    row = conn.execute(
        f"SELECT {_USER_COLUMNS} FROM governance.users WHERE lower(name) = lower(%s)", (name,)
    ).fetchone()
    if row is None:
        raise UnknownAccount("unknown_user", f"there is no user called {name[:100]!r}")
    return User(*row)


def create_user(
    conn: psycopg.Connection,
    actor: str,
    name: str,
    role: str,
    password: str,
    email: str | None = None,
) -> User:
    """Add a user with a role and a password (kept only as its argon2id hash)."""
    _check_name(name, "user")
    _check_password(password)
    with conn.transaction():
        _require_role(conn, role, actor)
        if _user_row(conn, name) is not None:
            raise AccountConflict(
                "duplicate_user", f"a user called {name!r} exists already; choose another name"
            )
        conn.execute(
            "INSERT INTO governance.users (name, email, role, password_hash)"
            " VALUES (%s, %s, %s, %s)",
            (name, email or None, role, HASHER.hash(password)),
        )
        user = get_user(conn, name)
        audit.record(
            conn, actor=actor, action="user.create", target=f"user:{name}", after=user.as_json()
        )
    return user


def set_role(conn: psycopg.Connection, actor: str, name: str, role: str) -> User:
    """Give a user another role; their sessions end (the next request signs in afresh)."""
    with conn.transaction():
        before = get_user(conn, name)
        _require_role(conn, role, actor)
        admins = _count_admins(conn)
        conn.execute(
            "UPDATE governance.users SET role = %s, sessions_valid_after = now()"
            " WHERE user_id = %s",
            (role, before.user_id),
        )
        _require_an_admin_left(conn, admins)
        audit.record(
            conn,
            actor=actor,
            action="user.role",
            target=f"user:{before.name}",
            before={"role": before.role},
            after={"role": role},
        )
        return get_user(conn, name)


def disable_user(conn: psycopg.Connection, actor: str, name: str) -> User:
    """Stop a user from signing in, ending their sessions; their history stays."""
    return _set_disabled(conn, actor, name, True)


def enable_user(conn: psycopg.Connection, actor: str, name: str) -> User:
    """Let a disabled user sign in again."""
    return _set_disabled(conn, actor, name, False)


def unlock_user(conn: psycopg.Connection, actor: str, name: str) -> User:
    """Lift a lock-out and clear the count of failed sign-ins."""
    with conn.transaction():
        before = get_user(conn, name)
        conn.execute(
            "UPDATE governance.users SET failed_attempts = 0, locked_until = NULL"
            " WHERE user_id = %s",
            (before.user_id,),
        )
        audit.record(
            conn,
            actor=actor,
            action="user.unlock",
            target=f"user:{before.name}",
            before={"locked_until": before.locked_until, "failed_attempts": before.failed_attempts},
            after={"locked_until": None, "failed_attempts": 0},
        )
        return get_user(conn, name)


def reset_password(conn: psycopg.Connection, actor: str, name: str, password: str) -> User:
    """Set a new password (which also lifts a lock-out) and end the user's sessions."""
    _check_password(password)
    with conn.transaction():
        before = get_user(conn, name)
        conn.execute(
            "UPDATE governance.users SET password_hash = %s, failed_attempts = 0,"
            " locked_until = NULL, sessions_valid_after = now() WHERE user_id = %s",
            (HASHER.hash(password), before.user_id),
        )
        audit.record(conn, actor=actor, action="user.password", target=f"user:{before.name}")
        return get_user(conn, name)


def _set_disabled(conn: psycopg.Connection, actor: str, name: str, disabled: bool) -> User:
    with conn.transaction():
        before = get_user(conn, name)
        admins = _count_admins(conn)
        conn.execute(
            "UPDATE governance.users SET disabled = %s, sessions_valid_after = now()"
            " WHERE user_id = %s",
            (disabled, before.user_id),
        )
        _require_an_admin_left(conn, admins)
        audit.record(
            conn,
            actor=actor,
            action="user.disable" if disabled else "user.enable",
            target=f"user:{before.name}",
            before={"disabled": before.disabled},
            after={"disabled": disabled},
        )
        return get_user(conn, name)


def _count_admins(conn: psycopg.Connection) -> int:
    """How many enabled users hold every permission (an administrator: only they can give any
    permission back, since nobody may grant what they lack). The table lock keeps two
    concurrent changes from each leaving the other's admin as the last one."""
    conn.execute("LOCK TABLE governance.users IN SHARE ROW EXCLUSIVE MODE")
    row = conn.execute(
        "SELECT count(*) FROM governance.users u JOIN governance.roles r ON r.name = u.role"
        " WHERE NOT u.disabled AND r.permissions @> %s::text[]",
        (list(PERMISSIONS),),
    ).fetchone()
    return int(row[0]) if row else 0


def _require_an_admin_left(conn: psycopg.Connection, before: int) -> None:
    """Refuse a change (made, not yet committed) that leaves no enabled user able to manage
    users where there was one; raising inside the change's transaction rolls it back. A
    change where there was none already (a recovery from the CLI) is let through."""
    if before > 0 and _count_admins(conn) == 0:
        raise AccountConflict(
            "last_admin",
            "this would leave no enabled user who can manage users: make another user an "
            "administrator first",
        )


def _user_row(conn: psycopg.Connection, name: str) -> tuple[Any, ...] | None:
    return conn.execute(
        "SELECT user_id FROM governance.users WHERE lower(name) = lower(%s)", (name,)
    ).fetchone()


def _check_name(name: str, what: str) -> None:
    if not NAME_PATTERN.match(name or ""):
        raise AccountError(
            f"invalid_{what}_name",
            f"a {what} name is 1 to 64 letters, digits or . _ - @, starting with a letter or "
            f"digit; got {name[:100]!r}",
        )


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(
            "short_password",
            f"a password needs at least {MIN_PASSWORD_LENGTH} characters; a few words "
            "strung together make a good one",
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise AccountError(
            "long_password", f"a password may have at most {MAX_PASSWORD_LENGTH} characters"
        )


# -- roles ---------------------------------------------------------------------------------


def ensure_built_in_roles(conn: psycopg.Connection) -> list[str]:
    """Bring the built-in roles in the database in step with c360.access.BUILT_IN_ROLES (a new
    c360 version may have changed them); returns the names changed. Run at app start."""
    changed = []
    with conn.transaction():
        stored = {
            name: (list(permissions), built_in)
            for name, permissions, built_in in conn.execute(
                "SELECT name, permissions, built_in FROM governance.roles"
            ).fetchall()
        }
        for name, permissions in BUILT_IN_ROLES.items():
            if stored.get(name) == (list(permissions), True):
                continue
            conn.execute(
                "INSERT INTO governance.roles (name, permissions, built_in) VALUES (%s, %s, true)"
                " ON CONFLICT (name) DO UPDATE SET permissions = EXCLUDED.permissions,"
                " built_in = true",
                (name, list(permissions)),
            )
            changed.append(name)
        if changed:
            audit.record(
                conn,
                actor="system:start",
                action="role.sync",
                target="roles:built-in",
                detail={"roles": changed},
            )
    return changed


def list_roles(conn: psycopg.Connection) -> list[Role]:
    """Every role: built-in ones first, then custom ones by name."""
    rows = conn.execute(
        "SELECT name, permissions, description, built_in FROM governance.roles"
        " ORDER BY NOT built_in, name"
    ).fetchall()
    return [
        Role(name, tuple(permissions), description, built_in)
        for name, permissions, description, built_in in rows
    ]


def get_role(conn: psycopg.Connection, name: str) -> Role:
    """The role called `name`; UnknownAccount if there is none."""
    for role in list_roles(conn):
        if role.name == name:
            return role
    raise UnknownAccount("unknown_role", _unknown_role_message(conn, name))


def create_role(
    conn: psycopg.Connection,
    actor: str,
    name: str,
    permissions: list[str],
    description: str = "",
) -> Role:
    """Add a custom role with these permissions."""
    _check_name(name, "role")
    _check_permissions(permissions)
    with conn.transaction():
        require_may_grant(conn, actor, list(permissions))
        # `Admin` beside `admin` would only confuse whoever picks a role from the list
        exists = conn.execute(
            "SELECT 1 FROM governance.roles WHERE lower(name) = lower(%s)", (name,)
        )
        if exists.fetchone() is not None:
            raise AccountConflict(
                "duplicate_role", f"a role called {name!r} exists already; choose another name"
            )
        conn.execute(
            "INSERT INTO governance.roles (name, permissions, description) VALUES (%s, %s, %s)",
            (name, _ordered(permissions), description),
        )
        role = get_role(conn, name)
        audit.record(
            conn, actor=actor, action="role.create", target=f"role:{name}", after=role.as_json()
        )
    return role


def update_role(
    conn: psycopg.Connection,
    actor: str,
    name: str,
    permissions: list[str],
    description: str | None = None,
) -> Role:
    """Change a custom role's permissions (and description); its users get them at their
    next request. Built-in roles follow the code and cannot be changed."""
    _check_permissions(permissions)
    with conn.transaction():
        require_may_grant(conn, actor, list(permissions))
        before = get_role(conn, name)
        _refuse_built_in(before, "changed")
        admins = _count_admins(conn)
        conn.execute(
            "UPDATE governance.roles SET permissions = %s,"
            " description = coalesce(%s, description) WHERE name = %s",
            (_ordered(permissions), description, name),
        )
        _require_an_admin_left(conn, admins)
        after = get_role(conn, name)
        audit.record(
            conn,
            actor=actor,
            action="role.update",
            target=f"role:{name}",
            before=before.as_json(),
            after=after.as_json(),
        )
    return after


def delete_role(conn: psycopg.Connection, actor: str, name: str) -> None:
    """Delete a custom role that no user holds."""
    with conn.transaction():
        before = get_role(conn, name)
        _refuse_built_in(before, "deleted")
        holders = [
            row[0]
            for row in conn.execute(
                "SELECT name FROM governance.users WHERE role = %s ORDER BY name", (name,)
            ).fetchall()
        ]
        if holders:
            raise AccountConflict(
                "role_in_use",
                f"the role {name!r} is held by {', '.join(holders[:20])}"
                f"{' and others' if len(holders) > 20 else ''}: give them another role first",
            )
        admins = _count_admins(conn)
        conn.execute("DELETE FROM governance.roles WHERE name = %s", (name,))
        _require_an_admin_left(conn, admins)
        audit.record(
            conn, actor=actor, action="role.delete", target=f"role:{name}", before=before.as_json()
        )


def _require_role(conn: psycopg.Connection, role: str, actor: str | None = None) -> None:
    """The role exists, and `actor` (when a signed-in user) holds every permission it gives."""
    found = conn.execute(
        "SELECT permissions FROM governance.roles WHERE name = %s", (role,)
    ).fetchone()
    if found is None:
        raise AccountError("unknown_role", _unknown_role_message(conn, role))
    if actor is not None:
        require_may_grant(conn, actor, list(found[0]))


class GrantRefused(AccountError):
    """A user tried to give away a permission they do not hold themselves."""

    status_code = 403


def require_may_grant(conn: psycopg.Connection, actor: str, permissions: list[str]) -> None:
    """Refuse when `actor`, a signed-in user (`user:NAME`), would give a role, user or token
    a permission their own role lacks: `users:write` alone must not be a way to make oneself
    an administrator. The command line (`cli:...`) is the machine's operator and may; so may
    an actor that names no stored user (a script's own label)."""
    if not actor.startswith("user:"):
        return
    row = conn.execute(
        "SELECT r.permissions FROM governance.users u JOIN governance.roles r ON r.name = u.role"
        " WHERE lower(u.name) = lower(%s)",
        (actor.removeprefix("user:"),),
    ).fetchone()
    if row is None:  # not a stored user (a script naming itself): nothing to compare with
        return
    missing = sorted(set(permissions) - set(row[0]))
    if missing:
        raise GrantRefused(
            "cannot_grant",
            f"you may give only permissions you hold yourself; you lack {', '.join(missing)}",
        )


def _unknown_role_message(conn: psycopg.Connection, role: str) -> str:
    names = [row[0] for row in conn.execute("SELECT name FROM governance.roles ORDER BY name")]
    return f"there is no role called {role[:100]!r}; the roles are {', '.join(names)}"


def _check_permissions(permissions: list[str]) -> None:
    if not isinstance(permissions, list | tuple) or not all(
        isinstance(p, str) for p in permissions
    ):
        raise AccountError("invalid_permissions", "permissions must be a list of names")
    unknown = unknown_permissions(list(permissions))
    if unknown:
        raise AccountError(
            "unknown_permission",
            f"unknown permission {', '.join(unknown)}; the permissions are "
            f"{', '.join(PERMISSIONS)}",
        )


def _refuse_built_in(role: Role, what: str) -> None:
    if role.built_in:
        raise AccountError(
            "built_in_role",
            f"{role.name!r} is a built-in role and cannot be {what}; create a custom role instead",
        )


def _ordered(permissions: list[str]) -> list[str]:
    """The permissions without repeats, in the order c360.access lists them."""
    return [name for name in PERMISSIONS if name in set(permissions)]
