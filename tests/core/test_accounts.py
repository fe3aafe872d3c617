"""Users and roles: argon2id hashes, sign-in with lock-out, disabled users, custom roles, the
admin API, and an audit entry for every change."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from argon2 import PasswordHasher
from litestar.testing import TestClient
from psycopg.conninfo import make_conninfo

from c360 import accounts, audit, migrate, tokens
from c360.access import BUILT_IN_ROLES, PERMISSIONS
from c360.api.app import create_app
from c360.runtime import Runtime

PASSWORD = "correct horse battery"
CSRF = "double-submit-token-for-tests"


@pytest.fixture(autouse=True)
def quick_hashing(monkeypatch) -> None:
    """argon2id with small parameters: the same code path, a fraction of the work per hash
    (the production parameters are checked in the re-hash test)."""
    monkeypatch.setattr(accounts, "HASHER", QUICK)


QUICK = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)


@pytest.fixture
def strict(runtime: Runtime) -> Iterator[Runtime]:
    """A runtime that locks an account after 3 failures in a row, for 5 minutes."""
    rt = Runtime(dataclasses.replace(runtime.settings, lockout_attempts=3, lockout_minutes=5))
    try:
        yield rt
    finally:
        rt.close()


@pytest.fixture
def admin_client(runtime: Runtime) -> Iterator[TestClient]:
    """A test client signed in as an admin called `root`, CSRF header set."""
    with runtime.pool.connection() as conn:
        accounts.create_user(conn, "test", "root", "admin", PASSWORD)
    with TestClient(app=create_app(runtime.settings)) as client:
        csrf = sign_in(client, "root", PASSWORD)
        client.headers["X-CSRF-Token"] = csrf
        yield client


def sign_in(client: TestClient, name: str, password: str) -> str:
    """Sign in through the API; returns the session's CSRF token."""
    client.cookies.set("c360_csrf", CSRF)
    answer = client.post(
        "/v1/session", json={"name": name, "password": password}, headers={"X-CSRF-Token": CSRF}
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["csrf_token"]


def audit_actions(runtime: Runtime) -> list[tuple[str, str, str]]:
    with runtime.pool.connection() as conn:
        rows = conn.execute(
            "SELECT actor, action, target FROM governance.audit_log ORDER BY audit_id"
        ).fetchall()
    return [tuple(row) for row in rows]


def refused(runtime: Runtime, name: str, password: str) -> accounts.SignInRefused:
    with pytest.raises(accounts.SignInRefused) as caught:
        accounts.sign_in(runtime, name, password, "127.0.0.1")
    return caught.value


# -- roles seeded and kept in step --------------------------------------------------------


def test_the_migration_seeds_exactly_the_built_in_roles(engines) -> None:
    dsn, _ = engines
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute("DROP DATABASE IF EXISTS c360_seed_check")
        admin.execute("CREATE DATABASE c360_seed_check")
    try:
        with psycopg.connect(make_conninfo(dsn, dbname="c360_seed_check"), autocommit=True) as c:
            migrate.upgrade(c)
            rows = c.execute("SELECT name, permissions, built_in FROM governance.roles").fetchall()
    finally:
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute("DROP DATABASE c360_seed_check")

    assert {name: tuple(perms) for name, perms, _ in rows} == BUILT_IN_ROLES
    assert all(built_in for _, _, built_in in rows)


def test_built_in_roles_are_brought_back_in_step_with_the_code(runtime) -> None:
    with runtime.pool.connection() as conn:
        conn.execute("UPDATE governance.roles SET permissions = '{}' WHERE name = 'viewer'")
        try:
            assert accounts.ensure_built_in_roles(conn) == ["viewer"]
            assert accounts.ensure_built_in_roles(conn) == []
            viewer = accounts.get_role(conn, "viewer")
        finally:
            accounts.ensure_built_in_roles(conn)

    assert viewer.permissions == BUILT_IN_ROLES["viewer"]
    assert ("system:start", "role.sync", "roles:built-in") in audit_actions(runtime)


# -- users ----------------------------------------------------------------------------------


def test_a_user_is_stored_with_an_argon2id_hash_never_the_password(runtime) -> None:
    with runtime.pool.connection() as conn:
        user = accounts.create_user(conn, "cli:ops", "Lan", "analyst", PASSWORD, "lan@example.vn")
        (stored,) = conn.execute(
            "SELECT password_hash FROM governance.users WHERE user_id = %s", (user.user_id,)
        ).fetchone()
        dump = conn.execute("SELECT row_to_json(u)::text FROM governance.users u").fetchone()[0]

    assert stored.startswith("$argon2id$")
    assert PasswordHasher().verify(stored, PASSWORD)
    assert PASSWORD not in dump
    assert (user.name, user.role, user.email, user.disabled) == (
        "Lan",
        "analyst",
        "lan@example.vn",
        False,
    )


@pytest.mark.parametrize(
    ("name", "role", "password", "code"),
    [
        ("lan", "analyst", "short", "short_password"),
        ("lan", "analyst", "x" * 2000, "long_password"),
        ("lan", "boss", PASSWORD, "unknown_role"),
        ("", "analyst", PASSWORD, "invalid_user_name"),
        ("lan <script>", "analyst", PASSWORD, "invalid_user_name"),
    ],
)
def test_a_user_that_cannot_be_created_says_why(runtime, name, role, password, code) -> None:
    with runtime.pool.connection() as conn, pytest.raises(accounts.AccountError) as caught:
        accounts.create_user(conn, "test", name, role, password)
        assert conn.execute("SELECT count(*) FROM governance.users").fetchone() == (0,)

    assert caught.value.code == code
    if code == "unknown_role":
        assert "admin, analyst, marketer, viewer" in caught.value.message


def test_user_names_are_unique_whatever_their_case(runtime) -> None:
    with runtime.pool.connection() as conn:
        accounts.create_user(conn, "test", "lan", "viewer", PASSWORD)
        with pytest.raises(accounts.AccountConflict) as caught:
            accounts.create_user(conn, "test", "LAN", "viewer", PASSWORD)

    assert caught.value.code == "duplicate_user" and caught.value.status_code == 409


# -- signing in -----------------------------------------------------------------------------


def test_signing_in_gives_a_session_and_the_role_s_permissions(runtime) -> None:
    with runtime.pool.connection() as conn:
        accounts.create_user(conn, "test", "lan", "marketer", PASSWORD)

    session_id, who = accounts.sign_in(runtime, "LAN", PASSWORD, "10.0.0.1")

    assert len(session_id) == 43 and who.session_id == session_id and who.csrf_token
    assert who.permissions == frozenset(BUILT_IN_ROLES["marketer"])
    assert (who.kind, who.name, who.actor) == ("user", "lan", "user:lan")
    assert ("user:lan", "session.sign_in", "user:lan") in audit_actions(runtime)
    with runtime.pool.connection() as conn:
        (last,) = conn.execute("SELECT last_sign_in_at FROM governance.users").fetchone()
    assert last is not None


def test_unknown_name_and_wrong_password_are_refused_alike_after_the_same_work(
    runtime, monkeypatch
) -> None:
    with runtime.pool.connection() as conn:
        accounts.create_user(conn, "test", "lan", "viewer", PASSWORD)
    verified: list[str] = []
    real = accounts.HASHER

    class Counting:
        def verify(self, stored: str, password: str) -> bool:
            verified.append(stored)
            return real.verify(stored, password)

        def __getattr__(self, name: str) -> object:
            return getattr(real, name)

    monkeypatch.setattr(accounts, "HASHER", Counting())

    unknown = refused(runtime, "nobody", PASSWORD)
    wrong = refused(runtime, "lan", "not the password")

    assert (unknown.code, unknown.message) == (wrong.code, wrong.message)
    assert unknown.code == "bad_credentials" and unknown.status_code == 401
    assert len(verified) == 2 and verified[0].startswith("$argon2id$")  # a hash for nobody too
    failed = [a for a in audit_actions(runtime) if a[1] == "session.sign_in_failed"]
    assert [target for _, _, target in failed] == ["user:nobody", "user:lan"]


def test_failures_in_a_row_lock_the_account_until_an_admin_unlocks_it(strict) -> None:
    with strict.pool.connection() as conn:
        accounts.create_user(conn, "test", "lan", "viewer", PASSWORD)

    codes = [refused(strict, "lan", f"wrong password {i}").code for i in range(3)]
    locked = refused(strict, "lan", PASSWORD)  # even the right password, while locked

    assert codes == ["bad_credentials", "bad_credentials", "locked_out"]
    assert locked.code == "locked_out" and "locked until" in locked.message
    with strict.pool.connection() as conn:
        user = accounts.get_user(conn, "lan")
        assert user.locked_until is not None
        assert timedelta(minutes=4) < user.locked_until - datetime.now(UTC) <= timedelta(minutes=5)
        accounts.unlock_user(conn, "user:root", "lan")
    accounts.sign_in(strict, "lan", PASSWORD, "127.0.0.1")
    actions = [action for _, action, _ in audit_actions(strict)]
    assert "user.lock" in actions and "user.unlock" in actions


def test_a_success_resets_the_count_of_failures(strict) -> None:
    with strict.pool.connection() as conn:
        accounts.create_user(conn, "test", "lan", "viewer", PASSWORD)
    for _ in range(2):
        refused(strict, "lan", "wrong password!!")
    accounts.sign_in(strict, "lan", PASSWORD, "127.0.0.1")

    codes = [refused(strict, "lan", "wrong password!!").code for _ in range(2)]

    assert codes == ["bad_credentials", "bad_credentials"]


def test_a_lock_ends_by_itself_when_its_time_is_up(strict) -> None:
    with strict.pool.connection() as conn:
        accounts.create_user(conn, "test", "lan", "viewer", PASSWORD)
        conn.execute("UPDATE governance.users SET locked_until = now() - interval '1 second'")

    _, who = accounts.sign_in(strict, "lan", PASSWORD, "127.0.0.1")

    assert who.name == "lan"


def test_a_disabled_user_cannot_sign_in_and_a_wrong_password_reveals_nothing(runtime) -> None:
    with runtime.pool.connection() as conn:
        accounts.create_user(conn, "test", "lan", "viewer", PASSWORD)
        accounts.disable_user(conn, "user:root", "lan")
        assert accounts.principal_for_user(conn, accounts.get_user(conn, "lan").user_id) is None

    assert refused(runtime, "lan", PASSWORD).code == "disabled"
    assert refused(runtime, "lan", "wrong password!!").code == "bad_credentials"
    with runtime.pool.connection() as conn:
        accounts.enable_user(conn, "user:root", "lan")
    accounts.sign_in(runtime, "lan", PASSWORD, "127.0.0.1")


def test_a_hash_made_with_older_parameters_is_replaced_at_sign_in(runtime, monkeypatch) -> None:
    weak = QUICK
    monkeypatch.setattr(accounts, "HASHER", PasswordHasher())  # the production parameters
    with runtime.pool.connection() as conn:
        accounts.create_user(conn, "test", "lan", "viewer", PASSWORD)
        conn.execute("UPDATE governance.users SET password_hash = %s", (weak.hash(PASSWORD),))

    accounts.sign_in(runtime, "lan", PASSWORD, "127.0.0.1")

    with runtime.pool.connection() as conn:
        (stored,) = conn.execute("SELECT password_hash FROM governance.users").fetchone()
    assert not accounts.HASHER.check_needs_rehash(stored)
    assert accounts.HASHER.verify(stored, PASSWORD)


def test_a_new_password_works_and_the_old_one_no_longer(runtime) -> None:
    with runtime.pool.connection() as conn:
        accounts.create_user(conn, "test", "lan", "viewer", PASSWORD)
        accounts.reset_password(conn, "user:root", "lan", "another long passphrase")
        with pytest.raises(accounts.AccountError) as caught:
            accounts.reset_password(conn, "user:root", "lan", "short")

    assert caught.value.code == "short_password"
    assert refused(runtime, "lan", PASSWORD).code == "bad_credentials"
    accounts.sign_in(runtime, "lan", "another long passphrase", "127.0.0.1")
    assert ("user:root", "user.password", "user:lan") in audit_actions(runtime)


def test_changing_an_unknown_user_says_there_is_none(runtime) -> None:
    with runtime.pool.connection() as conn:
        for change in (
            lambda: accounts.set_role(conn, "t", "ghost", "viewer"),
            lambda: accounts.disable_user(conn, "t", "ghost"),
            lambda: accounts.unlock_user(conn, "t", "ghost"),
            lambda: accounts.reset_password(conn, "t", "ghost", PASSWORD),
        ):
            with pytest.raises(accounts.UnknownAccount) as caught:
                change()
            assert caught.value.code == "unknown_user" and caught.value.status_code == 404


# -- custom roles ---------------------------------------------------------------------------


def test_custom_roles_are_created_changed_and_deleted_with_audit_entries(runtime) -> None:
    with runtime.pool.connection() as conn:
        made = accounts.create_role(conn, "user:root", "auditor", ["audit:read", "audit:read"])
        changed = accounts.update_role(
            conn, "user:root", "auditor", ["governance:read", "audit:read"], "reads the log"
        )
        accounts.create_user(conn, "user:root", "kim", "auditor", PASSWORD)
        principal = accounts.principal_for_user(conn, accounts.get_user(conn, "kim").user_id)
        accounts.set_role(conn, "user:root", "kim", "viewer")
        accounts.delete_role(conn, "user:root", "auditor")
        names = [role.name for role in accounts.list_roles(conn)]

    assert made.permissions == ("audit:read",) and not made.built_in
    assert changed.permissions == ("governance:read", "audit:read")
    assert changed.description == "reads the log"
    assert principal is not None and principal.permissions == {"governance:read", "audit:read"}
    assert names == ["admin", "analyst", "marketer", "viewer"]
    actions = [action for _, action, target in audit_actions(runtime) if target == "role:auditor"]
    assert actions == ["role.create", "role.update", "role.delete"]


@pytest.mark.parametrize(
    ("change", "code"),
    [
        (lambda c: accounts.create_role(c, "t", "x", ["profiles:reed"]), "unknown_permission"),
        (lambda c: accounts.create_role(c, "t", "viewer", []), "duplicate_role"),
        (lambda c: accounts.create_role(c, "t", "bad name", []), "invalid_role_name"),
        (lambda c: accounts.update_role(c, "t", "viewer", ["users:write"]), "built_in_role"),
        (lambda c: accounts.delete_role(c, "t", "admin"), "built_in_role"),
        (lambda c: accounts.delete_role(c, "t", "nobody"), "unknown_role"),
    ],
)
def test_role_changes_c360_refuses_say_why(runtime, change, code) -> None:
    with runtime.pool.connection() as conn, pytest.raises(accounts.AccountError) as caught:
        change(conn)

    assert caught.value.code == code
    if code == "unknown_permission":
        assert "profiles:reed" in caught.value.message and "profiles:read" in caught.value.message


def test_a_role_in_use_cannot_be_deleted_and_the_answer_names_its_users(runtime) -> None:
    with runtime.pool.connection() as conn:
        accounts.create_role(conn, "t", "helpdesk", ["profiles:read"])
        accounts.create_user(conn, "t", "minh", "helpdesk", PASSWORD)
        accounts.create_user(conn, "t", "an", "helpdesk", PASSWORD)
        with pytest.raises(accounts.AccountConflict) as caught:
            accounts.delete_role(conn, "t", "helpdesk")

    assert caught.value.code == "role_in_use"
    assert "an, minh" in caught.value.message


# -- the admin API --------------------------------------------------------------------------


def test_the_admin_api_manages_users_and_audits_each_change(admin_client, runtime) -> None:
    created = admin_client.post(
        "/v1/admin/users", json={"name": "lan", "role": "viewer", "password": PASSWORD}
    )
    listed = admin_client.get("/v1/admin/users")
    promoted = admin_client.patch("/v1/admin/users/lan", json={"role": "analyst"})
    disabled = admin_client.patch("/v1/admin/users/lan", json={"disabled": True})
    unlocked = admin_client.post("/v1/admin/users/lan/unlock")
    password = admin_client.post(
        "/v1/admin/users/lan/password", json={"password": "a brand new passphrase"}
    )

    assert created.status_code == 201 and created.json()["role"] == "viewer"
    assert [user["name"] for user in listed.json()["users"]] == ["lan", "root"]
    assert all("password" not in key for user in listed.json()["users"] for key in user)
    assert promoted.json()["role"] == "analyst" and disabled.json()["disabled"] is True
    assert unlocked.status_code == 200 and password.status_code == 200
    lan = [
        (actor, action) for actor, action, target in audit_actions(runtime) if target == "user:lan"
    ]
    assert lan == [
        ("user:root", "user.create"),
        ("user:root", "user.role"),
        ("user:root", "user.disable"),
        ("user:root", "user.unlock"),
        ("user:root", "user.password"),
    ]
    with runtime.pool.connection() as conn:
        logged = conn.execute(
            "SELECT string_agg(row_to_json(a)::text, '') FROM governance.audit_log a"
        )
        assert PASSWORD not in logged.fetchone()[0]


def test_the_admin_api_manages_roles(admin_client) -> None:
    created = admin_client.post(
        "/v1/admin/roles", json={"name": "helpdesk", "permissions": ["profiles:read"]}
    )
    changed = admin_client.put(
        "/v1/admin/roles/helpdesk", json={"permissions": ["profiles:read", "pii:read"]}
    )
    listed = admin_client.get("/v1/admin/roles").json()["roles"]
    deleted = admin_client.delete("/v1/admin/roles/helpdesk")

    assert created.status_code == 201 and changed.json()["permissions"] == [
        "profiles:read",
        "pii:read",
    ]
    assert [role["name"] for role in listed] == [*BUILT_IN_ROLES, "helpdesk"]
    assert deleted.status_code == 204
    assert [r["name"] for r in admin_client.get("/v1/admin/roles").json()["roles"]] == list(
        BUILT_IN_ROLES
    )


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        (
            "post",
            "/v1/admin/users",
            {"name": "x1", "role": "ghost", "password": PASSWORD},
            400,
            "unknown_role",
        ),
        (
            "post",
            "/v1/admin/users",
            {"name": "x1", "role": "viewer", "password": "short"},
            400,
            "short_password",
        ),
        (
            "post",
            "/v1/admin/users",
            {"name": "root", "role": "viewer", "password": PASSWORD},
            409,
            "duplicate_user",
        ),
        ("post", "/v1/admin/users", {"role": "viewer"}, 400, "missing_name"),
        ("patch", "/v1/admin/users/ghost", {"role": "viewer"}, 404, "unknown_user"),
        ("patch", "/v1/admin/users/root", {"colour": "red"}, 400, "unknown_field"),
        ("patch", "/v1/admin/users/root", {"disabled": "yes"}, 400, "invalid_change"),
        ("post", "/v1/admin/users/ghost/unlock", None, 404, "unknown_user"),
        (
            "post",
            "/v1/admin/roles",
            {"name": "r1", "permissions": "all"},
            400,
            "invalid_permissions",
        ),
        (
            "post",
            "/v1/admin/roles",
            {"name": "r1", "permissions": ["root"]},
            400,
            "unknown_permission",
        ),
        ("put", "/v1/admin/roles/admin", {"permissions": []}, 400, "built_in_role"),
        ("delete", "/v1/admin/roles/viewer", None, 400, "built_in_role"),
        ("delete", "/v1/admin/roles/ghost", None, 404, "unknown_role"),
    ],
)
def test_admin_api_errors_are_json_with_a_code(admin_client, method, path, body, status, code):
    kwargs = {"json": body} if body is not None else {}
    answer = admin_client.request(method.upper(), path, **kwargs)

    assert answer.status_code == status, answer.text
    assert answer.json()["code"] == code and answer.json()["message"]


def test_sign_in_errors_through_the_api_are_json(runtime) -> None:
    with TestClient(app=create_app(runtime.settings)) as client:
        client.cookies.set("c360_csrf", CSRF)
        answer = client.post(
            "/v1/session",
            json={"name": "nobody", "password": PASSWORD},
            headers={"X-CSRF-Token": CSRF},
        )
        missing = client.post("/v1/session", json={"name": "x"}, headers={"X-CSRF-Token": CSRF})

    assert answer.status_code == 401 and answer.json()["code"] == "bad_credentials"
    assert "c360_session" not in answer.headers.get("set-cookie", "")
    assert missing.status_code == 400 and missing.json()["code"] == "missing_password"


def test_every_permission_name_is_known_to_the_roles() -> None:
    assert set(BUILT_IN_ROLES["admin"]) == set(PERMISSIONS)


# -- the last administrator ---------------------------------------------------------------


@pytest.mark.parametrize(
    "change", [{"role": "viewer"}, {"disabled": True}], ids=["demote", "disable"]
)
def test_the_only_admin_cannot_demote_or_disable_themselves(admin_client, runtime, change):
    answer = admin_client.patch("/v1/admin/users/root", json=change)

    assert answer.status_code == 409, answer.text
    assert answer.json()["code"] == "last_admin"
    assert "another" in answer.json()["message"]
    with runtime.pool.connection() as conn:
        root = accounts.get_user(conn, "root")
    assert (root.role, root.disabled) == ("admin", False)


def test_an_admin_can_step_down_once_another_admin_exists(admin_client, runtime) -> None:
    with runtime.pool.connection() as conn:
        accounts.create_user(conn, "test", "kim", "admin", PASSWORD)

    answer = admin_client.patch("/v1/admin/users/root", json={"role": "viewer"})

    assert answer.status_code == 200, answer.text
    with runtime.pool.connection() as conn:
        assert accounts.get_user(conn, "root").role == "viewer"
        with pytest.raises(accounts.AccountConflict) as caught:
            accounts.disable_user(conn, "test", "kim")
    assert caught.value.code == "last_admin"


def test_a_custom_role_cannot_lose_a_permission_when_it_holds_the_last_admin(runtime) -> None:
    # an administrator is a user whose role holds every permission: only they can give any back
    everything = list(PERMISSIONS)
    with runtime.pool.connection() as conn:
        accounts.create_role(conn, "test", "boss", everything)
        accounts.create_user(conn, "test", "lan", "boss", PASSWORD)

        with pytest.raises(accounts.AccountConflict) as caught:
            accounts.update_role(conn, "test", "boss", [p for p in everything if p != "pii:read"])
        role = accounts.get_role(conn, "boss")

    assert caught.value.code == "last_admin"
    assert set(role.permissions) == set(everything)


def test_users_write_alone_cannot_make_its_holder_an_administrator(runtime) -> None:
    with runtime.pool.connection() as conn:
        accounts.create_user(conn, "test", "root", "admin", PASSWORD)
        accounts.create_role(conn, "user:root", "usr", ["users:write"])
        accounts.create_user(conn, "user:root", "u_usr", "usr", PASSWORD)

        refusals = []
        for attempt in (
            lambda: accounts.set_role(conn, "user:u_usr", "u_usr", "admin"),
            lambda: accounts.create_user(conn, "user:u_usr", "u_two", "analyst", PASSWORD),
            lambda: accounts.create_role(conn, "user:u_usr", "more", ["audit:read"]),
            lambda: accounts.update_role(conn, "user:u_usr", "usr", ["users:write", "pii:read"]),
            lambda: tokens.create_token(conn, "user:u_usr", "mine", ["profiles:read"]),
        ):
            with pytest.raises(accounts.GrantRefused) as refused_:
                attempt()
            refusals.append(refused_.value.code)
        # nor may the last real administrator leave while only u_usr could manage users
        with pytest.raises(accounts.AccountConflict) as last:
            accounts.disable_user(conn, "user:root", "root")
        usr = accounts.get_user(conn, "u_usr")

    assert refusals == ["cannot_grant"] * 5
    assert last.value.code == "last_admin"
    assert usr.role == "usr"


# -- lock-out says nothing about which names exist ----------------------------------------


def test_an_unknown_name_is_locked_out_exactly_like_a_real_user(strict) -> None:
    with strict.pool.connection() as conn:
        accounts.create_user(conn, "test", "lan", "viewer", PASSWORD)

    real = [refused(strict, "lan", f"wrong password {i}") for i in range(4)]
    unknown = [refused(strict, "Nobody", f"wrong password {i}") for i in range(2)]
    unknown += [refused(strict, "NOBODY", f"wrong password {i}") for i in range(2)]

    assert [r.code for r in real] == [u.code for u in unknown]
    assert [r.code for r in unknown] == ["bad_credentials"] * 2 + ["locked_out"] * 2
    assert all("locked until" in r.message for r in unknown[2:])
    assert [r.message.split("until")[0] for r in real] == [
        u.message.split("until")[0] for u in unknown
    ]


# -- unknown fields and token expiry -------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("post", "/v1/admin/users", {"name": "kim", "role": "viewer", "pasword": "x"}, "pasword"),
        ("post", "/v1/admin/users/root/password", {"password": PASSWORD, "old": "x"}, "old"),
        ("post", "/v1/admin/roles", {"name": "r1", "permissions": [], "perms": []}, "perms"),
        ("put", "/v1/admin/roles/r1", {"permissions": [], "name": "r2"}, "name"),
        ("post", "/v1/admin/tokens", {"label": "t", "scopes": ["analytics:read"], "ttl": 1}, "ttl"),
    ],
)
def test_admin_bodies_with_an_unknown_field_are_refused_naming_it(
    admin_client, method, path, body, field
) -> None:
    answer = admin_client.request(method.upper(), path, json=body)

    assert answer.status_code == 400, answer.text
    assert answer.json()["code"] == "unknown_field"
    assert answer.json()["message"].startswith(f"unknown field {field};")


def test_a_token_takes_expires_at_in_the_future_and_refuses_one_in_the_past(
    admin_client,
) -> None:
    body = {"label": "old", "scopes": ["analytics:read"]}
    when = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)

    past = admin_client.post(
        "/v1/admin/tokens", json={**body, "expires_at": "2000-01-01T00:00:00Z"}
    )
    bad = admin_client.post("/v1/admin/tokens", json={**body, "expires_at": "soon"})
    both = admin_client.post(
        "/v1/admin/tokens", json={**body, "expires_at": when.isoformat(), "expires_in_days": 3}
    )
    made = admin_client.post(
        "/v1/admin/tokens", json={**body, "expires_at": when.isoformat().replace("+00:00", "Z")}
    )

    assert [a.status_code for a in (past, bad, both)] == [400, 400, 400]
    assert {a.json()["code"] for a in (past, bad, both)} == {"invalid_expiry"}
    assert made.status_code == 201, made.text
    assert datetime.fromisoformat(made.json()["expires_at"]) == when
    listed = admin_client.get("/v1/admin/tokens").json()["tokens"]
    assert [t["label"] for t in listed] == ["old"]


def test_a_role_name_differing_only_in_case_is_taken(runtime) -> None:
    with runtime.pool.connection() as conn:
        with pytest.raises(accounts.AccountConflict) as caught:
            accounts.create_role(conn, "test", "Admin", ["audit:read"])
        names = [role.name for role in accounts.list_roles(conn)]

    assert caught.value.code == "duplicate_role"
    assert "Admin" not in names


def test_revoking_a_revoked_token_changes_nothing_and_is_not_audited_again(runtime) -> None:
    with runtime.pool.connection() as conn:
        _, record = tokens.create_token(conn, "test", "reporting", ["analytics:read"])
        first = tokens.revoke_token(conn, "test", record.token_id)
        second = tokens.revoke_token(conn, "test", record.token_id)
        entries = audit.entries(conn, action_prefix="token.revoke")

    assert first.revoked_at is not None and second.revoked_at == first.revoked_at
    assert len(entries) == 1
