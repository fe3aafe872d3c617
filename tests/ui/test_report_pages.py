"""Report pages: save a report from a kind and a page's filters, open it rendered from its
Report model, download it as PDF and CSV, schedule it (with its runs listed), share it with a
role or a user (who then see it through their own permissions) and delete it."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta

import pypdf
import pytest

from c360 import accounts, audit, sharing
from c360.reports import saved, schedules
from c360.ui.routes import template_config

from .conftest import csrf_of

HOSTILE = "<b onmouseover=alert(1)>Q1</b>"


def post_form(client, page_path, action, data):
    """Post a form of the page at `page_path` with the page's own CSRF token."""
    page = client.get(page_path)
    assert page.status_code == 200, page.text
    return client.post(action, data={**data, "_csrf": csrf_of(page.text)}, follow_redirects=False)


def last_audit(runtime, action):
    with runtime.pool.connection() as conn:
        [entry] = audit.entries(conn, action_prefix=action, limit=1)
    return entry


def user(runtime, name):
    with runtime.pool.connection() as conn:
        return accounts.get_user(conn, name)


@pytest.fixture
def compliance_report(browser, runtime):
    """An admin's client and the id of the compliance report it saved (named HOSTILE)."""
    admin = browser("admin")
    answer = post_form(
        admin,
        "/reports",
        "/reports",
        {"name": HOSTILE, "kind": "compliance", "params": "?since=2026-01-01&until=2026-12-31"},
    )
    assert answer.status_code == 303, answer.text
    report_id = int(re.search(r"/reports/(\d+)", answer.headers["location"]).group(1))
    return admin, report_id


def test_a_saved_report_keeps_its_kind_and_filters_and_is_audited(compliance_report, runtime):
    _admin, report_id = compliance_report

    with runtime.pool.connection() as conn:
        found = saved.get_report(
            conn, accounts.principal_for_user(conn, user(runtime, "admin").user_id), report_id
        )
    assert (found.name, found.kind) == (HOSTILE, "compliance")
    assert found.params == {"since": "2026-01-01", "until": "2026-12-31"}
    entry = last_audit(runtime, "report.create")
    assert entry.actor == "user:admin" and entry.target == f"report:{report_id}"


def test_the_report_page_renders_the_report_and_escapes_its_name(compliance_report):
    admin, report_id = compliance_report
    page = admin.get(f"/reports/{report_id}?done=report_saved").text

    assert "The report was saved." in page
    assert HOSTILE not in page and "&lt;b onmouseover=alert(1)&gt;Q1&lt;/b&gt;" in page
    assert "Personal data and who may see it" in page and "Administrative changes" in page
    assert "since=2026-01-01, until=2026-12-31" in page
    listing = admin.get("/reports").text
    assert f'href="/reports/{report_id}"' in listing and HOSTILE not in listing


def test_the_report_downloads_as_pdf_and_as_csv_with_every_table(compliance_report):
    admin, report_id = compliance_report

    pdf = admin.get(f"/reports/{report_id}/download/pdf")
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    text = "".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(pdf.content)).pages)
    assert "Compliance report" in text and "2026-01-01" in text
    rows = list(
        csv.reader(
            io.StringIO(admin.get(f"/reports/{report_id}/download/csv").text.lstrip("\ufeff"))
        )
    )
    captions = [row[0] for row in rows if len(row) == 1]
    assert captions[0] == "Personal data and who may see it"
    assert "Administrative changes" in captions and len(captions) == 6
    assert admin.get(f"/reports/{report_id}/download/doc").status_code == 404


def test_the_save_form_is_filled_from_the_address_a_page_links_to(browser):
    page = browser("marketer").get("/reports?kind=rfm&params=date_from%3D2026-01-01").text

    assert '<option value="rfm" selected>' in page
    assert 'value="date_from=2026-01-01"' in page


def test_a_report_of_an_unknown_kind_is_refused_inline(browser, runtime):
    answer = post_form(
        browser("marketer"), "/reports", "/reports", {"name": "x", "kind": "horoscope"}
    )

    assert answer.status_code == 400 and 'id="form-error"' in answer.text
    assert "no report kind" in answer.text
    with runtime.pool.connection() as conn:
        assert conn.execute("SELECT count(*) FROM analytics.saved_reports").fetchone()[0] == 0


def test_a_viewer_sees_reports_but_cannot_save_one(browser):
    viewer = browser("viewer")
    page = viewer.get("/reports")

    assert page.status_code == 200 and 'id="report-save-form"' not in page.text
    answer = viewer.post(
        "/reports",
        data={"name": "x", "kind": "overview", "_csrf": csrf_of(page.text)},
        follow_redirects=False,
    )
    assert answer.status_code == 403


def test_saving_a_report_without_the_csrf_token_is_refused(browser, runtime):
    answer = browser("marketer").post(
        "/reports", data={"name": "x", "kind": "overview"}, follow_redirects=False
    )

    assert answer.status_code == 403
    with runtime.pool.connection() as conn:
        assert conn.execute("SELECT count(*) FROM analytics.saved_reports").fetchone()[0] == 0


def test_a_schedule_is_made_from_the_form_and_its_runs_are_listed(compliance_report, runtime):
    admin, report_id = compliance_report
    answer = post_form(
        admin,
        f"/reports/{report_id}",
        f"/reports/{report_id}/schedules",
        {
            "every": "weekly",
            "at_hour": "6",
            "weekday": "2",
            "recipients": "auditor@example.com,\nlan@example.com",
        },
    )
    assert answer.status_code == 303, answer.text
    admin_principal = _principal(runtime, "admin")
    with runtime.pool.connection() as conn:
        [made] = schedules.list_schedules(conn, admin_principal, report_id)
    assert (made.every, made.at_hour, made.weekday) == ("weekly", 6, 2)
    assert made.recipients == ["auditor@example.com", "lan@example.com"]
    assert last_audit(runtime, "report.schedule").actor == "user:admin"

    # no SMTP server is configured in the tests: the run is recorded as failed, with why
    [run] = schedules.run_due(runtime, now=made.next_run_at + timedelta(minutes=1))
    page = admin.get(f"/reports/{report_id}").text
    assert "every Wednesday at 06:00 UTC" in page
    assert f"schedule-{made.schedule_id}-runs" in page and "no SMTP server is configured" in page
    assert run.outcome == "failed"
    runs = admin.get(f"/reports/schedules/{made.schedule_id}/runs").text.lstrip("\ufeff")
    [header, row] = list(csv.reader(io.StringIO(runs)))
    assert header[3] == "Outcome" and row[3] == "failed" and "SMTP" in row[6]

    answer = post_form(
        admin, f"/reports/{report_id}", f"/reports/schedules/{made.schedule_id}/delete", {}
    )
    assert answer.status_code == 303
    with runtime.pool.connection() as conn:
        assert schedules.list_schedules(conn, admin_principal, report_id) == []


def test_a_bad_schedule_says_what_to_change_and_keeps_the_recipients(compliance_report):
    admin, report_id = compliance_report
    answer = post_form(
        admin,
        f"/reports/{report_id}",
        f"/reports/{report_id}/schedules",
        {"every": "daily", "at_hour": "25", "recipients": "lan@example.com"},
    )

    assert answer.status_code == 400
    assert "at_hour must be a whole number from 0 to 23" in answer.text
    assert "lan@example.com</textarea>" in answer.text


def test_a_shared_report_is_seen_by_the_role_through_its_own_permissions(
    browser, compliance_report, runtime
):
    admin, report_id = compliance_report
    marketer = browser("marketer")
    assert marketer.get(f"/reports/{report_id}").status_code == 404

    answer = post_form(
        admin, f"/reports/{report_id}", f"/reports/{report_id}/shares", {"share_role": "marketer"}
    )
    assert answer.status_code == 303
    assert last_audit(runtime, "report.share").actor == "user:admin"
    page = marketer.get(f"/reports/{report_id}")
    # the marketer sees the report but cannot read the audit log it is built from
    assert page.status_code == 200 and 'id="report-build-error"' in page.text
    assert "Administrative changes" not in page.text
    assert 'id="report-share-form"' not in page.text and 'id="report-delete-form"' not in page.text
    assert marketer.get(f"/reports/{report_id}/download/pdf").status_code == 403
    assert f'href="/reports/{report_id}"' in marketer.get("/reports").text


def test_a_report_is_shared_with_one_user_by_name_and_unshared(browser, compliance_report, runtime):
    admin, report_id = compliance_report
    browser("analyst")
    answer = post_form(
        admin, f"/reports/{report_id}", f"/reports/{report_id}/shares", {"share_user": "analyst"}
    )
    assert answer.status_code == 303
    with runtime.pool.connection() as conn:
        [share] = sharing.shares_of(conn, "report", report_id)
    assert share.user_id == user(runtime, "analyst").user_id
    assert "user analyst" in admin.get(f"/reports/{report_id}").text

    answer = post_form(
        admin,
        f"/reports/{report_id}",
        f"/reports/{report_id}/shares/{share.share_id}/delete",
        {},
    )
    assert answer.status_code == 303
    with runtime.pool.connection() as conn:
        assert sharing.shares_of(conn, "report", report_id) == []


def test_sharing_with_an_unknown_user_is_refused_inline(compliance_report):
    admin, report_id = compliance_report
    answer = post_form(
        admin, f"/reports/{report_id}", f"/reports/{report_id}/shares", {"share_user": "ghost"}
    )

    assert answer.status_code == 404 and "there is no user called" in answer.text
    assert 'id="form-error"' in answer.text


def test_only_the_owner_deletes_a_report(browser, compliance_report, runtime):
    admin, report_id = compliance_report
    with runtime.pool.connection() as conn:
        sharing.share(conn, "user:admin", "report", report_id, role="analyst")
    analyst = browser("analyst")
    page = analyst.get(f"/reports/{report_id}")
    refused = analyst.post(
        f"/reports/{report_id}/delete",
        data={"_csrf": csrf_of(page.text)},
        follow_redirects=False,
    )
    assert refused.status_code == 403

    answer = post_form(admin, f"/reports/{report_id}", f"/reports/{report_id}/delete", {})
    assert answer.status_code == 303
    assert admin.get(f"/reports/{report_id}").status_code == 404
    assert last_audit(runtime, "report.delete").target == f"report:{report_id}"


def test_the_report_list_downloads_as_csv(compliance_report):
    admin, _report_id = compliance_report
    rows = list(csv.reader(io.StringIO(admin.get("/reports/export/list").text.lstrip("\ufeff"))))

    assert rows[0] == ["Report", "Kind", "Parameters", "Saved"]
    assert rows[1][:2] == [HOSTILE, "compliance"]  # CSV is data: kept as typed


def _principal(runtime, name):
    with runtime.pool.connection() as conn:
        return accounts.principal_for_user(conn, user(runtime, name).user_id)


def test_times_on_the_page_are_utc(compliance_report):
    admin, report_id = compliance_report
    page = admin.get(f"/reports/{report_id}").text

    assert datetime.now(UTC).strftime("%Y-%m-%d") in page and " UTC" in page


def test_the_save_form_a_page_includes_saves_that_page_with_its_filters(browser, runtime):
    engine = template_config().instance
    marketer = browser("marketer")
    token = csrf_of(marketer.get("/reports").text)
    html = engine.get_template("reports/save_form.html").render(
        csrf=token, save_kind="overview", save_query="date_from=2026-01-01&source=web&source=ios"
    )
    fields = dict(re.findall(r'type="hidden" name="(\w+)" value="([^"]*)"', html))
    assert fields["params"] == "date_from=2026-01-01&amp;source=web&amp;source=ios"

    answer = marketer.post(
        "/reports",
        data={"_csrf": fields["_csrf"], "kind": fields["kind"], "name": "Shop overview"}
        | {"params": "date_from=2026-01-01&source=web&source=ios"},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    with runtime.pool.connection() as conn:
        [made] = saved.list_reports(conn, _principal(runtime, "marketer"))
    assert (made.kind, made.name) == ("overview", "Shop overview")
    assert made.params == {"date_from": "2026-01-01", "source": ["web", "ios"]}


def test_an_analytics_page_links_to_saving_itself_with_its_filters(browser):
    filtered = "/?date_from=2026-01-01&date_to=2026-01-31"
    page = browser("marketer").get(filtered).text

    link = re.search(r'id="save-report" href="([^"]+)"', page)
    assert link is not None
    target = link.group(1).replace("&amp;", "&")
    form = browser("marketer").get(target).text
    assert '<option value="overview" selected>' in form
    assert "date_from=2026-01-01" in form and "date_to=2026-01-31" in form
    # a viewer may read reports but not save them: no link
    assert 'id="save-report"' not in browser("viewer").get(filtered).text
