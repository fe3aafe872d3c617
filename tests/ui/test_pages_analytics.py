"""The overview, customer, RFM, cohort and LTV pages on a small store filled through the gateway
and the real stages: every number as worked out here from the events sent, the drill-downs
behind them, CSV and PDF exports, personal data masked per role, and trait values carrying HTML
rendered as text."""

from __future__ import annotations

import csv
import io
import re
from datetime import date, timedelta
from decimal import Decimal

import numpy as np
import pypdf
import pytest

from .conftest import send_events

SCRIPT = "<script>alert(1)</script>"


def event(user: str, n: int, when: str, kind: str, **extra) -> dict:
    found = {"userId": user, "messageId": f"ui-{n}", "timestamp": f"{when}T10:00:00Z"}
    if kind == "order":
        return found | {
            "type": "track",
            "event": "Order Completed",
            "properties": {"revenue": extra["revenue"]},
        }
    if kind == "page":
        return found | {"type": "page", "name": "Home"}
    return found | {"type": "identify", "traits": extra["traits"]}


#: Three customers: lan orders twice in March, minh once in March, an once in April.
EVENTS = [
    event("lan", 1, "2026-03-01", "order", revenue="10.10"),
    event("lan", 2, "2026-03-01", "page"),
    event("lan", 3, "2026-03-15", "order", revenue="20.05"),
    event("lan", 4, "2026-03-15", "identify", traits={"email": "Lan@Example.VN", "plan": "gold"}),
    event("minh", 5, "2026-03-01", "order", revenue="5.55"),
    event("minh", 6, "2026-03-02", "identify", traits={"note": SCRIPT, "plan": "<b>x</b>"}),
    event("an", 7, "2026-04-02", "order", revenue="100.00"),
]
REVENUE = Decimal("10.10") + Decimal("20.05") + Decimal("5.55") + Decimal("100.00")


@pytest.fixture
def store(browser, runtime):
    admin = browser("admin")
    send_events(admin, runtime, EVENTS)
    return admin


def text_of(html: str, element_id: str) -> str:
    found = re.search(rf'id="{element_id}"[^>]*>([^<]*)<', html)
    assert found, element_id
    return found.group(1).strip()


def csv_rows(answer) -> list[list[str]]:
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/csv")
    return list(csv.reader(io.StringIO(answer.content.decode("utf-8-sig"))))


def test_the_overview_shows_every_event_customer_and_cent(store):
    page = store.get("/").text

    assert text_of(page, "number-events") == f"{len(EVENTS)}"
    assert text_of(page, "number-active-customers") == "3"
    assert text_of(page, "number-orders") == "4"
    assert text_of(page, "number-revenue") == f"{REVENUE:,.2f}"
    assert text_of(page, "number-profiles") == "3"
    assert text_of(page, "number-dlq") == "0"


def test_the_overview_series_and_its_csv_hold_each_day(store):
    rows = csv_rows(store.get("/export/csv/overview"))
    by_day = {row[0]: row[1:] for row in rows[1:]}

    assert rows[0] == ["Period", "Events", "Orders", "Revenue", "New profiles"]
    assert by_day["2026-03-01"][:3] == ["3", "2", "15.65"]
    assert by_day["2026-03-15"][:3] == ["2", "1", "20.05"]
    assert by_day["2026-04-02"][:3] == ["1", "1", "100.00"]
    assert by_day["2026-03-02"][:3] == ["1", "0", "0.00"]  # minh's identify, no order
    assert sum(int(values[0]) for values in by_day.values()) == len(EVENTS)


def test_the_filters_narrow_the_overview_and_stay_in_its_links(store):
    page = store.get("/?date_from=2026-03-01&date_to=2026-03-31&event_type=Order+Completed").text

    assert text_of(page, "number-events") == "3"
    assert text_of(page, "number-revenue") == "35.70"
    assert "/overview/events?date_from=2026-03-01&amp;date_to=2026-03-31" in page


def test_a_chart_point_drills_down_to_the_events_of_its_day(store):
    page = store.get("/").text
    chart = re.search(
        r'<script type="application/json" id="chart-events-data">(.*?)</script>', page, re.S
    )
    assert chart
    link = re.search(r'"/overview/events\?period=2026-03-01"', chart.group(1))
    assert link

    drill = store.get("/overview/events?period=2026-03-01").text
    assert "3 events on 2026-03-01" in drill
    for message_id in ("ui-1", "ui-2", "ui-5"):
        assert message_id in drill
    assert "ui-3" not in drill


def test_the_active_customers_drill_down_lists_the_profiles(store):
    page = store.get("/overview/profiles?metric=active_customers").text

    assert "3 active customers" in page
    for user in ("lan", "minh", "an"):
        assert f">{user}</a>" in page


def test_the_overview_downloads_as_a_pdf_with_its_title(store):
    answer = store.get("/export/pdf/overview?date_from=2026-03-01")

    assert answer.status_code == 200
    assert answer.content.startswith(b"%PDF")
    reader = pypdf.PdfReader(io.BytesIO(answer.content))
    assert reader.metadata.title == "Overview"
    assert "from 2026-03-01" in reader.pages[0].extract_text()


def test_a_viewer_cannot_download_what_needs_exports(browser, store):
    viewer = browser("viewer")

    assert viewer.get("/export/pdf/overview").status_code == 403
    assert viewer.get("/export/csv/overview").status_code == 403


def test_the_rfm_grid_counts_every_customer_and_links_each_cell(store):
    page = store.get("/analytics/rfm").text
    counts = [int(n) for n in re.findall(r'id="rfm-cell-\d-\d"[^>]*>([\d,]+)<', page)]

    assert len(counts) == 25
    assert sum(counts) == 3
    rows = csv_rows(store.get("/export/csv/analytics/rfm"))
    assert sum(Decimal(row[3]) for row in rows[1:]) == REVENUE
    cell = next(row for row in rows[1:] if row[2] != "0")
    listed = store.get(f"/analytics/rfm/cell?r={cell[0]}&f={cell[1]}").text
    assert f"{cell[2]} customers with recency score {cell[0]}" in listed


def test_the_cohort_table_shows_shares_and_who_is_behind_them(store):
    rows = csv_rows(store.get("/export/csv/analytics/cohorts"))

    assert rows[0][:4] == ["Cohort", "Customers", "Month 0", "Month 1"]
    march = next(row for row in rows if row[0] == "2026-03")
    april = next(row for row in rows if row[0] == "2026-04")
    assert march[1:4] == ["2", "100.0% (2)", "0.0% (0)"]
    assert april[1:3] == ["1", "100.0% (1)"]
    behind = store.get("/analytics/cohorts/customers?cohort=2026-03&month_offset=0").text
    assert ">lan</a>" in behind and ">minh</a>" in behind and ">an</a>" not in behind


@pytest.mark.parametrize("kind", ["rfm", "cohorts"])
def test_the_rfm_and_cohort_pages_download_as_pdf(store, kind):
    answer = store.get(f"/export/pdf/{kind}")

    assert answer.content.startswith(b"%PDF")
    title = pypdf.PdfReader(io.BytesIO(answer.content)).metadata.title
    assert title == {"rfm": "RFM", "cohorts": "Cohort retention"}[kind]


def test_the_ltv_page_says_when_the_models_cannot_be_fitted_yet(store):
    answer = store.get("/analytics/ltv")

    assert answer.status_code == 200
    assert "cannot be fitted yet" in answer.text  # with the model's own reason
    assert "3 customers (1 bought more than\n  once), 135.70 so far" in answer.text
    assert 'id="ltv-params"' not in answer.text


def test_the_ltv_page_shows_the_fitted_models_and_every_customer(browser, runtime):
    admin = browser("admin")
    # customers drawn from the BG/NBD story itself (Poisson buying at a Gamma-distributed
    # rate, dropping out after a purchase with a Beta-distributed chance), so a fit exists,
    rng = np.random.default_rng(6)
    events, n = [], 0
    start = date(2025, 1, 1)
    # and spending per order from Gamma-Gamma's story (a customer's own scale, Gamma-drawn)
    rates, drops = rng.gamma(0.8, 1 / 6.0, 150), rng.beta(0.8, 2.4, 150)
    scales = rng.gamma(4.0, 1 / 15.0, 150)
    for customer, (rate, drop, scale) in enumerate(zip(rates, drops, scales, strict=True)):
        week = rng.uniform(0, 20)
        while week < 52:
            n += 1
            day = start + timedelta(days=int(week * 7))
            revenue = f"{rng.gamma(6.0, 1 / scale):.2f}"
            events.append(
                event(f"c-{customer}", 1000 + n, day.isoformat(), "order", revenue=revenue)
            )
            if rng.random() < drop:
                break
            week += rng.exponential(1 / rate)
    send_events(admin, runtime, events)

    page = admin.get("/analytics/ltv?horizon_weeks=26&top=5").text
    value = csv_rows(admin.get("/export/csv/ltv/value?horizon_weeks=26&top=5"))
    alive = csv_rows(admin.get("/export/csv/ltv/alive?horizon_weeks=26&top=5"))
    top = csv_rows(admin.get("/export/csv/ltv/top?horizon_weeks=26&top=5"))

    assert 'id="ltv-params"' in page and 'id="chart-ltv-value"' in page
    assert sum(int(row[2]) for row in value[1:]) == 150
    assert sum(int(row[2]) for row in alive[1:]) == 150
    assert len(top) == 1 + 5
    predicted = [Decimal(row[5]) for row in top[1:]]
    assert predicted == sorted(predicted, reverse=True) and predicted[-1] >= 0
    pdf = admin.get("/export/pdf/ltv?horizon_weeks=26")
    assert pypdf.PdfReader(io.BytesIO(pdf.content)).metadata.title == "Customer lifetime value"


def test_trait_values_carrying_html_render_as_text(store):
    page = store.get("/customers/minh").text

    assert SCRIPT not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;b&gt;x&lt;/b&gt;" in page


def test_the_customer_page_shows_identifiers_merges_and_consent_sections(store):
    page = store.get("/customers/lan").text

    assert "lan@example.vn" in page
    for section in (
        "identifiers-heading",
        "merges-heading",
        "timeline-heading",
        "segments-heading",
        "consent-heading",
    ):
        assert f'id="{section}"' in page


def test_the_timeline_pages_through_the_events_newest_first(store, monkeypatch):
    from c360.ui.pages import customers

    monkeypatch.setattr(customers, "PAGE_SIZE", 3)
    first = store.get("/customers/lan").text

    assert "Events, newest first: 1 to 3 of 4" in first
    times = re.findall(r"2026-03-\d\d 10:00 UTC", first.split('id="timeline"')[1])
    assert times[:3] == ["2026-03-15 10:00 UTC", "2026-03-15 10:00 UTC", "2026-03-01 10:00 UTC"]
    later = re.search(r'id="timeline-pager-next" href="([^"]+)"', first)
    assert later
    second = store.get(later.group(1).replace("&amp;", "&")).text
    assert "Events, newest first: 4 to 4 of 4" in second
    assert 'id="timeline-pager-previous"' in second


def test_a_role_without_pii_access_sees_the_email_masked_on_page_and_export(browser, store):
    marketer = browser("marketer")
    page = marketer.get("/customers/lan").text
    rows = csv_rows(marketer.get("/customers/export?q=lan"))

    assert "lan@example.vn" not in page.lower()
    assert "lan@example.vn" not in str(rows).lower()
    assert "lan@example.vn" in store.get("/customers/lan").text


def test_the_customer_search_finds_anyone_by_any_identifier(store):
    page = store.get("/customers?q=LAN@example.vn").text

    assert "Customers matching" in page
    assert ">lan</a>" in page and ">minh</a>" not in page


def test_an_unknown_customer_is_a_404_page(store):
    answer = store.get("/customers/nobody-by-this-name")

    assert answer.status_code == 404
    assert "text/html" in answer.headers["content-type"]
    assert "no customer is known by" in answer.text


def test_the_report_builders_refuse_parameters_they_do_not_know(runtime):
    from c360.access import BUILT_IN_ROLES, Principal
    from c360.errors import InputError
    from c360.reports import registry

    analyst = Principal("user", "ana", "analyst", frozenset(BUILT_IN_ROLES["analyst"]))
    for kind, params in (("rfm", {"as_of": "2026-01-01", "r": "5"}), ("cohorts", {"x": "1"})):
        with pytest.raises(InputError) as refused:
            registry.build(kind, runtime, params, analyst)
        assert refused.value.code == "unknown_parameter"
    with pytest.raises(InputError) as refused:
        registry.build("overview", runtime, {"date_from": "yesterday"}, analyst)
    assert refused.value.code == "invalid_date"


def test_the_cohort_report_holds_the_numbers_of_the_page(store, runtime):
    from c360.access import BUILT_IN_ROLES, Principal
    from c360.reports import registry

    analyst = Principal("user", "ana", "analyst", frozenset(BUILT_IN_ROLES["analyst"]))
    report = registry.build("cohorts", runtime, {}, analyst)
    [table] = report.tables()

    assert [row[:3] for row in table.rows] == [["2026-03", 2, "100.0%"], ["2026-04", 1, "100.0%"]]
    assert table.rows[0][3] == "0.0%"
