"""JSON nested deeper than the gateway's limit (MAX_DEPTH levels) sent to the API or a page:
a 400 `too_deeply_nested` that says so, never a 500 from a RecursionError; a dead letter that
deep is shown as its raw text."""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal

import pytest
from litestar.testing import TestClient

from c360 import accounts
from c360.api.app import create_app
from c360.appliance.web import web_app
from c360.runtime import Runtime
from c360.ui.pages.pipeline import _payload_text

PASSWORD = "correct horse battery"
DOUBLE = "double-submit-token-for-tests"
#: The break test's input: a segment spec 1,200 arrays deep (far past Python's stack).
DEEP = b'{"spec":' + b"[" * 1200 + b"1" + b"]" * 1200 + b"}"


@pytest.fixture
def api(runtime: Runtime) -> Iterator[TestClient]:
    """A client signed in through the API as an admin, its CSRF header set."""
    with runtime.pool.connection() as conn:
        accounts.create_user(conn, "user:test", "root", "admin", PASSWORD)
    with TestClient(app=create_app(runtime.settings)) as client:
        client.cookies.set("c360_csrf", DOUBLE)
        signed = client.post(
            "/v1/session",
            json={"name": "root", "password": PASSWORD},
            headers={"X-CSRF-Token": DOUBLE},
        )
        assert signed.status_code == 200, signed.text
        client.headers["X-CSRF-Token"] = signed.json()["csrf_token"]
        yield client


@pytest.mark.parametrize(
    "path",
    [
        "/v1/segments/preview",
        "/v1/segments",
        "/v1/segments/export.csv",
        "/v1/identity/reviews/1",
        "/v1/reports",
        "/v1/admin/users",
        "/v1/admin/tokens",
    ],
)
def test_a_body_nested_too_deep_is_a_400_that_says_so(api, path) -> None:
    answer = api.post(path, content=DEEP, headers={"Content-Type": "application/json"})

    assert answer.status_code == 400, answer.text
    assert answer.json()["code"] == "too_deeply_nested"
    assert "64 levels" in answer.json()["message"]


def test_a_body_just_within_the_limit_is_read_as_usual(api) -> None:
    spec = b"[" * 63 + b"1" + b"]" * 63
    answer = api.post(
        "/v1/segments/preview",
        content=b'{"spec":' + spec + b"}",
        headers={"Content-Type": "application/json"},
    )

    assert answer.status_code == 400
    assert answer.json()["code"] != "too_deeply_nested"  # the spec is refused for its shape


def test_the_segment_builder_s_json_box_too_deep_is_a_400_not_a_500(runtime) -> None:
    spec = "[" * 1200 + "1" + "]" * 1200
    with runtime.pool.connection() as conn:
        accounts.create_user(conn, "user:test", "lan", "admin", PASSWORD)

    with TestClient(app=web_app(runtime.settings), base_url="http://testserver.local") as client:
        form = client.get("/login")
        field = re.search(r'name="_csrf" value="([^"]*)"', form.text)
        assert field is not None
        signed = client.post(
            "/login",
            data={"name": "lan", "password": PASSWORD, "next": "/", "_csrf": field.group(1)},
            follow_redirects=False,
        )
        assert signed.status_code == 303, signed.text
        answer = client.get("/segments/preview", params={"spec_json": spec})
        swap = client.get(
            "/segments/preview", params={"spec_json": spec}, headers={"HX-Request": "true"}
        )

    assert answer.status_code == 400, answer.text[:300]
    assert "64 levels deep" in answer.text
    assert swap.status_code == 400 and swap.headers["content-type"].startswith("text/html")
    assert "64 levels deep" in swap.text


def test_a_dead_letter_nested_too_deep_is_shown_as_its_raw_text() -> None:
    raw = '{"event":"A","properties":' + "[" * 2000 + "]" * 2000 + "}"

    assert _payload_text(raw) == raw
    assert _payload_text(raw.encode()) == raw
    assert _payload_text('{"event": "A"}') == '{\n  "event": "A"\n}'


def test_a_filter_written_as_json_too_deep_is_refused_before_decoding() -> None:
    from c360.errors import InputError
    from c360.segments import spec

    with pytest.raises(InputError) as deep:
        spec.loads("[" * 1200 + "1" + "]" * 1200)
    with pytest.raises(InputError) as unreadable:
        spec.loads('{"field": ')

    assert deep.value.code == "too_deeply_nested"
    assert unreadable.value.code == "segment_invalid_json"
    assert spec.loads('{"value": 99.95}') == {"value": Decimal("99.95")}
