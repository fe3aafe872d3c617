"""The browser interface's frame: sign-in and sign-out through the form, the redirect of an
anonymous page request, the navigation each role sees, the static files served from the
package with their pinned hashes, the Content-Security-Policy and the absence of inline script,
and the landmarks and labels every page carries."""

from __future__ import annotations

import hashlib
import json
import re
from html.parser import HTMLParser
from importlib.resources import files
from pathlib import Path

import pytest

from c360 import sessions
from c360.access import BUILT_IN_ROLES
from c360.ui.pages.common import NAV

from .conftest import PASSWORD, csrf_of, sign_in

#: The sections of the analytics pages (administration and governance add their own).
ANALYTICS_SECTIONS = ("overview", "customers", "segments", "rfm", "cohorts", "ltv", "pipeline")

#: What a browser sends for a page (API clients get JSON errors instead of redirects).
HTML = {"Accept": "text/html"}

STATIC = Path(str(files("c360.ui") / "static"))


class Page(HTMLParser):
    """What the tests look at in a page: tags with their attributes, and the labels' targets."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def all(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for name, attrs in self.tags if name == tag]


def test_the_sign_in_page_is_public_labelled_and_under_a_strict_policy(browser):
    client = browser(None)
    answer = client.get("/login?next=/analytics/rfm")

    assert answer.status_code == 200
    assert 'id="nav-' not in answer.text  # nothing to navigate to before signing in
    policy = answer.headers["content-security-policy"]
    assert "default-src 'self'" in policy
    assert "'unsafe-inline'" not in policy
    page = Page(answer.text)
    labelled = {attrs["for"] for attrs in page.all("label")}
    for field in page.all("input"):
        if field.get("type") != "hidden":
            assert field["id"] in labelled
    assert {"name": "next", "type": "hidden", "value": "/analytics/rfm"}.items() <= {
        k: v for attrs in page.all("input") if attrs.get("name") == "next" for k, v in attrs.items()
    }.items()


def test_signing_in_sets_an_http_only_cookie_and_goes_to_the_local_next_page(browser, runtime):
    browser("viewer")  # creates the user
    client = browser(None)
    form = client.get("/login")
    answer = client.post(
        "/login",
        data={
            "name": "viewer",
            "password": PASSWORD,
            "next": "/analytics/rfm",
            "_csrf": csrf_of(form.text),
        },
        follow_redirects=False,
    )

    assert answer.status_code == 303
    assert answer.headers["location"] == "/analytics/rfm"
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{sessions.COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie.replace("Lax", "lax")
    assert client.get("/analytics/rfm").status_code == 200


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/\\evil"])
def test_a_sign_in_never_sends_the_browser_to_another_site(browser, target):
    browser("viewer")
    client = browser(None)
    form = client.get("/login")
    answer = client.post(
        "/login",
        data={"name": "viewer", "password": PASSWORD, "next": target, "_csrf": csrf_of(form.text)},
        follow_redirects=False,
    )

    assert answer.status_code == 303
    assert answer.headers["location"] == "/"


def test_a_wrong_password_shows_the_form_again_with_what_to_do(browser):
    browser("viewer")
    client = browser(None)
    answer = sign_in(client, "viewer", "not the password at all")

    assert answer.status_code in (400, 401)
    assert 'role="alert"' in answer.text
    assert "check both and try again" in answer.text
    assert 'value="viewer"' in answer.text  # the name is kept, the password is not
    assert sessions.COOKIE not in answer.headers.get("set-cookie", "")


def test_a_sign_in_post_without_its_csrf_token_is_refused(browser):
    browser("viewer")
    client = browser(None)
    client.get("/login")
    answer = client.post(
        "/login", data={"name": "viewer", "password": PASSWORD}, follow_redirects=False
    )

    assert answer.status_code == 403
    assert sessions.COOKIE not in answer.headers.get("set-cookie", "")


def test_an_anonymous_page_request_is_sent_to_sign_in_and_back(browser):
    client = browser(None)
    answer = client.get("/analytics/cohorts", headers=HTML, follow_redirects=False)

    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=%2Fanalytics%2Fcohorts"


@pytest.mark.parametrize("role", sorted(BUILT_IN_ROLES))
def test_the_navigation_shows_only_the_sections_the_role_may_open(browser, role):
    client = browser(role)
    answer = client.get("/analytics/rfm" if role == "viewer" else "/")
    shown = set(re.findall(r'id="nav-([a-z0-9-]+)"', answer.text))

    allowed = {item.id for item in NAV if item.permission in BUILT_IN_ROLES[role]}
    assert shown == allowed
    for item in NAV:  # and what is hidden is refused too (the analytics pages' part of it)
        if item.id in ANALYTICS_SECTIONS and item.id not in allowed:
            assert client.get(item.href, follow_redirects=False).status_code == 403


def test_signing_out_needs_the_csrf_token_and_ends_the_session(browser):
    client = browser("analyst")
    page = client.get("/")

    refused = client.post("/logout", follow_redirects=False)
    assert refused.status_code == 403
    assert client.get("/", follow_redirects=False).status_code == 200

    answer = client.post("/logout", data={"_csrf": csrf_of(page.text)}, follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login"
    assert client.get("/", headers=HTML, follow_redirects=False).status_code == 303


def test_every_page_has_landmarks_a_skip_link_and_no_inline_script(browser):
    client = browser("admin")
    for path in (
        "/",
        "/customers",
        "/segments/new",
        "/analytics/rfm",
        "/analytics/cohorts",
        "/analytics/ltv",
        "/pipeline",
    ):
        answer = client.get(path)
        page = Page(answer.text)
        names = [name for name, _ in page.tags]

        for landmark in ("header", "nav", "main", "footer"):
            assert landmark in names, (path, landmark)
        assert page.all("a")[0]["href"] == "#main"  # the skip link comes first
        assert names.count("h1") == 1, path
        for script in page.all("script"):
            assert script.get("src") or script.get("type") == "application/json", (path, script)
        assert not any("style" in attrs for _, attrs in page.tags), path
        assert not any(k.startswith("on") for _, attrs in page.tags for k in attrs), path
        labelled = {attrs["for"] for attrs in page.all("label")}
        for tag in ("input", "select", "textarea"):
            for field in page.all(tag):
                if field.get("type") != "hidden":
                    assert field.get("id") in labelled, (path, field)
        assert answer.headers["content-security-policy"].startswith("default-src 'self'")


def test_htmx_requests_carry_the_same_csrf_token_as_the_forms(browser):
    client = browser("marketer")
    page = client.get("/segments/new").text
    token = csrf_of(page)
    headers = re.search(r"<body hx-headers='([^']*)'>", page)

    assert token
    assert headers and json.loads(headers.group(1).replace("&#34;", '"')) == {"X-CSRF-Token": token}
    assert f'name="_csrf" value="{token}"' in page
    config = re.search(r"<meta name=\"htmx-config\" content='([^']*)'>", page)
    assert config
    settings = json.loads(config.group(1).replace("&#34;", '"'))
    assert settings["allowEval"] is False and settings["includeIndicatorStyles"] is False


def test_an_htmx_request_gets_the_main_content_alone(browser):
    client = browser("admin")
    answer = client.get("/analytics/cohorts", headers={"HX-Request": "true"})

    assert answer.status_code == 200
    assert "<header" not in answer.text and "<h1>Cohorts</h1>" in answer.text
    assert "<title>Cohorts · c360</title>" in answer.text


def test_the_pinned_libraries_are_served_from_the_package_as_committed(browser):
    client = browser(None)
    manifest = json.loads((STATIC / "vendor" / "MANIFEST.json").read_text())

    assert manifest["htmx.org"]["version"].startswith("2.0.")
    assert manifest["chart.js"]["version"].startswith("4.")
    for entry in manifest.values():
        for name, digest in entry["files"].items():
            answer = client.get(f"/static/vendor/{name}")
            assert answer.status_code == 200, name
            assert hashlib.sha256(answer.content).hexdigest() == digest
    for name in ("c360.css", "charts.js", "c360.js"):
        assert client.get(f"/static/{name}").status_code == 200


def test_a_bad_filter_shows_what_to_change_on_the_page(browser):
    client = browser("analyst")
    answer = client.get("/?date_from=2026-13-01")

    assert answer.status_code == 400
    assert "text/html" in answer.headers["content-type"]
    assert "date_from must be a day written YYYY-MM-DD" in answer.text
    assert 'id="nav-overview"' in answer.text  # the frame is there, to go elsewhere
