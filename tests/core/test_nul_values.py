"""A NUL character (which PostgreSQL text cannot hold) in any value an admin or analytics
request carries is a 400 that says so, never a 500 (inputs from a new user's break test)."""

from __future__ import annotations

import pytest

from c360 import accounts

PASSWORD = "correct horse battery"


@pytest.fixture
def admin(client, runtime):
    with runtime.pool.connection() as conn:
        accounts.create_user(conn, "test", "root", "admin", PASSWORD)
    page = client.get("/v1/me")
    token = page.json()["csrf_token"]
    answer = client.post(
        "/v1/session",
        json={"name": "root", "password": PASSWORD},
        headers={"X-CSRF-Token": token},
    )
    assert answer.status_code == 200, answer.text
    client.headers["X-CSRF-Token"] = answer.json().get("csrf_token", token)
    return client


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("get", "/v1/admin/audit?actor=%00", None),
        ("get", "/v1/admin/audit?action=%00", None),
        ("get", "/v1/analytics/overview?source=%00", None),
        (
            "post",
            "/v1/admin/roles",
            {"name": "r", "permissions": ["audit:read"], "description": "d\u0000"},
        ),
        ("post", "/v1/admin/tokens", {"label": "l\u0000", "scopes": ["audit:read"]}),
        ("post", "/v1/admin/deletions", {"reference": "x\u0000"}),
        ("post", "/v1/reports", {"name": "r\u0000", "kind": "overview", "params": {}}),
    ],
)
def test_a_nul_in_a_value_is_a_400_that_names_it(admin, method, path, body):
    answer = getattr(admin, method)(path, **({"json": body} if body is not None else {}))

    assert answer.status_code == 400, answer.text
    assert answer.json()["code"] in ("invalid_text", "invalid_value") or "NUL" in answer.text
