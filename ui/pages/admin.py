"""Administration pages: users (/admin/users), roles (/admin/roles), API tokens (/admin/tokens)
and sources with their write keys (/admin/sources). A new token or write key is shown once, in
the answer to the form that made it, and never again.

Touches no database itself: c360.accounts, c360.tokens and c360.governance.sources do, and
each audits its change with the signed-in user as the actor. Also holds the form helpers the
governance and report pages share.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, time, timedelta
from typing import Annotated, Any

from litestar import Request, get, post
from litestar.datastructures import State
from litestar.enums import RequestEncodingType
from litestar.exceptions import NotFoundException
from litestar.handlers import HTTPRouteHandler
from litestar.params import Body, FromPath
from litestar.response import Redirect, Response, Template

from c360 import accounts, tokens
from c360.access import PERMISSIONS, Principal
from c360.api import auth
from c360.errors import InputError
from c360.governance import sources
from c360.ui.pages.common import (
    NAV,
    Link,
    NavItem,
    TableView,
    csv_response,
    page,
    principal,
    require,
    with_query,
)

#: A posted form: a repeated field (checkboxes of one name) arrives as a list.
Form = Annotated[dict[str, Any], Body(media_type=RequestEncodingType.URL_ENCODED)]

#: The administration and governance sections, in the order of their local navigation, with
#: the permission that shows each.
SECTIONS: tuple[NavItem, ...] = (
    NavItem("users", "Users", "/admin/users", "users:write"),
    NavItem("roles", "Roles", "/admin/roles", "users:write"),
    NavItem("tokens", "API tokens", "/admin/tokens", "users:write"),
    NavItem("sources", "Sources", "/admin/sources", "governance:read"),
    NavItem("tracking-plans", "Tracking plans", "/governance/tracking-plans", "governance:read"),
    NavItem("attributes", "Attributes and F0", "/governance/attributes", "governance:read"),
    NavItem("policies", "Access policies", "/governance/policies", "governance:write"),
    NavItem("lineage", "Lineage", "/governance/lineage", "governance:read"),
    NavItem("deletions", "Deletions", "/governance/deletions", "governance:write"),
    NavItem("audit", "Audit log", "/governance/audit", "audit:read"),
    NavItem("compliance", "Compliance", "/governance/compliance", "audit:read"),
)

#: Notices shown after a change, by the `done` query parameter of the redirect.
DONE = {
    "user_created": "The user was created.",
    "role_changed": "The role was changed; the user's sessions ended.",
    "disabled": "The user was disabled; their sessions ended.",
    "enabled": "The user may sign in again.",
    "unlocked": "The lock-out was lifted.",
    "password_reset": "The password was reset; the user's sessions ended.",
    "role_created": "The role was created.",
    "role_saved": "The role was saved.",
    "role_deleted": "The role was deleted.",
    "token_revoked": "The token was revoked.",
    "key_revoked": "The key was revoked.",
    "plan_saved": "The tracking plan was saved; gateways use it within about a second.",
    "attribute_created": "The attribute was defined; it is pending until the next F0 sync.",
    "attribute_saved": "The attribute was changed; the new version is pending until F0 runs.",
    "attribute_retired": "The attribute was retired; F3 stops computing it.",
    "f0": "F0 ran; its outcome and steps are in the runs table.",
    "policies_saved": "The access policies were saved.",
    "deletion_recorded": "The deletion request was recorded.",
    "deletion_run": "The deletion request was run; its status is in the table.",
    "report_saved": "The report was saved.",
    "report_deleted": "The report was deleted.",
    "schedule_created": "The schedule was saved; each run is listed below it.",
    "schedule_deleted": "The schedule was deleted.",
    "shared": "The report was shared.",
    "unshared": "The share was removed.",
}

# -- shared form helpers ---------------------------------------------------------------------


def who(request: Request[Any, Any, Any]) -> Principal:
    """The signed-in principal (the guard has checked the route's permission)."""
    found = principal(request)
    if found is None:
        raise auth.NotSignedIn("not_signed_in", "sign in first")
    return found


def field(form: Mapping[str, Any], name: str) -> str:
    """One text field of a form, trimmed ('' when absent; the last of repeated values)."""
    value = form.get(name)
    if isinstance(value, list):
        value = value[-1] if value else ""
    return "" if value is None else str(value).strip()


def values(form: Mapping[str, Any], name: str) -> list[str]:
    """Every value of a repeated field (checkboxes), in the order sent."""
    value = form.get(name)
    if value is None:
        return []
    return [str(item) for item in (value if isinstance(value, list) else [value])]


def whole(text: str, name: str, default: int | None = None) -> int | None:
    """A whole number typed in a field; `default` when empty; InputError otherwise."""
    if not text:
        return default
    if not text.lstrip("-").isdigit():
        raise InputError(f"invalid_{name}", f"{name.replace('_', ' ')} must be a whole number")
    return int(text)


def day_start(text: str, name: str) -> datetime | None:
    """A date field (YYYY-MM-DD) as the start of that day in UTC; None when empty."""
    if not text:
        return None
    try:
        day = datetime.strptime(text, "%Y-%m-%d").date()
    except ValueError:
        raise InputError(f"invalid_{name}", f"{name} must be a date such as 2026-12-01") from None
    return datetime.combine(day, time(0), tzinfo=UTC)


def done(path: str, what: str, **extra: Any) -> Redirect:
    """Back to a page after a change (post, redirect, get), which says what happened."""
    return Redirect(path=with_query(path, {}, done=what, **extra), status_code=303)


def notice(request: Request[Any, Any, Any]) -> str | None:
    """The sentence for the `done` parameter, if any (unknown values show nothing)."""
    return DONE.get(request.query_params.get("done") or "")


def sections(principal: Principal | None) -> list[NavItem]:
    """The administration and governance sections this principal may open."""
    return [item for item in SECTIONS if principal is not None and principal.can(item.permission)]


def admin_page(
    request: Request[Any, Any, Any],
    template: str,
    title: str,
    section: str,
    context: Mapping[str, Any],
    status_code: int = 200,
) -> Template:
    """A page of this area: the common frame, the local navigation and any notice."""
    local = {
        "sections": sections(principal(request)),
        "local_section": section,
        "notice": notice(request),
        "error": None,
    }
    who_ = principal(request)
    if who_ is None or not who_.can("exports:create"):
        for value in context.values():  # no download link that would only answer 403
            if isinstance(value, TableView):
                value.csv_href = None
    nav_id = _NAV_OF_SECTION.get(section, "governance")
    return page(request, template, title, nav_id, {**local, **context}, status_code=status_code)


#: Which main-navigation entry a local section belongs to (others: governance).
_NAV_OF_SECTION = {
    "users": "admin",
    "roles": "admin",
    "tokens": "admin",
    "audit": "audit",
    "compliance": "audit",
    "reports": "reports",
}


def csv_route(
    path: str, permission: str, make: Callable[[Request[Any, Any, Any], State], TableView]
) -> HTTPRouteHandler:
    """A GET route downloading the table `make` builds as CSV. It declares the permission that
    reads the table, and checks exports:create itself: the role x route matrix expects a route
    to refuse only those lacking what it declares, and every built-in role that may read an
    administration table may also export."""

    def download(request: Request[Any, Any, Any], state: State) -> Response:
        require(request, "exports:create")
        view = make(request, state)
        return csv_response(f"{view.id}.csv", view.columns, view.rows)

    download.__doc__ = f"The table behind {path} as CSV."
    return get(
        path,
        opt={"permission": permission},
        include_in_schema=False,
        sync_to_thread=True,
        name=f"csv:{path}",
    )(download)


def refused(exc: InputError) -> dict[str, Any]:
    """The context that shows a refused form's error beside it."""
    return {"error": {"code": exc.code, "message": exc.message}}


# -- users -------------------------------------------------------------------------------------


@get(
    "/admin/users", opt={"permission": "users:write"}, include_in_schema=False, sync_to_thread=True
)
def users_page(request: Request[Any, Any, Any], state: State) -> Template:
    """Every user with their role and state, and the forms that change them."""
    return _users(request, state)


@post(
    "/admin/users", opt={"permission": "users:write"}, include_in_schema=False, sync_to_thread=True
)
def user_create(request: Request[Any, Any, Any], state: State, data: Form) -> Any:
    """Create a user with a role and an initial password."""
    actor = who(request).actor
    try:
        with state.runtime.pool.connection() as conn:
            accounts.create_user(
                conn,
                actor,
                field(data, "name"),
                field(data, "role"),
                str(data.get("password") or ""),  # a password keeps its spaces
                field(data, "email") or None,
            )
    except InputError as exc:
        return _users(request, state, {**refused(exc), "form": _kept(data)}, 400)
    return done("/admin/users", "user_created")


@post(
    "/admin/users/change",
    opt={"permission": "users:write"},
    include_in_schema=False,
    sync_to_thread=True,
)
def user_change(request: Request[Any, Any, Any], state: State, data: Form) -> Any:
    """Change the user chosen (`user`) by the button pressed (`action`): `role`, `disable`,
    `enable`, `unlock` or `password`."""
    name, action = field(data, "user"), field(data, "action")
    change = _USER_CHANGES.get(action)
    if change is None:
        raise InputError("invalid_action", f"press one of: {', '.join(_USER_CHANGES)}")
    actor = who(request).actor
    try:
        with state.runtime.pool.connection() as conn:
            outcome = change(conn, actor, name, data)
    except InputError as exc:
        return _users(request, state, {**refused(exc), "failed_user": name}, exc.status_code)
    return done("/admin/users", outcome)


def _users(
    request: Request[Any, Any, Any],
    state: State,
    extra: Mapping[str, Any] | None = None,
    status_code: int = 200,
) -> Template:
    with state.runtime.pool.connection() as conn:
        users = accounts.list_users(conn)
        roles = [role.name for role in accounts.list_roles(conn)]
    context = {
        "users": users,
        "roles": roles,
        "now": datetime.now(UTC),
        "form": {},
        "failed_user": None,
        "table": _users_table(state, users),
        **(extra or {}),
    }
    return admin_page(request, "admin/users.html", "Users", "users", context, status_code)


def _users_table(state: State, users: Sequence[accounts.User] | None = None) -> TableView:
    if users is None:
        with state.runtime.pool.connection() as conn:
            users = accounts.list_users(conn)
    return TableView(
        id="users",
        caption="Users",
        columns=("Name", "E-mail", "Role", "Disabled", "Locked until", "Created", "Last sign-in"),
        rows=[
            [u.name, u.email, u.role, u.disabled, u.locked_until, u.created_at, u.last_sign_in_at]
            for u in users
        ],
        csv_href="/admin/export/users",
    )


def _kept(form: Mapping[str, Any]) -> dict[str, str]:
    """What a refused form showed, to show it again (never the password)."""
    return {key: field(form, key) for key in form if key not in ("password", "_csrf")}


def _set_role(conn: Any, actor: str, name: str, form: Mapping[str, Any]) -> str:
    accounts.set_role(conn, actor, name, field(form, "role"))
    return "role_changed"


def _disable(conn: Any, actor: str, name: str, form: Mapping[str, Any]) -> str:
    accounts.disable_user(conn, actor, name)
    return "disabled"


def _enable(conn: Any, actor: str, name: str, form: Mapping[str, Any]) -> str:
    accounts.enable_user(conn, actor, name)
    return "enabled"


def _unlock(conn: Any, actor: str, name: str, form: Mapping[str, Any]) -> str:
    accounts.unlock_user(conn, actor, name)
    return "unlocked"


def _password(conn: Any, actor: str, name: str, form: Mapping[str, Any]) -> str:
    accounts.reset_password(conn, actor, name, str(form.get("password") or ""))
    return "password_reset"


_USER_CHANGES: dict[str, Callable[[Any, str, str, Mapping[str, Any]], str]] = {
    "role": _set_role,
    "disable": _disable,
    "enable": _enable,
    "unlock": _unlock,
    "password": _password,
}

# -- roles -------------------------------------------------------------------------------------


@get(
    "/admin/roles", opt={"permission": "users:write"}, include_in_schema=False, sync_to_thread=True
)
def roles_page(request: Request[Any, Any, Any], state: State) -> Template:
    """Every role with its permissions, and the form for a custom role."""
    return _roles(request, state)


@post(
    "/admin/roles", opt={"permission": "users:write"}, include_in_schema=False, sync_to_thread=True
)
def role_create(request: Request[Any, Any, Any], state: State, data: Form) -> Any:
    """Create a custom role with the permissions ticked."""
    actor = who(request).actor
    try:
        with state.runtime.pool.connection() as conn:
            accounts.create_role(
                conn,
                actor,
                field(data, "name"),
                values(data, "permission"),
                field(data, "description"),
            )
    except InputError as exc:
        form = {**_kept(data), "permissions": values(data, "permission")}
        return _roles(request, state, {**refused(exc), "form": form}, 400)
    return done("/admin/roles", "role_created")


@get(
    "/admin/roles/{name:str}",
    opt={"permission": "users:write"},
    include_in_schema=False,
    sync_to_thread=True,
)
def role_page(request: Request[Any, Any, Any], state: State, name: FromPath[str]) -> Template:
    """One role's edit form (built-in roles are shown, not edited)."""
    return _role(request, state, name)


@post(
    "/admin/roles/{name:str}",
    opt={"permission": "users:write"},
    include_in_schema=False,
    sync_to_thread=True,
)
def role_save(
    request: Request[Any, Any, Any], state: State, name: FromPath[str], data: Form
) -> Any:
    """Save a custom role's permissions and description."""
    actor = who(request).actor
    try:
        with state.runtime.pool.connection() as conn:
            accounts.update_role(
                conn, actor, name, values(data, "permission"), field(data, "description")
            )
    except InputError as exc:
        return _role(request, state, name, refused(exc), exc.status_code)
    return done(f"/admin/roles/{name}", "role_saved")


@post(
    "/admin/roles/{name:str}/delete",
    opt={"permission": "users:write"},
    include_in_schema=False,
    sync_to_thread=True,
)
def role_delete(request: Request[Any, Any, Any], state: State, name: FromPath[str]) -> Any:
    """Delete a custom role that no user holds."""
    actor = who(request).actor
    try:
        with state.runtime.pool.connection() as conn:
            accounts.delete_role(conn, actor, name)
    except InputError as exc:
        return _role(request, state, name, refused(exc), exc.status_code)
    return done("/admin/roles", "role_deleted")


def _roles(
    request: Request[Any, Any, Any],
    state: State,
    extra: Mapping[str, Any] | None = None,
    status_code: int = 200,
) -> Template:
    context = {
        "permissions": PERMISSIONS,
        "form": {"permissions": []},
        "table": _roles_table(state),
        **(extra or {}),
    }
    return admin_page(request, "admin/roles.html", "Roles", "roles", context, status_code)


def _role(
    request: Request[Any, Any, Any],
    state: State,
    name: str,
    extra: Mapping[str, Any] | None = None,
    status_code: int = 200,
) -> Template:
    try:
        with state.runtime.pool.connection() as conn:
            role = accounts.get_role(conn, name)
    except accounts.UnknownAccount as exc:
        raise NotFoundException(exc.message) from None
    context = {"role": role, "permissions": PERMISSIONS, **(extra or {})}
    title = f"Role {role.name}"
    return admin_page(request, "admin/role.html", title, "roles", context, status_code)


def _roles_table(state: State) -> TableView:
    with state.runtime.pool.connection() as conn:
        roles = accounts.list_roles(conn)
    return TableView(
        id="roles",
        caption="Roles",
        columns=("Role", "Built in", "Description", "Permissions"),
        rows=[
            [
                _role_link(role.name),
                role.built_in,
                role.description,
                ", ".join(role.permissions),
            ]
            for role in roles
        ],
        csv_href="/admin/export/roles",
    )


def _role_link(name: str) -> Link:
    return Link(name, f"/admin/roles/{name}")


# -- API tokens --------------------------------------------------------------------------------


@get(
    "/admin/tokens", opt={"permission": "users:write"}, include_in_schema=False, sync_to_thread=True
)
def tokens_page(request: Request[Any, Any, Any], state: State) -> Template:
    """Every API token (never the token itself) and the form for a new one."""
    return _tokens(request, state)


@post(
    "/admin/tokens", opt={"permission": "users:write"}, include_in_schema=False, sync_to_thread=True
)
def token_create(request: Request[Any, Any, Any], state: State, data: Form) -> Template:
    """Make a token with the scopes ticked; the answer shows it, this once."""
    actor = who(request).actor
    try:
        expires = day_start(field(data, "expires"), "expires")
        with state.runtime.pool.connection() as conn:
            secret, record = tokens.create_token(
                conn, actor, field(data, "label"), values(data, "scope"), expires
            )
    except InputError as exc:
        form = {**_kept(data), "scopes": values(data, "scope")}
        return _tokens(request, state, {**refused(exc), "form": form}, 400)
    return _tokens(request, state, {"secret": secret, "secret_label": record.label}, 201)


@post(
    "/admin/tokens/{token_id:int}/revoke",
    opt={"permission": "users:write"},
    include_in_schema=False,
    sync_to_thread=True,
)
def token_revoke(request: Request[Any, Any, Any], state: State, token_id: FromPath[int]) -> Any:
    """Revoke a token for good."""
    actor = who(request).actor
    try:
        with state.runtime.pool.connection() as conn:
            tokens.revoke_token(conn, actor, token_id)
    except InputError as exc:
        return _tokens(request, state, refused(exc), exc.status_code)
    return done("/admin/tokens", "token_revoked")


def _tokens(
    request: Request[Any, Any, Any],
    state: State,
    extra: Mapping[str, Any] | None = None,
    status_code: int = 200,
) -> Template:
    with state.runtime.pool.connection() as conn:
        found = tokens.list_tokens(conn)
    context = {
        "tokens": found,
        "now": datetime.now(UTC),
        "scopes": {k: v for k, v in PERMISSIONS.items() if k not in tokens.FORBIDDEN_SCOPES},
        "form": {"scopes": []},
        "secret": None,
        "table": _tokens_table(state, found),
        **(extra or {}),
    }
    return admin_page(request, "admin/tokens.html", "API tokens", "tokens", context, status_code)


def _tokens_table(state: State, found: Sequence[tokens.ApiToken] | None = None) -> TableView:
    if found is None:
        with state.runtime.pool.connection() as conn:
            found = tokens.list_tokens(conn)
    return TableView(
        id="tokens",
        caption="API tokens",
        columns=("Id", "Label", "Scopes", "Created by", "Created", "Expires", "Revoked", "Used"),
        rows=[
            [
                t.token_id,
                t.label,
                ", ".join(t.scopes),
                t.created_by,
                t.created_at,
                t.expires_at,
                t.revoked_at,
                t.last_used_at,
            ]
            for t in found
        ],
        csv_href="/admin/export/tokens",
    )


# -- sources and write keys --------------------------------------------------------------------

#: How long a rotated key keeps working, as offered by the rotate form (hours).
GRACE_CHOICES_H = (0, 1, 24, 72, 168)


@get(
    "/admin/sources",
    opt={"permission": "governance:read"},
    include_in_schema=False,
    sync_to_thread=True,
)
def sources_page(request: Request[Any, Any, Any], state: State) -> Template:
    """Every source with its keys (prefixes and dates, never a key)."""
    return _sources(request, state)


@post(
    "/admin/sources",
    opt={"permission": "sources:write"},
    include_in_schema=False,
    sync_to_thread=True,
)
def source_create(request: Request[Any, Any, Any], state: State, data: Form) -> Template:
    """Create a source; the answer shows its first key, this once."""
    actor = who(request).actor
    try:
        made = sources.create_source(
            state.runtime, field(data, "name"), actor, field(data, "description")
        )
    except InputError as exc:
        return _sources(request, state, {**refused(exc), "form": _kept(data)}, 400)
    return _sources(request, state, {"new_key": made}, 201)


@post(
    "/admin/sources/rotate",
    opt={"permission": "sources:write"},
    include_in_schema=False,
    sync_to_thread=True,
)
def source_rotate(request: Request[Any, Any, Any], state: State, data: Form) -> Template:
    """A new key for a source (the old ones keep working for the grace chosen); shown once."""
    actor = who(request).actor
    try:
        hours = whole(field(data, "grace_hours"), "grace_hours", 24) or 0
        if hours not in GRACE_CHOICES_H:
            raise InputError("invalid_grace", "choose one of the grace periods offered")
        made = sources.rotate_key(
            state.runtime, field(data, "source"), actor, timedelta(hours=hours)
        )
    except InputError as exc:
        return _sources(request, state, refused(exc), exc.status_code)
    return _sources(request, state, {"new_key": made}, 201)


@post(
    "/admin/sources/revoke",
    opt={"permission": "sources:write"},
    include_in_schema=False,
    sync_to_thread=True,
)
def source_revoke(request: Request[Any, Any, Any], state: State, data: Form) -> Any:
    """Revoke one key of a source at once."""
    actor = who(request).actor
    try:
        sources.revoke_key(state.runtime, field(data, "source"), field(data, "key_id"), actor)
    except InputError as exc:
        return _sources(request, state, refused(exc), exc.status_code)
    return done("/admin/sources", "key_revoked")


def _sources(
    request: Request[Any, Any, Any],
    state: State,
    extra: Mapping[str, Any] | None = None,
    status_code: int = 200,
) -> Template:
    context = {
        "sources": sources.list_sources(state.runtime),
        "now": datetime.now(UTC),
        "can_write": who(request).can("sources:write"),
        "grace_choices": GRACE_CHOICES_H,
        "form": {},
        "new_key": None,
        "table": _keys_table(state),
        **(extra or {}),
    }
    return admin_page(request, "admin/sources.html", "Sources", "sources", context, status_code)


def _keys_table(state: State) -> TableView:
    now = datetime.now(UTC)
    found = sources.list_sources(state.runtime)
    keys = [key for source in found for key in source.keys]
    rows = [
        (k.prefix, k.source, k.state(now), k.created_at, k.created_by, k.expires_at, k.revoked_at)
        for k in keys
    ]
    return TableView(
        id="keys",
        caption="Write keys",
        columns=("Key", "Source", "State", "Created", "Created by", "Expires", "Revoked"),
        rows=rows,
        csv_href="/admin/export/keys",
    )


HANDLERS = [
    users_page,
    user_create,
    user_change,
    csv_route("/admin/export/users", "users:write", lambda _r, state: _users_table(state)),
    csv_route("/admin/export/roles", "users:write", lambda _r, state: _roles_table(state)),
    csv_route("/admin/export/tokens", "users:write", lambda _r, state: _tokens_table(state)),
    csv_route("/admin/export/keys", "governance:read", lambda _r, state: _keys_table(state)),
    roles_page,
    role_create,
    role_page,
    role_save,
    role_delete,
    tokens_page,
    token_create,
    token_revoke,
    sources_page,
    source_create,
    source_rotate,
    source_revoke,
]

NAV.extend(
    [
        NavItem("reports", "Reports", "/reports", "reports:read"),
        NavItem("admin", "Administration", "/admin/users", "users:write"),
        NavItem("governance", "Governance", "/governance/attributes", "governance:read"),
        NavItem("audit", "Audit", "/governance/audit", "audit:read"),
    ]
)
