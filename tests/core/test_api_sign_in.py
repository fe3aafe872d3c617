"""Signing in through the JSON API the way its errors say: GET /v1/me answers 401 with the
double-submit token (and sets the `c360_csrf` cookie), POST /v1/session sends it back, and the
session's own token then guards changes."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher
from litestar.testing import TestClient

from c360 import accounts
from c360.api.app import create_app

PASSWORD = "correct horse battery"


@pytest.fixture(autouse=True)
def quick_hashing(monkeypatch) -> None:
    monkeypatch.setattr(
        accounts, "HASHER", PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)
    )


def test_an_api_client_signs_in_with_the_token_its_first_401_gives(runtime) -> None:
    with runtime.pool.connection() as conn:
        accounts.create_user(conn, "user:test", "root", "admin", PASSWORD)
    credentials = {"name": "root", "password": PASSWORD}

    with TestClient(app=create_app(runtime.settings)) as client:
        without = client.post("/v1/session", json=credentials)
        me = client.get("/v1/me")
        token = me.json()["csrf_token"]
        kept = client.cookies.get("c360_csrf")
        signed = client.post("/v1/session", json=credentials, headers={"X-CSRF-Token": token})
        again = client.get("/v1/me")
        session_token = signed.json()["csrf_token"]
        made = client.post(
            "/v1/admin/users",
            json={"name": "kim", "role": "viewer", "password": PASSWORD},
            headers={"X-CSRF-Token": session_token},
        )

    assert without.status_code == 403 and "GET /v1/me" in without.json()["message"]
    assert me.status_code == 401 and me.json()["code"] == "not_signed_in"
    assert "POST /v1/session" in me.json()["message"] and "X-CSRF-Token" in me.json()["message"]
    assert len(token) >= 32 and kept == token
    assert signed.status_code == 200, signed.text
    assert (again.status_code, again.json()["name"]) == (200, "root")
    assert made.status_code == 201, made.text


def test_a_401_keeps_the_cookie_the_client_already_has(runtime) -> None:
    with TestClient(app=create_app(runtime.settings)) as client:
        client.cookies.set("c360_csrf", "already-set-double-submit-token")
        me = client.get("/v1/me")
        guarded = client.get("/v1/admin/users")

    assert me.json()["csrf_token"] == "already-set-double-submit-token"
    assert "c360_csrf" not in me.headers.get("set-cookie", "")
    assert guarded.status_code == 401
    assert guarded.json()["csrf_token"] == "already-set-double-submit-token"
