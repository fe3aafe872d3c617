"""Keyboard and screen-reader basics in Chromium: the skip link is the first stop of the Tab key
and moves focus to the main content; every control of the segment builder has an accessible
name (from the accessibility tree Chromium builds); the overview at a phone's 360 px width
scrolls only vertically."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, Page, expect

from .conftest import PAGE_TIMEOUT_MS, Trial, sign_in

pytestmark = pytest.mark.e2e

#: ARIA roles of form controls; each must have a name a screen reader can read out.
CONTROL_ROLES = (
    "textbox",
    "combobox",
    "listbox",
    "button",
    "checkbox",
    "radio",
    "spinbutton",
    "searchbox",
    "slider",
    "switch",
)

#: A phone held upright (the narrowest common CSS width).
PHONE = {"width": 360, "height": 740}

#: One node of Playwright's ARIA snapshot: `- role "name"` or `- role` (no name), then the
#: rest of the line (attributes, text); YAML quotes the whole node when its name needs it.
_SNAPSHOT_NODE = re.compile(r'^\s*- \'?(?P<role>[a-z]+)(?: "(?P<name>(?:[^"\\]|\\.)*)")?')


def unnamed_controls(snapshot: str) -> list[str]:
    """The snapshot lines of form controls that have no accessible name."""
    found = []
    for line in snapshot.splitlines():
        node = _SNAPSHOT_NODE.match(line)
        if node and node["role"] in CONTROL_ROLES and not (node["name"] or "").strip():
            found.append(line.strip())
    return found


def test_the_skip_link_is_the_first_tab_stop_and_moves_focus_to_main(
    page: Page, trial: Trial
) -> None:
    sign_in(page, trial, "viewer")
    page.locator("body").focus()  # as after a fresh page load: nothing focused yet
    page.evaluate("() => document.activeElement && document.activeElement.blur()")

    page.keyboard.press("Tab")

    skip = page.get_by_role("link", name="Skip to content")
    expect(skip).to_be_focused()
    expect(skip).to_be_visible()  # shown when focused, not only to screen readers
    page.keyboard.press("Enter")
    expect(page.get_by_role("main")).to_be_focused()


def test_every_control_of_the_segment_builder_has_an_accessible_name(
    page: Page, trial: Trial
) -> None:
    sign_in(page, trial, "marketer", "/segments/new")
    page.get_by_role("button", name="Add a condition").click()
    expect(page.get_by_label("Condition kind")).to_have_count(2)
    page.get_by_text("Write the filter as JSON").click()  # open the <details> too

    snapshot = page.get_by_role("main").aria_snapshot()
    controls = page.get_by_role("main").locator(
        "input:not([type=hidden]), select, textarea, button"
    )

    assert unnamed_controls(snapshot) == [], snapshot
    named = [line for line in snapshot.splitlines() if _is_control(line)]
    assert len(named) >= controls.count() > 10  # every control is in the tree, none hidden
    for role in ("combobox", "textbox", "button"):
        assert page.get_by_role("main").get_by_role(role).count() > 0


def test_the_overview_at_phone_width_has_no_horizontal_scroll(
    browser: Browser, trial: Trial
) -> None:
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    try:
        page = context.new_page()
        sign_in(page, trial, "analyst")
        expect(page.locator("canvas[data-chart]").first).to_have_attribute("data-drawn", "true")

        widths = page.evaluate(
            "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth,"
            " document.body.scrollWidth]"
        )

        assert widths[0] <= widths[1] and widths[2] <= widths[1], widths
        expect(page.get_by_role("button", name="Menu")).to_be_visible()
    finally:
        context.close()


def _is_control(line: str) -> bool:
    node = _SNAPSHOT_NODE.match(line)
    return bool(node and node["role"] in CONTROL_ROLES)
