"""The pages in real Chromium (Debian's, driven by playwright) under their strict
Content-Security-Policy: no violation and no script error on any page, every chart drawn, the
phone-width menu, a filter swapped in by htmx with the URL pushed, and the segment builder's
live count following its conditions."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from chromium_support import ensure_chromium

from c360 import accounts
from c360.appliance.web import web_app

from .conftest import PASSWORD, send_events

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

#: Reports every CSP violation to the console, where the test collects it.
CSP_PROBE = (
    "document.addEventListener('securitypolicyviolation', e => console.error("
    "'CSP violation', e.violatedDirective, e.sourceFile, e.lineNumber))"
)

PAGES = (
    "/",
    "/customers",
    "/segments/new",
    "/analytics/rfm",
    "/analytics/cohorts",
    "/analytics/ltv",
    "/pipeline",
)

EVENTS = [
    {
        "userId": user,
        "messageId": f"b-{user}-{day}",
        "type": "track",
        "event": "Order Completed",
        "timestamp": f"2026-03-{day:02d}T10:00:00Z",
        "properties": {"revenue": revenue},
    }
    for user, day, revenue in (("lan", 1, "30.15"), ("minh", 1, "5.55"), ("an", 2, "100.00"))
]


@pytest.fixture
def site(browser: Any, runtime: Any) -> Iterator[str]:
    """The web app served by uvicorn on 127.0.0.1 with a small store and an admin user."""
    send_events(browser(None), runtime, EVENTS)
    with runtime.pool.connection() as conn:
        accounts.ensure_built_in_roles(conn)
        accounts.create_user(conn, "user:test", "boss", "admin", PASSWORD)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(
        web_app(runtime.settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def chromium_page(site: str) -> Iterator[tuple[Any, list[str]]]:
    """A signed-in Chromium page at phone width, and the console errors it collects."""
    from playwright.sync_api import sync_playwright

    executable = ensure_chromium()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        page = chromium.new_page(viewport={"width": 360, "height": 800})
        errors: list[str] = []
        page.add_init_script(CSP_PROBE)
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{site}/login")
        page.fill("#sign-in-name", "boss")
        page.fill("#sign-in-password", PASSWORD)
        page.click("#sign-in-submit")
        page.wait_for_url(f"{site}/")
        try:
            yield page, errors
        finally:
            chromium.close()


def test_no_page_breaks_its_policy_or_throws_and_every_chart_is_drawn(site, chromium_page):
    page, errors = chromium_page
    for path in PAGES:
        page.goto(site + path)
        page.wait_for_load_state("networkidle")
        drawn = page.eval_on_selector_all(
            "canvas[data-chart]", "els => els.map(e => e.dataset.drawn)"
        )
        assert all(flag == "true" for flag in drawn), (path, drawn)
    page.goto(site + "/")
    assert page.locator("canvas[data-chart]").count() == 3
    assert errors == []


def test_the_menu_collapses_at_phone_width_and_opens_from_its_button(site, chromium_page):
    page, _ = chromium_page

    assert page.is_hidden("#main-nav")
    page.click("#menu-toggle")
    assert page.is_visible("#nav-customers")
    assert page.get_attribute("#menu-toggle", "aria-expanded") == "true"


def test_a_filter_is_swapped_in_by_htmx_and_the_view_becomes_a_link(site, chromium_page):
    page, errors = chromium_page
    page.select_option("#filter-event-type", "Order Completed")
    page.wait_for_url(lambda url: "event_type=Order" in url)

    assert page.text_content("#number-events").strip() == "3"
    assert page.text_content("#number-revenue").strip() == "135.70"
    assert errors == []


def test_the_live_count_follows_the_conditions(site, chromium_page):
    from playwright.sync_api import expect

    page, errors = chromium_page
    page.goto(site + "/segments/new")
    count = page.locator("#segment-count")
    expect(count).to_have_text(re.compile(r"^\s*3 matching"))

    page.fill("#condition-r0-value", "20")
    expect(count).to_have_text(re.compile(r"^\s*2 matching"))
    page.click("#condition-add")
    expect(page.locator("li.condition")).to_have_count(2)
    second = page.locator("li.condition").nth(1)
    second.locator("input[name=value]").fill("50")
    expect(count).to_have_text(re.compile(r"^\s*1 matching"))
    second.locator("button").click()
    expect(page.locator("li.condition")).to_have_count(1)
    expect(count).to_have_text(re.compile(r"^\s*2 matching"))
    assert errors == []
