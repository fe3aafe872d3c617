"""Sessions in Valkey (cookie flags, idle and absolute expiry, sign-out, ending on a change of
role, password or state), CSRF on cookie-authenticated changes, the double-submit sign-in, the
answers for pages (sign-in redirect without open redirects, a 403 page), and the start-up
check that every route declares its access."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from typing import Annotated, Any
from urllib.parse import parse_qs, urlsplit

import pytest
from argon2 import PasswordHasher
from litestar import get, post
from litestar.enums import MediaType, RequestEncodingType
from litestar.params import Body
from litestar.testing import TestClient

from c360 import accounts, sessions
from c360.api.app import create_app
from c360.api.auth import UnguardedRoute, safe_next
from c360.runtime import Runtime

#: The bearer token and write key of the shared `settings` fixture.
API_TOKEN = "test-api-token"
WRITE_KEY = "test-write-key-1"

PASSWORD = "correct horse battery"
DOUBLE = "double-submit-token-for-tests"

Form = Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)]


@get("/test/page", opt={"permission": "governance:write"}, media_type=MediaType.HTML)
async def guarded_page() -> str:
    return "<p>governance</p>"


@get("/test/open", opt={"public": True}, media_type=MediaType.HTML)
async def open_page() -> str:
    return "<form></form>"


@post("/test/form", opt={"permission": "dashboards:read"}, status_code=200)
async def form_post(data: Form) -> dict[str, Any]:
    return {"got": data}


@post("/test/write", opt={"permission": "dashboards:read"}, status_code=200)
async def json_post(data: dict[str, Any]) -> dict[str, Any]:
    return {"got": data}


@post("/test/public-form", opt={"public": True}, status_code=200)
async def public_form(data: Form) -> dict[str, Any]:
    return {"got": data}


TEST_ROUTES = [guarded_page, open_page, form_post, json_post, public_form]


@pytest.fixture(autouse=True)
def quick_hashing(monkeypatch) -> None:
    monkeypatch.setattr(
        accounts, "HASHER", PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)
    )


@pytest.fixture
def users(runtime: Runtime) -> None:
    with runtime.pool.connection() as conn:
        accounts.create_user(conn, "test", "root", "admin", PASSWORD)
        accounts.create_user(conn, "test", "lan", "viewer", PASSWORD)


def client_for(runtime: Runtime, **changes: Any) -> TestClient:
    settings = dataclasses.replace(runtime.settings, **changes)
    return TestClient(app=create_app(settings, TEST_ROUTES))


@pytest.fixture
def client(runtime: Runtime, users: None) -> Iterator[TestClient]:
    with client_for(runtime) as test_client:
        yield test_client


def sign_in(client: TestClient, name: str, **headers: str) -> tuple[str, Any]:
    """Sign in through the API; returns (CSRF token, the answer)."""
    client.cookies.set("c360_csrf", DOUBLE)
    answer = client.post(
        "/v1/session",
        json={"name": name, "password": PASSWORD},
        headers={"X-CSRF-Token": DOUBLE, **headers},
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["csrf_token"], answer


def session_id_of(client: TestClient) -> str:
    return client.cookies["c360_session"]


def started_ago(runtime: Runtime, client: TestClient, seconds: float) -> str:
    """Pretend the client's session started `seconds` ago (the user existed before it)."""
    with runtime.pool.connection() as conn:
        conn.execute("UPDATE governance.users SET sessions_valid_after = now() - interval '2 days'")
    key = sessions.session_key(session_id_of(client))
    runtime.valkey.hset(key, "created", repr(time.time() - seconds))
    return key


# -- the cookie -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "headers", "secure"),
    [
        ("never", {"X-Forwarded-Proto": "https"}, False),
        ("always", {}, True),
        ("auto", {}, False),
        ("auto", {"X-Forwarded-Proto": "https"}, True),
    ],
)
def test_the_session_cookie_is_httponly_lax_and_secure_as_set(
    runtime, users, mode, headers, secure
):
    with client_for(runtime, cookie_secure=mode) as client:
        _, answer = sign_in(client, "lan", **headers)

    cookie = next(
        part for part in answer.headers.get_list("set-cookie") if part.startswith("c360_session=")
    )
    flags = {flag.strip().split("=")[0].lower(): flag for flag in cookie.split(";")[1:]}
    assert "httponly" in flags and flags["samesite"].strip().lower() == "samesite=lax"
    assert flags["path"].strip() == "Path=/"
    assert ("secure" in flags) is secure
    session_id = cookie.split(";")[0].split("=", 1)[1]
    assert len(session_id) == 43  # 256 random bits, URL-safe


def test_valkey_keeps_the_session_under_a_hash_of_its_id(runtime, client) -> None:
    csrf, _ = sign_in(client, "lan")
    session_id = session_id_of(client)

    stored = runtime.valkey.hgetall(sessions.session_key(session_id))
    keys = [key.decode() for key in runtime.valkey.keys("*")]

    assert stored[b"csrf"].decode() == csrf and stored[b"role"] == b"viewer"
    assert {b"user_id", b"created", b"last_seen"} <= set(stored)
    assert not any(session_id in key for key in keys)
    me = client.get("/v1/me").json()
    assert (me["name"], me["role"], me["csrf_token"]) == ("lan", "viewer", csrf)


# -- how a session ends ---------------------------------------------------------------------


def test_an_idle_session_ends_and_a_used_one_slides_on(runtime, client) -> None:
    sign_in(client, "lan")
    key = sessions.session_key(session_id_of(client))
    runtime.valkey.expire(key, 5)

    assert client.get("/v1/me").status_code == 200
    assert runtime.valkey.ttl(key) > 60 * 60 - 5  # the idle timer restarted (60 minutes)

    runtime.valkey.pexpire(key, 1)
    time.sleep(0.05)
    assert client.get("/v1/me").status_code == 401


def test_a_session_ends_after_its_maximum_life_however_busy(runtime, client) -> None:
    sign_in(client, "lan")
    key = started_ago(runtime, client, 12 * 3600 + 1)

    assert client.get("/v1/me").status_code == 401
    assert not runtime.valkey.exists(key)


def test_the_idle_timer_never_outlives_the_maximum_life(runtime, client) -> None:
    sign_in(client, "lan")
    key = started_ago(runtime, client, 12 * 3600 - 30)

    assert client.get("/v1/me").status_code == 200
    assert 0 < runtime.valkey.ttl(key) <= 30


def test_signing_out_ends_the_session_for_good(runtime, client) -> None:
    csrf, _ = sign_in(client, "lan")
    session_id = session_id_of(client)

    answer = client.delete("/v1/session", headers={"X-CSRF-Token": csrf})

    assert answer.status_code == 204
    assert (
        'c360_session=""' in answer.headers["set-cookie"]
        or "Max-Age=0" in answer.headers["set-cookie"]
    )
    assert not runtime.valkey.exists(sessions.session_key(session_id))
    client.cookies.set("c360_session", session_id)  # a copy of the old cookie is worth nothing
    assert client.get("/v1/me").status_code == 401


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PATCH", "/v1/admin/users/lan", {"role": "analyst"}),
        ("PATCH", "/v1/admin/users/lan", {"disabled": True}),
        ("POST", "/v1/admin/users/lan/password", {"password": "a brand new passphrase"}),
    ],
    ids=["role", "disabled", "password"],
)
def test_a_change_of_role_state_or_password_ends_the_user_s_sessions(
    runtime, users, method, path, body
) -> None:
    with client_for(runtime) as admin, client_for(runtime) as lan:
        admin_csrf, _ = sign_in(admin, "root")
        sign_in(lan, "lan")
        lan_key = sessions.session_key(session_id_of(lan))
        assert lan.get("/v1/me").status_code == 200

        changed = admin.request(method, path, json=body, headers={"X-CSRF-Token": admin_csrf})

        assert changed.status_code == 200, changed.text
        assert not runtime.valkey.exists(lan_key)
        assert lan.get("/v1/me").status_code == 401
        assert admin.get("/v1/me").status_code == 200


def test_a_change_made_without_valkey_still_ends_sessions(runtime, client) -> None:
    """The CLI changes the database only; the session notices at its next request."""
    sign_in(client, "lan")
    key = sessions.session_key(session_id_of(client))
    time.sleep(0.01)  # the change comes strictly after the session started

    with runtime.pool.connection() as conn:
        accounts.set_role(conn, "cli:ops", "lan", "analyst")

    assert runtime.valkey.exists(key)
    assert client.get("/v1/me").status_code == 401
    assert not runtime.valkey.exists(key)


def test_a_custom_role_s_new_permissions_apply_at_the_next_request(runtime, client) -> None:
    with runtime.pool.connection() as conn:
        accounts.create_role(conn, "t", "helpdesk", ["profiles:read"])
        accounts.create_user(conn, "t", "minh", "helpdesk", PASSWORD)
    sign_in(client, "minh")
    assert client.get("/test/page").status_code == 403

    with runtime.pool.connection() as conn:
        accounts.update_role(conn, "t", "helpdesk", ["governance:write"])

    assert client.get("/test/page").status_code == 200


# -- CSRF -----------------------------------------------------------------------------------


def test_a_cookie_authenticated_change_needs_the_session_s_csrf_token(client) -> None:
    csrf, _ = sign_in(client, "lan")

    missing = client.post("/test/write", json={"a": 1})
    wrong = client.post("/test/write", json={"a": 1}, headers={"X-CSRF-Token": DOUBLE})
    right = client.post("/test/write", json={"a": 1}, headers={"X-CSRF-Token": csrf})

    assert missing.status_code == 403 and missing.json()["code"] == "csrf_failed"
    assert wrong.status_code == 403 and wrong.json()["code"] == "csrf_failed"
    assert right.status_code == 200 and right.json() == {"got": {"a": 1}}


def test_a_form_sends_its_csrf_token_as_a_field_and_the_handler_still_reads_the_form(
    client,
) -> None:
    csrf, _ = sign_in(client, "lan")

    good = client.post("/test/form", data={"_csrf": csrf, "q": "Hà Nội"})
    bad = client.post("/test/form", data={"_csrf": "forged", "q": "x"})

    assert good.status_code == 200 and good.json()["got"] == {"_csrf": csrf, "q": "Hà Nội"}
    assert bad.status_code == 403


def test_a_bearer_only_change_needs_no_csrf_token(client) -> None:
    answer = client.post(
        "/test/write", json={"a": 1}, headers={"Authorization": f"Bearer {API_TOKEN}"}
    )

    assert answer.status_code == 200


def test_a_request_with_a_session_cookie_and_a_bearer_token_is_still_csrf_checked(client):
    csrf, _ = sign_in(client, "lan")
    bearer = {"Authorization": f"Bearer {API_TOKEN}"}

    without = client.post("/test/write", json={"a": 1}, headers=bearer)
    with_token = client.post("/test/write", json={"a": 1}, headers={**bearer, "X-CSRF-Token": csrf})

    assert without.status_code == 403 and without.json()["code"] == "csrf_failed"
    assert with_token.status_code == 200


def test_signing_in_needs_the_double_submit_cookie_and_a_page_sets_it(client) -> None:
    body = {"name": "lan", "password": PASSWORD}

    no_cookie = client.post("/v1/session", json=body, headers={"X-CSRF-Token": DOUBLE})
    client.cookies.set("c360_csrf", DOUBLE)
    mismatch = client.post("/v1/session", json=body, headers={"X-CSRF-Token": "other"})
    no_header = client.post("/v1/session", json=body)
    client.cookies.clear()
    page = client.get("/test/open", headers={"Accept": "text/html"})
    issued = client.cookies.get("c360_csrf")
    signed_in = client.post("/v1/session", json=body, headers={"X-CSRF-Token": issued or "-"})

    for refused in (no_cookie, mismatch, no_header):
        assert refused.status_code == 403 and refused.json()["code"] == "csrf_failed"
    assert page.status_code == 200 and issued and len(issued) == 43
    assert "httponly" in page.headers["set-cookie"].lower()
    assert signed_in.status_code == 200


def test_a_public_form_checks_the_double_submit_cookie_and_json_gets_no_cookie(client) -> None:
    refused = client.post("/test/public-form", data={"x": "1"})
    client.cookies.set("c360_csrf", DOUBLE)
    accepted = client.post("/test/public-form", data={"x": "1", "_csrf": DOUBLE})
    api = client.get("/v1/me")  # not a page: no cookie is handed out

    assert refused.status_code == 403 and accepted.status_code == 200
    assert "c360_csrf" not in api.headers.get("set-cookie", "")


def test_the_gateway_needs_no_csrf_token(client) -> None:
    client.cookies.set("c360_csrf", DOUBLE)
    answer = client.post(
        "/v1/track",
        json={"userId": "u-1", "event": "Tried", "messageId": "m-1"},
        auth=(WRITE_KEY, ""),
    )

    assert answer.status_code == 200


# -- answers for pages ----------------------------------------------------------------------


def test_a_page_sends_the_signed_out_browser_to_sign_in_and_back(client) -> None:
    answer = client.get(
        "/test/page?from=nav", headers={"Accept": "text/html"}, follow_redirects=False
    )
    htmx = client.get("/test/page", headers={"HX-Request": "true"}, follow_redirects=False)
    api = client.get("/test/page", follow_redirects=False)

    assert answer.status_code == 303
    location = urlsplit(answer.headers["location"])
    assert location.path == "/login" and not location.netloc
    assert parse_qs(location.query)["next"] == ["/test/page?from=nav"]
    assert htmx.status_code == 401 and htmx.headers["hx-redirect"].startswith("/login?next=")
    assert api.status_code == 401 and api.json()["code"] == "not_signed_in"


def test_a_page_the_role_may_not_see_answers_a_small_403_page(client) -> None:
    sign_in(client, "lan")

    page = client.get("/test/page", headers={"Accept": "text/html"})
    api = client.get("/v1/admin/users")

    assert page.status_code == 403 and page.headers["content-type"].startswith("text/html")
    assert "Not allowed" in page.text
    assert api.status_code == 403 and api.json()["code"] == "forbidden"
    assert "users:write" in api.json()["message"]


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/customers?q=1", "/customers?q=1"),
        ("https://evil.example/", "/"),
        ("//evil.example/x", "/"),
        ("/\\evil.example", "/"),
        ("javascript:alert(1)", "/"),
        ("/ok\r\nSet-Cookie: x=1", "/"),
        ("", "/"),
        (None, "/"),
    ],
)
def test_the_next_page_after_sign_in_is_never_another_site(target, expected) -> None:
    assert safe_next(target) == expected


# -- every route declares its access --------------------------------------------------------


@get("/test/undeclared")
async def undeclared() -> str:
    return "oops"


@get("/test/misspelt", opt={"permission": "profile:read"})
async def misspelt() -> str:
    return "oops"


@pytest.mark.parametrize("handler", [undeclared, misspelt], ids=["undeclared", "misspelt"])
def test_the_app_refuses_to_start_with_a_route_that_declares_no_valid_access(
    runtime, handler
) -> None:
    with pytest.raises(UnguardedRoute) as caught:
        create_app(runtime.settings, [handler])

    assert "/test/" in str(caught.value)


def test_the_openapi_document_is_public_and_documents_the_v1_api(client) -> None:
    document = client.get("/schema/openapi.json")

    assert document.status_code == 200
    paths = document.json()["paths"]
    assert document.json()["info"]["title"] == "c360"
    assert {"/v1/session", "/v1/admin/users", "/v1/profiles"} <= set(paths)
