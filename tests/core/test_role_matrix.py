"""The role x route matrix: every route of the served app (gateway, API and pages, including
routes added after this test was written), every HTTP method it answers, for each built-in role
and for nobody signed in.

A role without the route's declared permission gets 403 (nobody: 401, or for a page the
redirect to sign in); a role holding it gets neither. A hard-coded table of security-critical
expectations, independent of the declarations, catches a route declared with the wrong
permission.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from argon2 import PasswordHasher
from litestar import get
from litestar.testing import TestClient

from c360 import accounts, sessions
from c360.access import BUILT_IN_ROLES, PERMISSIONS
from c360.api.app import create_app
from c360.appliance.web import web_app
from c360.runtime import Runtime

PASSWORD = "correct horse battery"
ROLES = tuple(BUILT_IN_ROLES)
ANONYMOUS = "anonymous"

#: Sample values for path parameters by their declared type; a 404 or 400 for them is fine.
SAMPLES = {
    "int": "1",
    "str": "sample",
    "path": "sample",
    "uuid": "00000000-0000-0000-0000-000000000001",
    "date": "2026-01-01",
    "datetime": "2026-01-01T00:00:00Z",
    "float": "1.5",
    "decimal": "1.5",
}

#: Security-critical expectations, written out rather than read from the routes: (a pattern
#: over "METHOD path", the only roles that may reach every route it matches).
CRITICAL: list[tuple[re.Pattern[str], frozenset[str]]] = [
    # users, roles and API tokens: administrators only
    (re.compile(r"^\w+ /v1/admin/(users|roles|tokens)"), frozenset({"admin"})),
    # any change through the admin API (governance, sources, F0): administrators only
    (re.compile(r"^(POST|PUT|PATCH|DELETE) /v1/admin/"), frozenset({"admin"})),
    # the admin API is for administrators and, to read governance, analysts
    (re.compile(r"^\w+ /v1/admin/"), frozenset({"admin", "analyst"})),
    (re.compile(r"^\w+ /admin/(users|roles|tokens)"), frozenset({"admin"})),
    # the audit log and the compliance report: administrators only (audit:read)
    (re.compile(r"^\w+ (/v1)?/(admin/|governance/)?(audit|compliance)"), frozenset({"admin"})),
    # replaying dead letters changes the pipeline (pipeline:write)
    (re.compile(r"^POST .*/replay"), frozenset({"admin"})),
    # write keys and governance changes (sources:write, governance:write)
    (re.compile(r"^(POST|PUT|PATCH|DELETE) (/v1)?/(governance/)?sources"), frozenset({"admin"})),
    (re.compile(r"^(POST|PUT|PATCH|DELETE) (/v1)?/governance"), frozenset({"admin"})),
    (re.compile(r"^(POST|PUT|PATCH|DELETE) (/v1)?/(admin/)?f0"), frozenset({"admin"})),
]

#: Permissions that neither a viewer nor a marketer may ever hold.
NEVER_FOR_VIEWER_OR_MARKETER = {
    "users:write",
    "sources:write",
    "governance:write",
    "audit:read",
    "pipeline:write",
}

#: Routes that must exist, whatever else is added.
REQUIRED = {"GET /v1/admin/users", "POST /v1/admin/users", "GET /v1/admin/tokens"}


@dataclass(frozen=True)
class Call:
    """One route and method, with its declaration."""

    method: str
    template: str
    path: str
    opt: dict[str, Any]

    @property
    def label(self) -> str:
        return f"{self.method} {self.template}"


@pytest.fixture(autouse=True)
def quick_hashing(monkeypatch) -> None:
    monkeypatch.setattr(
        accounts, "HASHER", PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)
    )


@pytest.fixture
def served(runtime: Runtime) -> Iterator[tuple[TestClient, list[Call]]]:
    app = web_app(runtime.settings)
    with TestClient(app=app, raise_server_exceptions=False) as client:
        yield client, list(_calls(app))


def test_every_role_reaches_exactly_the_routes_its_permissions_allow(runtime, served) -> None:
    client, calls = served
    user_ids = _one_user_per_role(runtime)
    labels = {call.label for call in calls}
    assert labels >= REQUIRED, f"missing routes: {sorted(REQUIRED - labels)}"

    failures = []
    for call in calls:
        for role in (*ROLES, ANONYMOUS):
            status, location = _request(client, runtime, call, role, user_ids.get(role))
            failures += _judge(call, role, status, location)

    assert not failures, "\n".join(failures)


def test_the_critical_permissions_are_out_of_reach_of_viewers_and_marketers() -> None:
    for role in ("viewer", "marketer"):
        assert not NEVER_FOR_VIEWER_OR_MARKETER & set(BUILT_IN_ROLES[role])
    assert {name for name, perms in BUILT_IN_ROLES.items() if "users:write" in perms} == {"admin"}
    assert set(NEVER_FOR_VIEWER_OR_MARKETER) <= set(PERMISSIONS)


@get("/v1/admin/misdeclared", opt={"permission": "dashboards:read"})
async def misdeclared() -> dict[str, str]:
    return {"oops": "an admin route any viewer may read"}


def test_the_table_catches_an_admin_route_declared_with_a_weak_permission(runtime) -> None:
    app = create_app(runtime.settings, [misdeclared])
    user_ids = _one_user_per_role(runtime)
    call = Call("GET", "/v1/admin/misdeclared", "/v1/admin/misdeclared", dict(misdeclared.opt))

    with TestClient(app=app) as client:
        status, location = _request(client, runtime, call, "viewer", user_ids["viewer"])

    assert status == 200  # the declaration lets the viewer in ...
    problems = _judge(call, "viewer", status, location)
    assert problems and "security-critical" in problems[0]  # ... and the table says so


def _judge(call: Call, role: str, status: int, location: str) -> list[str]:
    """What is wrong with one answer, as readable lines (none when it is right)."""
    where = f"{call.label} as {role}: {status}"
    problems = []
    if call.opt.get("public"):
        if status == 403:
            problems.append(f"{where}, but the route is public")
        return problems
    permission = call.opt["permission"]
    if role == ANONYMOUS:
        if call.path.startswith("/v1/") or not location:
            if status != 401:
                problems.append(f"{where}, expected 401")
        elif status != 303 or not location.startswith("/login?next="):
            problems.append(f"{where}, expected a 303 to /login, got {location!r}")
        return problems
    holds = permission in BUILT_IN_ROLES[role]
    if holds and status in (401, 403):
        problems.append(f"{where}, but {role} holds {permission}")
    if not holds and status != 403:
        problems.append(f"{where}, but {role} lacks {permission}: expected 403")
    critical = [
        allowed
        for pattern, allowed in CRITICAL
        if pattern.search(f"{call.method} {call.path}") and role not in allowed
    ]
    if critical and status != 403:
        problems.append(f"{where}: a security-critical route, only {sorted(critical[0])}")
    never = role in ("viewer", "marketer") and permission in NEVER_FOR_VIEWER_OR_MARKETER
    if never and status != 403:
        problems.append(f"{where}: {permission} is never for a {role}")
    return problems


def _request(
    client: TestClient, runtime: Runtime, call: Call, role: str, user_id: int | None
) -> tuple[int, str]:
    """One request as `role`, on a session of its own (a sign-out route may end it)."""
    csrf = "anonymous-double-submit-token"
    cookies = {"c360_csrf": csrf}
    if user_id is not None:
        session_id, csrf = sessions.start_session(runtime, user_id, role)
        cookies = {"c360_session": session_id, "c360_csrf": csrf}
    headers = {
        "X-CSRF-Token": csrf,
        "Cookie": "; ".join(f"{key}={value}" for key, value in cookies.items()),
    }
    if not call.path.startswith("/v1/"):
        headers["Accept"] = "text/html"
    client.cookies.clear()
    kwargs: dict[str, Any] = {}
    if call.method in ("POST", "PUT", "PATCH"):
        kwargs["json"] = {}
    answer = client.request(
        call.method, call.path, headers=headers, follow_redirects=False, **kwargs
    )
    return answer.status_code, answer.headers.get("location", "")


def _one_user_per_role(runtime: Runtime) -> dict[str, int]:
    with runtime.pool.connection() as conn:
        return {
            role: accounts.create_user(conn, "test", f"matrix-{role}", role, PASSWORD).user_id
            for role in ROLES
        }


def _calls(app: Any) -> Iterator[Call]:
    """Every route and method of the app, but Litestar's own OPTIONS answers."""
    for route in app.routes:
        for handler in getattr(route, "route_handlers", ()):
            for method in sorted(getattr(handler, "http_methods", ())):
                if method == "OPTIONS" and "permission" not in handler.opt:
                    continue
                yield Call(method, route.path, _sample_path(route.path), dict(handler.opt))


def _sample_path(template: str) -> str:
    def sample(match: re.Match[str]) -> str:
        kind = match.group(2) or "str"
        return SAMPLES.get(kind, "sample")

    return re.sub(r"\{(\w+)(?::(\w+))?\}", sample, template)
