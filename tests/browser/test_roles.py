"""Role-restricted pages in Chromium: a viewer sees no administration in the navigation and gets
a 403 page on /admin/users; an administrator reaches the users page and sees the users the CLI
created."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from .conftest import ROLES, Trial, sign_in

pytestmark = pytest.mark.e2e

#: Where the administration and governance pages live; a viewer must not be offered them.
ADMIN_PREFIXES = ("/admin", "/governance")


def nav_targets(page: Page) -> list[str]:
    """The href of every link in the main navigation."""
    links = page.get_by_role("navigation", name="Main").get_by_role("link")
    return [str(link.get_attribute("href")) for link in links.all()]


def test_a_viewer_sees_no_admin_navigation_and_gets_a_403_page_on_admin_users(
    page: Page, trial: Trial
) -> None:
    sign_in(page, trial, "viewer")

    targets = nav_targets(page)
    assert "/" in targets  # the viewer does get a navigation
    assert not [t for t in targets if t.startswith(ADMIN_PREFIXES)], targets

    response = page.goto(trial.url + "/admin/users")

    assert response is not None and response.status == 403
    assert response.headers["content-type"].startswith("text/html")
    expect(page.get_by_role("heading", level=1)).to_have_text("Not allowed")
    expect(page.get_by_text("browser-admin")).to_have_count(0)  # no user list leaks


def test_an_admin_reaches_the_users_page_and_sees_every_user_the_cli_created(
    page: Page, trial: Trial
) -> None:
    sign_in(page, trial, "admin")

    assert "/admin/users" in nav_targets(page)
    response = page.goto(trial.url + "/admin/users")

    assert response is not None and response.status == 200
    main = page.get_by_role("main")
    for role in ROLES:
        name, _password = trial.user(role)
        expect(main.get_by_role("rowheader", name=name, exact=True)).to_be_visible()
