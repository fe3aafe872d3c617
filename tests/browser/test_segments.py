"""A segment built in Chromium's segment builder with the keyboard and the mouse: customers
with at least two orders. Its live count equals the slice's (before it has a name, too), it
saves, and its CSV export (a real download) lists exactly the slice's repeat customers with
their order counts."""

from __future__ import annotations

import csv
import io
import re
import uuid

import pytest
from playwright.sync_api import Page, expect

from .conftest import Expected, Trial, sign_in

pytestmark = pytest.mark.e2e

AT_LEAST = 2


#: Who builds the segment: an admin, who sees customer ids in the export unmasked without an
#: access policy (for every other role c360 masks them as personal data by default).
BUILDER = "admin"


def open_builder(page: Page, trial: Trial) -> None:
    """Sign in and reach the builder through the navigation, by mouse."""
    sign_in(page, trial, BUILDER)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Segments").click()
    page.get_by_role("link", name="Build a new segment").click()
    expect(page.get_by_role("heading", name="New segment")).to_be_visible()


def type_condition(page: Page, name: str, op: str, value: str) -> None:
    """Fill the first condition row: the kind and comparison picked, name and value typed."""
    page.get_by_label("Condition kind").select_option(label="Profile figure")
    page.get_by_label("Name (figure, trait, identifier type or event)").click()
    page.keyboard.press("ControlOrMeta+a")
    page.keyboard.type(name)
    page.keyboard.press("Tab")  # on to the comparison
    page.get_by_label("Comparison").select_option(op)
    page.get_by_label(re.compile(r"^Value")).click()
    page.keyboard.press("ControlOrMeta+a")  # the builder starts with a value in place
    page.keyboard.type(value)
    page.keyboard.press("Tab")


def live_count(members: int) -> re.Pattern[str]:
    return re.compile(rf"^\s*{members:,} matching customers\s*$")


def test_the_live_count_follows_the_conditions_before_the_segment_has_a_name(
    page: Page, trial: Trial, expected: Expected
) -> None:
    open_builder(page, trial)

    type_condition(page, "order_count", ">=", str(AT_LEAST))

    members = expected.repeat_customers(AT_LEAST)
    expect(page.locator("#segment-count")).to_have_text(live_count(len(members)))
    page.get_by_label(re.compile(r"^Value")).fill(str(AT_LEAST + 1))
    page.keyboard.press("Tab")
    expect(page.locator("#segment-count")).to_have_text(
        live_count(len(expected.repeat_customers(AT_LEAST + 1)))
    )


def test_a_segment_built_with_keyboard_and_mouse_counts_saves_and_exports_its_members(
    page: Page, trial: Trial, expected: Expected
) -> None:
    members = expected.repeat_customers(AT_LEAST)
    open_builder(page, trial)
    name = f"Repeat buyers ({AT_LEAST}+ orders) {uuid.uuid4().hex[:6]}"
    page.get_by_label("Segment name").fill(name)

    type_condition(page, "order_count", ">=", str(AT_LEAST))

    expect(page.locator("#segment-count")).to_have_text(live_count(len(members)))
    page.get_by_role("button", name="Save segment").click()
    page.wait_for_url(re.compile(r"/segments/\d+\?saved=1"))
    expect(page.get_by_role("status")).to_have_text("Saved.")
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Segment {name}")

    with page.expect_download() as download:
        page.get_by_role("link", name=re.compile("Download all members as CSV")).click()

    text = download.value.path().read_text(encoding="utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == len(members)
    assert {row["user_id"] for row in rows} == members
    by_customer = expected.orders_by_customer
    assert all(int(row["order_count"]) == by_customer[row["user_id"][6:]] for row in rows)


def test_saving_without_a_name_keeps_the_builder_and_says_what_is_missing(
    page: Page, trial: Trial
) -> None:
    open_builder(page, trial)
    type_condition(page, "order_count", ">=", str(AT_LEAST))

    with page.expect_response(lambda r: r.request.method == "POST") as refused:
        page.get_by_role("button", name="Save segment").click()

    shown_as = refused.value.headers["content-type"]
    assert shown_as.startswith("text/html"), f"the refused save is served as {shown_as}"
    expect(page.get_by_role("alert").first).to_contain_text("name")
    expect(page.get_by_label(re.compile(r"^Value"))).to_have_value(str(AT_LEAST))
    expect(page.get_by_label("Name (figure, trait, identifier type or event)")).to_have_value(
        "order_count"
    )
