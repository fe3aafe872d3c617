"""Drill-down and PDF export in Chromium: a click on a bar of the overview's events chart opens
the events of that day, every one of them across the pages; the overview downloads as a PDF
whose title and figures read back with pypdf equal the slice's."""

from __future__ import annotations

import io
import re
from decimal import Decimal

import pytest
from playwright.sync_api import Page, expect
from pypdf import PdfReader

from .conftest import Expected, Trial, sign_in

pytestmark = pytest.mark.e2e

#: The day whose bar the test clicks: the busiest of the slice's first days.
DAY = "1997-01-02"

#: Where Chart.js drew the bar of DAY, in page coordinates (Chart.js's own element positions).
BAR_POSITION = """([canvasId, label]) => {
  const canvas = document.getElementById(canvasId);
  const chart = Chart.getChart(canvas);
  const index = chart.data.labels.indexOf(label);
  const bar = chart.getDatasetMeta(0).data[index];
  const box = canvas.getBoundingClientRect();
  return {x: box.left + bar.x, y: box.top + (bar.y + bar.base) / 2};
}"""


def drill_rows(page: Page) -> list[dict[str, str]]:
    """Every row of the drill-down table, following its pager to the end."""
    rows: list[dict[str, str]] = []
    while True:
        table = page.get_by_role("main").locator("table").first
        headers = [h.inner_text().strip() for h in table.locator("thead th").all()]
        for row in table.locator("tbody tr").all():
            cells = [c.inner_text().strip() for c in row.locator("th, td").all()]
            rows.append(dict(zip(headers, cells, strict=True)))
        following = page.get_by_role("link", name="Next page")
        if not following.count():
            return rows
        following.click()
        page.wait_for_load_state()


def test_a_click_on_a_days_bar_shows_the_events_of_that_day(
    page: Page, trial: Trial, expected: Expected
) -> None:
    sign_in(page, trial, "admin")  # the customers' user ids are personal data: admin sees them
    canvas = page.locator("canvas[data-chart]").first
    expect(canvas).to_have_attribute("data-drawn", "true")
    canvas.scroll_into_view_if_needed()
    point = page.evaluate(BAR_POSITION, [canvas.get_attribute("id"), DAY])

    page.mouse.click(point["x"], point["y"])

    page.wait_for_url(re.compile(rf"/overview/events\?.*period={DAY}"))
    rows = drill_rows(page)
    file_rows = [p for p in expected.purchases if p.day == DAY]
    assert len(rows) == len(file_rows) == expected.orders_on(DAY)
    assert {r["Time"][:10] for r in rows} == {DAY}
    assert sorted(r["Customer"] for r in rows) == sorted(f"cdnow-{p.customer}" for p in file_rows)
    assert sum(Decimal(r["Revenue"]) for r in rows) == sum(p.dollars for p in file_rows)


def test_the_overview_pdf_reads_back_with_its_title_and_the_slices_revenue(
    page: Page, trial: Trial, expected: Expected
) -> None:
    sign_in(page, trial, "analyst")

    with page.expect_download() as download:
        page.get_by_role("link", name="Download this page as PDF").click()

    assert download.value.suggested_filename.endswith(".pdf")
    reader = PdfReader(io.BytesIO(download.value.path().read_bytes()))
    text = reader.pages[0].extract_text()
    assert reader.metadata is not None and reader.metadata.title == "Overview"
    assert text.splitlines()[0] == "Overview"
    assert measure(text, "Orders") == expected.orders
    assert measure(text, "Revenue") == expected.revenue
    assert measure(text, "Active customers") == expected.customers


def measure(text: str, label: str) -> Decimal:
    """The value on the PDF's "Measure Value" line for `label` (separators dropped)."""
    for line in text.splitlines():
        if line.startswith(f"{label} ") and re.fullmatch(r"[\d,.]+", line[len(label) + 1 :]):
            return Decimal(line[len(label) + 1 :].replace(",", ""))
    raise AssertionError(f"no line for {label!r} in the PDF: {text[:800]}")
