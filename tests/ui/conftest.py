"""Helpers for the page tests: the appliance's web app on the session's engines, users of each
role signed in through the sign-in form (as a browser does), and a small store filled through
the gateway and the real stages."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from litestar.testing import TestClient

from c360 import accounts
from c360.adapters.bus import ID_RESOLUTION, RAW_EVENTS
from c360.appliance.web import web_app
from c360.runtime import Runtime
from c360.stages import f2_persist, f3_resolve, lake_sink

PASSWORD = "correct horse battery staple"

WEB_AUTH = {"Authorization": "Basic " + base64.b64encode(b"test-write-key-1:").decode()}

#: Where pages put the CSRF token for scripts, and plain forms their hidden field.
_META = re.compile(r'<meta name="csrf-token" content="([^"]*)">')
_FIELD = re.compile(r'<input type="hidden" name="_csrf" value="([^"]*)">')


def csrf_of(html: str) -> str:
    """The CSRF token a page carries in its meta tag (or, on the sign-in page, its form)."""
    found = _META.search(html) or _FIELD.search(html)
    assert found, "the page carries no CSRF token"
    return found.group(1)


def sign_in(client: TestClient, name: str, password: str = PASSWORD) -> Any:
    """Sign in through the form as a browser would: fetch it, post it with its token."""
    form = client.get("/login")
    assert form.status_code == 200, form.text
    return client.post(
        "/login",
        data={"name": name, "password": password, "next": "/", "_csrf": csrf_of(form.text)},
        follow_redirects=False,
    )


@pytest.fixture
def browser(runtime: Runtime) -> Iterator[Callable[[str | None], TestClient]]:
    """`browser(role)`: a client signed in as a new user with that role (the user is named
    after the role); `browser(None)`: a client that has not signed in."""
    with ExitStack() as stack:

        def open_browser(role: str | None) -> TestClient:
            client = stack.enter_context(
                TestClient(app=web_app(runtime.settings), base_url="http://testserver.local")
            )
            if role is not None:
                with runtime.pool.connection() as conn:
                    accounts.ensure_built_in_roles(conn)
                    try:
                        accounts.get_user(conn, role)
                    except accounts.UnknownAccount:
                        accounts.create_user(conn, "user:test", role, role, PASSWORD)
                answer = sign_in(client, role)
                assert answer.status_code == 303, answer.text
            return client

        yield open_browser


def send_events(client: TestClient, runtime: Runtime, events: list[dict[str, Any]]) -> None:
    """Events into the gateway as source `web`, then through F2, the lake sink and F3."""
    for start in range(0, len(events), 50):
        answer = client.post(
            "/v1/batch", json={"batch": events[start : start + 50]}, headers=WEB_AUTH
        )
        assert answer.status_code == 200, answer.text
    _drain(runtime, RAW_EVENTS, "f2", lambda _n, p: f2_persist.persist(runtime, p))
    _drain(runtime, RAW_EVENTS, "lake", lambda n, p: lake_sink.sink(runtime, f"b-{n}", p))
    _drain(runtime, ID_RESOLUTION, "f3", lambda _n, p: f3_resolve.resolve(runtime, p))


def _drain(runtime: Runtime, topic: str, group: str, stage: Callable[[str, Any], Any]) -> None:
    while True:
        deliveries = runtime.bus.consume(topic, group, "ui-test-worker", count=50, block_ms=10)
        if not deliveries:
            return
        for delivery in deliveries:
            stage(f"{delivery.stream}-{delivery.entry_id}".replace(":", "-"), delivery.payloads)
        runtime.bus.ack(group, deliveries)
