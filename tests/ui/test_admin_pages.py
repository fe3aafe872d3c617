"""Administration pages: users, roles, API tokens, sources and write keys. Each form changes
what it should (checked through the services), leaves its audit entry, needs its CSRF token,
shows a new token or key once only, and escapes what users typed."""

from __future__ import annotations

import csv
import io
import re

import pytest

from c360 import accounts, audit, tokens
from c360.governance import sources

from .conftest import PASSWORD, csrf_of, sign_in

HOSTILE = '<script>alert("x")</script>'


def post_form(client, page_path, action, data):
    """Post a form of the page at `page_path` with the page's own CSRF token."""
    page = client.get(page_path)
    assert page.status_code == 200, page.text
    return client.post(action, data={**data, "_csrf": csrf_of(page.text)}, follow_redirects=False)


def last_audit(runtime, action):
    with runtime.pool.connection() as conn:
        found = audit.entries(conn, action_prefix=action, limit=1)
    assert found, f"no audit entry {action}"
    return found[0]


ADMIN_PAGES = ("/admin/users", "/admin/roles", "/admin/tokens", "/admin/sources")


def test_each_admin_page_renders_for_an_admin(browser):
    admin = browser("admin")
    for path in ADMIN_PAGES:
        page = admin.get(path)

        assert page.status_code == 200, path
        assert 'id="admin-sections"' in page.text
        assert 'id="nav-admin"' in page.text


def test_a_viewer_sees_no_admin_link_and_is_refused_admin_pages(browser):
    viewer = browser("viewer")
    home = viewer.get("/reports")

    assert home.status_code == 200
    assert 'id="nav-admin"' not in home.text and 'id="nav-governance"' not in home.text
    assert 'id="nav-audit"' not in home.text and 'id="nav-reports"' in home.text
    for path in (*ADMIN_PAGES, "/admin/roles/viewer", "/admin/export/users"):
        assert viewer.get(path).status_code == 403, path


def test_a_viewer_cannot_create_a_user_even_with_its_csrf_token(browser, runtime):
    viewer = browser("viewer")
    token = csrf_of(viewer.get("/reports").text)
    answer = viewer.post(
        "/admin/users",
        data={"name": "mallory", "role": "admin", "password": PASSWORD, "_csrf": token},
        follow_redirects=False,
    )

    assert answer.status_code == 403
    with runtime.pool.connection() as conn, pytest.raises(accounts.UnknownAccount):
        accounts.get_user(conn, "mallory")


def test_an_admin_creates_a_user_who_can_sign_in(browser, runtime):
    admin = browser("admin")
    answer = post_form(
        admin,
        "/admin/users",
        "/admin/users",
        {"name": "lan", "email": "lan@example.com", "role": "marketer", "password": PASSWORD},
    )

    assert answer.status_code == 303
    assert "done=user_created" in answer.headers["location"]
    with runtime.pool.connection() as conn:
        user = accounts.get_user(conn, "lan")
    assert (user.role, user.email) == ("marketer", "lan@example.com")
    entry = last_audit(runtime, "user.create")
    assert entry.actor == "user:admin" and entry.target == "user:lan"
    assert PASSWORD not in str(entry.after)
    page = admin.get(answer.headers["location"]).text
    assert "The user was created." in page and "lan@example.com" in page
    assert sign_in(browser(None), "lan").status_code == 303


def test_a_refused_user_shows_why_beside_the_form_and_keeps_what_was_typed(browser, runtime):
    admin = browser("admin")
    answer = post_form(
        admin,
        "/admin/users",
        "/admin/users",
        {"name": "kim", "email": "kim@example.com", "role": "viewer", "password": "short"},
    )

    assert answer.status_code == 400
    assert 'id="form-error"' in answer.text and "password" in answer.text
    assert 'value="kim@example.com"' in answer.text and 'value="short"' not in answer.text
    with runtime.pool.connection() as conn, pytest.raises(accounts.UnknownAccount):
        accounts.get_user(conn, "kim")


def test_an_admin_changes_a_role_disables_enables_unlocks_and_resets_a_password(browser, runtime):
    admin = browser("admin")
    browser("viewer")  # creates the user `viewer`
    steps = [
        ({"action": "role", "role": "analyst"}, "user.role", lambda u: u.role == "analyst"),
        ({"action": "disable"}, "user.disable", lambda u: u.disabled),
        ({"action": "enable"}, "user.enable", lambda u: not u.disabled),
        ({"action": "unlock"}, "user.unlock", lambda u: u.failed_attempts == 0),
        ({"action": "password", "password": "a whole new passphrase"}, "user.password", None),
    ]
    for fields, action, holds in steps:
        answer = post_form(
            admin, "/admin/users", "/admin/users/change", {"user": "viewer", **fields}
        )
        assert answer.status_code == 303, answer.text
        with runtime.pool.connection() as conn:
            user = accounts.get_user(conn, "viewer")
        assert holds is None or holds(user)
        entry = last_audit(runtime, action)
        assert entry.actor == "user:admin" and entry.target == "user:viewer"

    assert sign_in(browser(None), "viewer", "a whole new passphrase").status_code == 303


def test_a_change_without_the_csrf_token_is_refused(browser, runtime):
    admin = browser("admin")
    browser("viewer")
    answer = admin.post(
        "/admin/users/change", data={"user": "viewer", "action": "disable"}, follow_redirects=False
    )

    assert answer.status_code == 403
    with runtime.pool.connection() as conn:
        assert not accounts.get_user(conn, "viewer").disabled


def test_an_unknown_user_change_is_shown_as_an_error(browser):
    answer = post_form(
        browser("admin"), "/admin/users", "/admin/users/change", {"user": "nobody", "action": "x"}
    )

    assert answer.status_code == 400
    assert "press one of" in answer.text


def test_a_custom_role_is_created_edited_and_deleted_with_permission_checkboxes(browser, runtime):
    admin = browser("admin")
    page = admin.get("/admin/roles").text
    assert "see saved reports and their schedules" in page  # labels from PERMISSIONS

    answer = post_form(
        admin,
        "/admin/roles",
        "/admin/roles",
        {"name": "auditor", "description": "reads logs", "permission": ["audit:read"]},
    )
    assert answer.status_code == 303
    with runtime.pool.connection() as conn:
        assert accounts.get_role(conn, "auditor").permissions == ("audit:read",)

    answer = post_form(
        admin,
        "/admin/roles/auditor",
        "/admin/roles/auditor",
        {"description": "reads", "permission": ["audit:read", "governance:read"]},
    )
    assert answer.status_code == 303
    with runtime.pool.connection() as conn:
        role = accounts.get_role(conn, "auditor")
    assert set(role.permissions) == {"audit:read", "governance:read"}
    assert last_audit(runtime, "role.").actor == "user:admin"

    answer = post_form(admin, "/admin/roles/auditor", "/admin/roles/auditor/delete", {})
    assert answer.status_code == 303
    with runtime.pool.connection() as conn, pytest.raises(accounts.UnknownAccount):
        accounts.get_role(conn, "auditor")


def test_a_role_with_an_unknown_permission_is_refused_inline(browser):
    answer = post_form(
        browser("admin"), "/admin/roles", "/admin/roles", {"name": "odd", "permission": ["fly"]}
    )

    assert answer.status_code == 400 and 'id="form-error"' in answer.text and "fly" in answer.text


def test_a_built_in_role_is_shown_without_an_edit_form(browser):
    page = browser("admin").get("/admin/roles/viewer").text

    assert 'id="role-built-in"' in page and 'id="role-edit-form"' not in page


def test_an_unknown_role_page_is_not_found(browser):
    assert browser("admin").get("/admin/roles/nope").status_code == 404


def test_a_new_token_is_shown_once_and_works_then_revoked_it_stops(browser, runtime, settings):
    admin = browser("admin")
    answer = post_form(
        admin,
        "/admin/tokens",
        "/admin/tokens",
        {"label": f"crm {HOSTILE}", "scope": ["profiles:read", "analytics:read"]},
    )

    assert answer.status_code == 201
    secret = re.search(r'id="secret-value" readonly value="([^"]+)"', answer.text).group(1)
    assert secret.startswith(tokens.TOKEN_PREFIX)
    assert HOSTILE not in answer.text and "&lt;script&gt;" in answer.text
    assert secret not in admin.get("/admin/tokens").text
    with runtime.pool.connection() as conn:
        [record] = tokens.list_tokens(conn)
        assert tokens.principal_for_token(conn, secret) is not None
    assert record.scopes == ("profiles:read", "analytics:read") or set(record.scopes) == {
        "profiles:read",
        "analytics:read",
    }
    assert secret not in str(last_audit(runtime, "token.create").after)

    answer = post_form(admin, "/admin/tokens", f"/admin/tokens/{record.token_id}/revoke", {})
    assert answer.status_code == 303
    with runtime.pool.connection() as conn:
        assert tokens.principal_for_token(conn, secret) is None
    assert last_audit(runtime, "token.revoke").target == f"token:{record.token_id}"


def test_a_token_without_scopes_is_refused_inline(browser):
    answer = post_form(browser("admin"), "/admin/tokens", "/admin/tokens", {"label": "empty"})

    assert answer.status_code == 400 and "at least one scope" in answer.text


def test_a_source_key_is_shown_once_rotated_and_revoked(browser, runtime):
    admin = browser("admin")
    answer = post_form(
        admin, "/admin/sources", "/admin/sources", {"name": "shop", "description": HOSTILE}
    )

    assert answer.status_code == 201
    key = re.search(r'id="secret-value" readonly value="([^"]+)"', answer.text).group(1)
    assert key.startswith(sources.KEY_PREFIX)
    assert HOSTILE not in answer.text
    page = admin.get("/admin/sources").text
    assert key not in page and key[: sources.SHOWN_CHARS] in page
    assert last_audit(runtime, "source.").actor == "user:admin"

    answer = post_form(
        admin, "/admin/sources", "/admin/sources/rotate", {"source": "shop", "grace_hours": "0"}
    )
    assert answer.status_code == 201
    new_key = re.search(r'id="secret-value" readonly value="([^"]+)"', answer.text).group(1)
    assert new_key != key
    [source] = [s for s in sources.list_sources(runtime) if s.name == "shop"]
    assert len(source.keys) == 2

    live = next(k for k in source.keys if k.revoked_at is None and k.expires_at is None)
    answer = post_form(
        admin, "/admin/sources", "/admin/sources/revoke", {"source": "shop", "key_id": live.key_id}
    )
    assert answer.status_code == 303
    [source] = [s for s in sources.list_sources(runtime) if s.name == "shop"]
    assert next(k for k in source.keys if k.key_id == live.key_id).revoked_at is not None


def test_an_analyst_sees_sources_but_no_forms_and_cannot_create_one(browser):
    analyst = browser("analyst")
    page = analyst.get("/admin/sources")

    assert page.status_code == 200 and 'id="source-create-form"' not in page.text
    answer = analyst.post(
        "/admin/sources", data={"name": "x", "_csrf": csrf_of(page.text)}, follow_redirects=False
    )
    assert answer.status_code == 403


def test_a_source_without_a_name_is_refused_inline(browser):
    answer = post_form(browser("admin"), "/admin/sources", "/admin/sources", {"name": " "})

    assert answer.status_code == 400 and "a source needs a name" in answer.text


def test_the_users_table_downloads_as_csv(browser):
    admin = browser("admin")
    answer = admin.get("/admin/export/users")
    rows = list(csv.reader(io.StringIO(answer.content.decode("utf-8-sig"))))

    assert rows[0][:3] == ["Name", "E-mail", "Role"]
    assert [row[0] for row in rows[1:]] == ["admin"] and rows[1][2] == "admin"
    assert admin.get("/admin/export/nothing").status_code == 404


def test_a_crafted_change_of_a_built_in_role_is_refused_and_changes_nothing(browser, runtime):
    answer = post_form(
        browser("admin"), "/admin/roles", "/admin/roles/viewer", {"permission": ["users:write"]}
    )

    assert answer.status_code >= 400 and 'id="form-error"' in answer.text
    with runtime.pool.connection() as conn:
        assert "users:write" not in accounts.get_role(conn, "viewer").permissions


def test_a_grace_period_not_offered_and_an_unknown_token_are_refused(browser, runtime):
    admin = browser("admin")
    sources.create_source(runtime, "shop", "user:test")
    answer = post_form(
        admin, "/admin/sources", "/admin/sources/rotate", {"source": "shop", "grace_hours": "5"}
    )
    assert answer.status_code == 400 and "grace periods offered" in answer.text
    [source] = [s for s in sources.list_sources(runtime) if s.name == "shop"]
    assert len(source.keys) == 1

    answer = post_form(admin, "/admin/tokens", "/admin/tokens/999/revoke", {})
    assert answer.status_code >= 400 and 'id="form-error"' in answer.text
