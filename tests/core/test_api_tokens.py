"""Scoped API read tokens: shown once and stored as a hash, scopes enforced, revoked and expired
tokens refused, audited; tokens from the `api_tokens` setting keep working."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from argon2 import PasswordHasher
from litestar import get
from litestar.testing import TestClient

from c360 import accounts, tokens
from c360.access import SETTINGS_TOKEN_PERMISSIONS
from c360.api.app import create_app
from c360.runtime import Runtime

PASSWORD = "correct horse battery"
DOUBLE = "double-submit-token-for-tests"
API_TOKEN = "test-api-token"  # the shared `settings` fixture's bearer token


@get("/test/analytics", opt={"permission": "analytics:read"})
async def analytics_route() -> dict[str, Any]:
    return {"ok": True}


@get("/test/profiles", opt={"permission": "profiles:read"})
async def profiles_route() -> dict[str, Any]:
    return {"ok": True}


@pytest.fixture(autouse=True)
def quick_hashing(monkeypatch) -> None:
    monkeypatch.setattr(
        accounts, "HASHER", PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)
    )


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(app=create_app(runtime.settings, [analytics_route, profiles_route])) as c:
        yield c


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def make(runtime: Runtime, scopes: list[str], **kwargs: Any) -> tuple[str, tokens.ApiToken]:
    with runtime.pool.connection() as conn:
        return tokens.create_token(conn, "user:root", "reporting", scopes, **kwargs)


def test_a_token_is_shown_once_and_stored_only_as_its_sha256(runtime) -> None:
    token, record = make(runtime, ["analytics:read", "profiles:read"])

    with runtime.pool.connection() as conn:
        (digest,) = conn.execute("SELECT token_sha256 FROM governance.api_tokens").fetchone()
        dump = conn.execute("SELECT row_to_json(t)::text FROM governance.api_tokens t")
        dump_text = dump.fetchone()[0]
        audit = conn.execute(
            "SELECT string_agg(row_to_json(a)::text, '') FROM governance.audit_log a"
        )
        audit_text = audit.fetchone()[0]
        listed = tokens.list_tokens(conn)

    assert token.startswith("c360t_") and len(token) > 40
    assert bytes(digest) == hashlib.sha256(token.encode()).digest()
    assert token not in dump_text and token not in audit_text
    assert [t.token_id for t in listed] == [record.token_id]
    assert "token" not in listed[0].as_json()
    assert record.scopes == ("profiles:read", "analytics:read")  # in c360.access's order
    assert '"token.create"' in audit_text


def test_a_token_reaches_only_the_routes_its_scopes_allow(runtime, client) -> None:
    token, _ = make(runtime, ["analytics:read"])

    allowed = client.get("/test/analytics", headers=bearer(token))
    refused = client.get("/test/profiles", headers=bearer(token))
    admin = client.get("/v1/admin/users", headers=bearer(token))
    me = client.get("/v1/me", headers=bearer(token)).json()

    assert allowed.status_code == 200
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    assert admin.status_code == 403
    assert (me["kind"], me["name"], me["permissions"]) == ("token", "reporting", ["analytics:read"])
    with runtime.pool.connection() as conn:
        assert tokens.list_tokens(conn)[0].last_used_at is not None


def test_a_revoked_token_is_refused(runtime, client) -> None:
    token, record = make(runtime, ["analytics:read"])
    assert client.get("/test/analytics", headers=bearer(token)).status_code == 200

    with runtime.pool.connection() as conn:
        revoked = tokens.revoke_token(conn, "user:root", record.token_id)
        again = tokens.revoke_token(conn, "user:root", record.token_id)
    answer = client.get("/test/analytics", headers=bearer(token))

    assert revoked.revoked_at is not None and again.revoked_at == revoked.revoked_at
    assert answer.status_code == 401 and answer.json()["code"] == "invalid_token"


def test_an_expired_token_is_refused(runtime, client) -> None:
    token, record = make(runtime, ["analytics:read"], expires_at=datetime.now(UTC) + timedelta(1))
    assert client.get("/test/analytics", headers=bearer(token)).status_code == 200

    with runtime.pool.connection() as conn:
        conn.execute(
            "UPDATE governance.api_tokens SET expires_at = now() - interval '1 second'"
            " WHERE token_id = %s",
            (record.token_id,),
        )

    assert client.get("/test/analytics", headers=bearer(token)).status_code == 401


def test_unknown_and_look_alike_tokens_are_refused(runtime, client) -> None:
    token, _ = make(runtime, ["analytics:read"])

    for wrong in (token[:-1] + ("A" if token[-1] != "A" else "B"), "c360t_x", "nonsense"):
        answer = client.get("/test/analytics", headers=bearer(wrong))
        assert answer.status_code == 401 and answer.json()["code"] == "invalid_token"


def test_a_token_from_the_settings_keeps_its_permissions(client) -> None:
    me = client.get("/v1/me", headers=bearer(API_TOKEN)).json()

    assert (me["kind"], me["name"], me["role"]) == ("token", "settings", "api")
    assert set(me["permissions"]) == set(SETTINGS_TOKEN_PERMISSIONS)
    assert client.get("/test/profiles", headers=bearer(API_TOKEN)).status_code == 200
    assert client.get("/v1/admin/tokens", headers=bearer(API_TOKEN)).status_code == 403


@pytest.mark.parametrize(
    ("label", "scopes", "expires_at", "code"),
    [
        ("reporting", ["profiles:reed"], None, "unknown_permission"),
        ("reporting", ["users:write"], None, "forbidden_scope"),
        ("reporting", [], None, "invalid_scopes"),
        ("", ["profiles:read"], None, "invalid_label"),
        ("reporting", ["profiles:read"], datetime(2020, 1, 1, tzinfo=UTC), "invalid_expiry"),
    ],
)
def test_a_token_c360_will_not_make_says_why(runtime, label, scopes, expires_at, code) -> None:
    with runtime.pool.connection() as conn, pytest.raises(accounts.AccountError) as caught:
        tokens.create_token(conn, "user:root", label, scopes, expires_at)

    assert caught.value.code == code


def test_admins_create_list_and_revoke_tokens_through_the_api(runtime, client) -> None:
    with runtime.pool.connection() as conn:
        accounts.create_user(conn, "test", "root", "admin", PASSWORD)
    client.cookies.set("c360_csrf", DOUBLE)
    signed_in = client.post(
        "/v1/session", json={"name": "root", "password": PASSWORD}, headers={"X-CSRF-Token": DOUBLE}
    )
    client.headers["X-CSRF-Token"] = signed_in.json()["csrf_token"]

    created = client.post(
        "/v1/admin/tokens",
        json={"label": "bi", "scopes": ["analytics:read"], "expires_in_days": 30},
    )
    token, token_id = created.json()["token"], created.json()["token_id"]
    listed = client.get("/v1/admin/tokens").json()["tokens"]
    used = client.get("/test/analytics", headers=bearer(token))
    revoked = client.delete(f"/v1/admin/tokens/{token_id}")
    client.cookies.clear()
    after = client.get("/test/analytics", headers=bearer(token))
    missing = client.delete("/v1/admin/tokens/999999", headers=bearer(API_TOKEN))

    assert created.status_code == 201 and created.json()["created_by"] == "user:root"
    assert [t["label"] for t in listed] == ["bi"] and "token" not in listed[0]
    assert used.status_code == 200 and revoked.status_code == 200
    assert revoked.json()["revoked_at"] is not None
    assert after.status_code == 401
    assert missing.status_code == 403  # the settings token may not manage tokens
    with runtime.pool.connection() as conn:
        actions = [
            (row[0], row[1])
            for row in conn.execute(
                "SELECT actor, action FROM governance.audit_log WHERE target = %s"
                " ORDER BY audit_id",
                (f"token:{token_id}",),
            )
        ]
    assert actions == [("user:root", "token.create"), ("user:root", "token.revoke")]


def test_token_api_errors_are_json_with_a_code(runtime, client) -> None:
    with runtime.pool.connection() as conn:
        accounts.create_user(conn, "test", "root", "admin", PASSWORD)
    client.cookies.set("c360_csrf", DOUBLE)
    signed_in = client.post(
        "/v1/session", json={"name": "root", "password": PASSWORD}, headers={"X-CSRF-Token": DOUBLE}
    )
    client.headers["X-CSRF-Token"] = signed_in.json()["csrf_token"]

    bad_days = client.post(
        "/v1/admin/tokens", json={"label": "x", "scopes": ["analytics:read"], "expires_in_days": 0}
    )
    bad_scope = client.post("/v1/admin/tokens", json={"label": "x", "scopes": ["users:write"]})
    missing = client.delete("/v1/admin/tokens/999999")

    assert bad_days.status_code == 400 and bad_days.json()["code"] == "invalid_expiry"
    assert bad_scope.status_code == 400 and bad_scope.json()["code"] == "forbidden_scope"
    assert missing.status_code == 404 and missing.json()["code"] == "unknown_token"
