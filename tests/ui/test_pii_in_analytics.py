"""Personal data in the analytics pages, their CSVs and the analytics API: every list of
customers (RFM cells, cohorts, the overview's drill-downs, lifetime value, the segment
builder's preview) masks userIds for a role the access policies do not let see them, and a
userId shown unmasked is written to the audit log. Also: drill-down CSVs hold every row, not
the page on screen, and refuse a table they do not have; RFM and LTV say which day they are
as of."""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta

import numpy as np
import pytest

from c360 import audit, tokens

from .conftest import send_events

#: 60 customers, each ordering on 2026-03-01: more than a page (50) of any drill-down. With
#: 55 ordering again on 2026-04-01, every score's rank stays below n / 5 (ties share the lowest
#: rank), so all 60 are in RFM cell R1 F1.
CUSTOMERS = [f"pii-user-{n:03d}" for n in range(60)]
DAY = "2026-03-01"


def _events() -> list[dict]:
    """One order per customer on DAY, and one repeat order from the first 55 a month later
    (so the March cohort has 55 customers in month 1)."""
    found = []
    for n, user in enumerate(CUSTOMERS):
        found.append(_order(user, f"pii-{n}", DAY, f"{n + 1}.00"))
        if n < 55:
            found.append(_order(user, f"pii-r{n}", "2026-04-01", "1.00"))
    return found


def _order(user: str, message_id: str, day: str, revenue: str) -> dict:
    return {
        "userId": user,
        "messageId": message_id,
        "type": "track",
        "event": "Order Completed",
        "timestamp": f"{day}T10:00:00Z",
        "properties": {"revenue": revenue},
    }


@pytest.fixture
def store(browser, runtime):
    admin = browser("admin")
    send_events(admin, runtime, _events())
    return admin


#: Every page that lists customers, as the break test found them.
PAGES = [
    "/analytics/rfm/cell?r=1&f=1",
    f"/overview/profiles?period={DAY}",
    f"/overview/profiles?period={DAY}&metric=new_profiles",
    f"/overview/events?period={DAY}",
    "/analytics/cohorts/customers?cohort=2026-03&month_offset=1",
    "/analytics/ltv",
]

#: Every CSV of those lists.
EXPORTS = [
    "/export/csv/analytics/rfm-cell?r=1&f=1",
    f"/export/csv/overview/drill?period={DAY}&table=events",
    f"/export/csv/overview/drill?period={DAY}&table=profiles",
    "/export/csv/analytics/cohort-customers?cohort=2026-03&month_offset=1",
    "/export/csv/ltv/top",
]


def csv_rows(answer) -> list[list[str]]:
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/csv")
    return list(csv.reader(io.StringIO(answer.content.decode("utf-8-sig"))))


def pii_reads(runtime, actor: str) -> list[audit.AuditEntry]:
    with runtime.pool.connection() as conn:
        return audit.entries(conn, action_prefix="pii.read", actor=actor, limit=1000)


@pytest.mark.parametrize("role", ["viewer", "marketer", "analyst"])
def test_roles_without_access_see_no_user_id_on_any_analytics_page(browser, store, role):
    reader = browser(role)

    for path in PAGES:
        answer = reader.get(path)
        assert answer.status_code == 200, (path, answer.text)
        assert "pii-user-" not in answer.text, path
    assert "pii-user-" in store.get(PAGES[0]).text  # the admin sees them: the page lists them


@pytest.mark.parametrize("role", ["marketer", "analyst"])
def test_roles_without_access_see_no_user_id_in_any_analytics_csv(browser, store, role):
    reader = browser(role)

    for path in EXPORTS:
        assert "pii-user-" not in str(csv_rows(reader.get(path))), path


@pytest.mark.parametrize("role", ["viewer", "marketer", "analyst"])
def test_the_segment_preview_masks_user_ids_for_a_role_without_access(browser, store, role):
    form = {"kind": "field", "name": "revenue", "op": ">=", "value": "0", "days": ""}

    page = browser(role).get("/segments/preview", params=form).text

    assert "pii-user-" not in page
    assert "pii-user-" in store.get("/segments/preview", params=form).text


def test_user_ids_shown_on_an_analytics_page_are_audited(store, runtime):
    before = len(pii_reads(runtime, "user:admin"))

    page = store.get("/analytics/rfm/cell?r=1&f=1").text

    entries = pii_reads(runtime, "user:admin")
    assert len(entries) == before + 1
    assert entries[0].target == "ui:/analytics/rfm/cell"
    assert entries[0].detail["fields"] == ["id_user_id"]
    assert entries[0].detail["profile_count"] == page.count('href="/customers/')


def test_a_masked_page_writes_no_pii_read(browser, store, runtime):
    browser("viewer").get("/analytics/cohorts/customers?cohort=2026-03&month_offset=1")

    assert pii_reads(runtime, "user:viewer") == []


def test_an_analytics_token_without_pii_read_gets_masked_user_ids(browser, store, runtime):
    with runtime.pool.connection() as conn:
        secret = tokens.create_token(conn, "user:test", "analytics only", ["analytics:read"])[0]
    headers = {"Authorization": f"Bearer {secret}"}
    paths = [
        "/v1/analytics/rfm/cells/1/1",
        f"/v1/analytics/profiles?metric=new_profiles&period={DAY}",
        f"/v1/analytics/rows?period={DAY}",
        "/v1/analytics/cohorts/2026-03/1",
    ]
    api = browser(None)
    answers = [api.get(path, headers=headers) for path in paths]

    for path, answer in zip(paths, answers, strict=True):
        assert answer.status_code == 200, (path, answer.text)
        assert "pii-user-" not in answer.text, path
        assert '"user_id":"***"' in answer.text, path


@pytest.mark.parametrize(
    ("path", "rows"),
    [
        ("/export/csv/analytics/rfm-cell?r=1&f=1", len(CUSTOMERS)),
        (f"/export/csv/overview/drill?period={DAY}&table=events", len(CUSTOMERS)),
        (f"/export/csv/overview/drill?period={DAY}&table=profiles", len(CUSTOMERS)),
        ("/export/csv/overview/drill?metric=new_profiles&table=profiles", len(CUSTOMERS)),
        ("/export/csv/analytics/cohort-customers?cohort=2026-03&month_offset=1", 55),
    ],
)
def test_a_drill_down_csv_holds_every_row_not_one_page(store, path, rows):
    found = csv_rows(store.get(path))[1:]

    assert rows > 50
    assert len(found) == rows
    assert len({tuple(row) for row in found}) == rows  # each customer or event once


def _fitting_events() -> list[dict]:
    """150 customers drawn from the BG/NBD and Gamma-Gamma stories (as the LTV page test
    draws them), so the models fit and the LTV page lists its top customers."""
    rng = np.random.default_rng(6)
    rates, drops = rng.gamma(0.8, 1 / 6.0, 150), rng.beta(0.8, 2.4, 150)
    scales = rng.gamma(4.0, 1 / 15.0, 150)
    events = []
    for customer, (rate, drop, scale) in enumerate(zip(rates, drops, scales, strict=True)):
        week = rng.uniform(0, 20)
        while week < 52:
            day = date(2025, 1, 1) + timedelta(days=int(week * 7))
            revenue = f"{rng.gamma(6.0, 1 / scale):.2f}"
            events.append(_order(f"pii-user-{customer}", f"ltv-{len(events)}", str(day), revenue))
            if rng.random() < drop:
                break
            week += rng.exponential(1 / rate)
    return events


def test_the_ltv_lists_mask_user_ids_after_the_cache(browser, runtime):
    admin = browser("admin")
    send_events(admin, runtime, _fitting_events())
    path = "/analytics/ltv?top=30&churn_threshold=0.9"

    first = admin.get(path).text  # fills the cache with the fitted report
    marketer, analyst = browser("marketer"), browser("analyst")
    masked = [marketer.get(path).text, analyst.get(path).text]
    csvs = [
        marketer.get(f"/export/csv/ltv/{t}?top=30&churn_threshold=0.9") for t in ("top", "churn")
    ]

    assert 'id="ltv-top"' in first and "pii-user-" in first
    assert all('id="ltv-top"' in page and "pii-user-" not in page for page in masked)
    assert all("pii-user-" not in str(csv_rows(answer)) for answer in csvs)
    assert "pii-user-" in admin.get(path).text  # and the cache kept the admin's view
    reads = pii_reads(runtime, "user:admin")
    assert reads and reads[0].target == "ui:/analytics/ltv"
    assert pii_reads(runtime, "user:marketer") == []


def test_a_drill_down_csv_of_an_unknown_table_is_refused(store):
    answer = store.get(f"/export/csv/overview/drill?period={DAY}&table=nope")

    assert answer.status_code == 400
    assert "events or profiles" in answer.text


def test_rfm_and_ltv_pages_show_the_default_day_their_scores_are_as_of(store):
    rfm = store.get("/analytics/rfm").text
    ltv = store.get("/analytics/ltv").text
    chosen = store.get("/analytics/rfm?as_of=2026-03-31").text
    latest = "2026-04-01"  # the repeat orders' day, the last order of all

    assert f'id="rfm-as-of-day">{latest}<' in rfm and 'id="rfm-as-of-default"' in rfm
    assert f'id="ltv-as-of-day">{latest}<' in ltv and 'id="ltv-as-of-default"' in ltv
    assert 'id="rfm-as-of-day">2026-03-31<' in chosen
    assert 'id="rfm-as-of-default"' not in chosen
    assert 'value="2026-03-31"' in chosen  # the control keeps the chosen day
