"""Signing in and out in Chromium: a wrong password is refused on the form, the right one lands
on the overview showing the slice's numbers, and signing out returns to the sign-in form."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from playwright.sync_api import Page, expect

from .conftest import Expected, Trial, sign_in

pytestmark = pytest.mark.e2e

#: The session cookie's name (c360.sessions.COOKIE), written out: the test checks the contract.
SESSION_COOKIE = "c360_session"


def number(page: Page, element_id: str) -> Decimal:
    """A figure on the page as shown (thousands separators and currency signs dropped)."""
    shown = page.locator(f"#{element_id}").inner_text()
    return Decimal(re.sub(r"[^0-9.\-]", "", shown))


def test_a_wrong_password_is_refused_on_the_sign_in_form(page: Page, trial: Trial) -> None:
    name, _password = trial.user("admin")
    page.goto(trial.url + "/")

    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill("not-the-password-at-all")
    with page.expect_response(lambda r: r.request.method == "POST") as refused:
        page.get_by_role("button", name="Sign in").click()

    assert refused.value.status == 401
    # a browser renders only text/html as a page; anything else shows the markup as text
    shown_as = refused.value.headers["content-type"]
    assert shown_as.startswith("text/html"), f"the refused sign-in is served as {shown_as}"
    expect(page.get_by_role("alert")).to_contain_text("not right")
    expect(page.get_by_role("heading", name="Sign in to c360")).to_be_visible()
    expect(page.get_by_label("User name")).to_have_value(name)
    assert SESSION_COOKIE not in {cookie["name"] for cookie in page.context.cookies()}


def test_the_right_password_lands_on_the_overview_with_the_slices_numbers(
    page: Page, trial: Trial, expected: Expected
) -> None:
    sign_in(page, trial, "admin")

    assert page.url == trial.url + "/"
    expect(page.get_by_role("heading", name="Overview", exact=True)).to_be_visible()
    assert number(page, "number-orders") == expected.orders
    assert number(page, "number-revenue") == expected.revenue
    assert number(page, "number-active-customers") == expected.customers
    assert number(page, "number-profiles") == expected.customers
    assert number(page, "number-events") == expected.orders  # the trial sends only orders


def test_signing_out_returns_to_the_sign_in_form_and_ends_the_session(
    page: Page, trial: Trial
) -> None:
    sign_in(page, trial, "analyst")

    page.get_by_role("button", name="Sign out").click()

    page.wait_for_url(re.compile(r"/login"))
    expect(page.get_by_role("heading", name="Sign in to c360")).to_be_visible()
    page.goto(trial.url + "/")  # the old session no longer opens the overview
    assert "/login" in page.url
