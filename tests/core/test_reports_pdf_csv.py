"""Reports rendered as PDF (read back with pypdf) and as CSV (read back with the csv module):
titles, values and Vietnamese text survive; long tables repeat their header on every page;
charts are vector drawings; spreadsheet formulas are defused; money stays exact."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from decimal import Decimal

import pypdf
import pytest

from c360.access import Principal
from c360.errors import InputError
from c360.reports import registry
from c360.reports.csv_export import report_csv, safe_cell, to_csv
from c360.reports.mailer import attachment_name, check_recipients
from c360.reports.model import Chart, Report, Table, Text, as_json
from c360.reports.pdf import render_pdf

VIETNAMESE = "Nguyễn Thị Ánh Tuyết, Đà Nẵng: doanh thu tháng này tăng mạnh"


def _pages(pdf: bytes) -> list[str]:
    return [page.extract_text() for page in pypdf.PdfReader(io.BytesIO(pdf)).pages]


def test_a_pdf_holds_the_title_the_tables_values_and_vietnamese_text() -> None:
    report = Report(
        title="Báo cáo khách hàng",
        subtitle="Quý 1",
        generated_at=datetime(2026, 3, 1, 8, tzinfo=UTC),
        sections=[
            Text("Tổng quan", heading=True),
            Text(VIETNAMESE),
            Table(
                ["Khách hàng", "Doanh thu"],
                [["Trần Văn Bảo", Decimal("13990.93")], ["Lê Ngọc Hà", Decimal("0.10")]],
                caption="Top khách hàng",
            ),
        ],
    )

    pdf = render_pdf(report)

    assert pdf.startswith(b"%PDF-")
    text = "\n".join(_pages(pdf))
    for expected in (
        "Báo cáo khách hàng",
        "Quý 1",
        "2026-03-01 08:00 UTC",
        VIETNAMESE,
        "Trần Văn Bảo",
        "13990.93",
        "0.10",
        "Top khách hàng",
    ):
        assert expected in text, expected
    assert pypdf.PdfReader(io.BytesIO(pdf)).metadata.title == "Báo cáo khách hàng"


def test_a_long_table_breaks_across_pages_with_its_header_on_each() -> None:
    rows = [[f"Khách {n:03d}", Decimal(n) / 4] for n in range(200)]
    pdf = render_pdf(Report("Long", sections=[Table(["Tên khách", "Giá trị"], rows)]))

    pages = _pages(pdf)

    assert len(pages) >= 3
    for number, page in enumerate(pages, start=1):
        assert "Tên khách" in page and "Giá trị" in page
        assert f"Long · {number}/{len(pages)}" in page  # the footer
    text = "\n".join(pages)
    for n in (0, 57, 199):
        assert f"Khách {n:03d}" in text
    assert "49.75" in text  # 199 / 4, exact


def test_charts_are_drawn_as_vector_shapes_with_their_labels() -> None:
    report = Report(
        "Charts",
        sections=[
            Chart("bar", ["T1", "T2", "T3"], {"revenue": [10, Decimal("25.5"), 0]}, "Doanh thu"),
            Chart("line", ["a", "b", "c", "d"], {"x": [1, 3, 2, 5], "y": [2, 2, 2, 2]}, "Lines"),
        ],
    )

    pdf = render_pdf(report)

    page = pypdf.PdfReader(io.BytesIO(pdf)).pages[0]
    content = page.get_contents().get_data().decode("latin-1")
    assert content.count(" re") >= 2  # rectangles: the two non-zero bars (and legend keys)
    assert " l\n" in content or " l " in content  # line segments: axes and the polyline
    text = page.extract_text()
    for label in ("Doanh thu", "Lines", "T1", "T3", "x", "y"):
        assert label in text


def test_a_chart_of_only_zeros_or_negatives_still_renders() -> None:
    report = Report(
        "Edge",
        sections=[
            Chart("bar", ["a", "b"], {"v": [0, 0]}),
            Chart("line", ["a", "b"], {"v": [-5, Decimal("-0.5")]}),
            Chart("bar", [], {}),
        ],
    )
    assert render_pdf(report).startswith(b"%PDF-")


def test_csv_defuses_formulas_and_keeps_money_and_text_exact() -> None:
    rows = [
        ['=HYPERLINK("http://x")', Decimal("13990.93"), "Đà Nẵng"],
        ["+1+2", Decimal("-12.50"), "-cmd"],
        ["@SUM(A1)", 7, "\tTab"],
        ["\rCR", None, "plain, with comma"],
        ["a\nb", Decimal("1E+2"), datetime(2026, 3, 1, 8, tzinfo=UTC)],
    ]

    data = to_csv(["name", "revenue", "=note"], rows)

    assert not data.startswith(b"\xef\xbb\xbf")
    parsed = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
    assert parsed == [
        ["name", "revenue", "'=note"],
        ['\'=HYPERLINK("http://x")', "13990.93", "Đà Nẵng"],
        ["'+1+2", "-12.50", "'-cmd"],
        ["'@SUM(A1)", "7", "'\tTab"],
        ["'\rCR", "", "plain, with comma"],
        ["a\nb", "100", "2026-03-01T08:00:00+00:00"],
    ]


def test_csv_can_start_with_a_byte_order_mark_for_excel() -> None:
    data = to_csv(["tên"], [["Huế"]], bom=True)
    assert data.startswith(b"\xef\xbb\xbf")
    assert data.decode("utf-8-sig") == "tên\r\nHuế\r\n"


def test_safe_cell_writes_numbers_as_numbers() -> None:
    assert safe_cell(-3) == "-3"
    assert safe_cell(Decimal("-0.01")) == "-0.01"
    assert safe_cell(0.5) == "0.5"
    assert safe_cell(True) == "true"


def test_a_reports_csv_is_its_first_table() -> None:
    report = Report("R", sections=[Text("x"), Table(["a"], [["1"]]), Table(["b"], [["2"]])])
    assert report_csv(report) == b"a\r\n1\r\n"
    assert report_csv(Report("Chỉ chữ")) == "report\r\nChỉ chữ\r\n".encode()


def test_a_report_as_json_keeps_decimals_and_section_types() -> None:
    report = Report(
        "J",
        generated_at=datetime(2026, 1, 1, tzinfo=UTC),
        sections=[Text("t"), Table(["a"], [[Decimal("1.10")]]), Chart("bar", ["x"], {"s": [1]})],
    )
    doc = as_json(report)
    assert [section["type"] for section in doc["sections"]] == ["text", "table", "chart"]
    assert doc["sections"][1]["rows"] == [[Decimal("1.10")]]


def test_malformed_tables_and_charts_are_refused() -> None:
    with pytest.raises(InputError) as row:
        Table(["a", "b"], [["1"]], caption="T")
    with pytest.raises(InputError) as kind:
        Chart("pie", ["a"], {"s": [1]})  # type: ignore[arg-type]
    with pytest.raises(InputError) as series:
        Chart("bar", ["a", "b"], {"s": [1]})
    assert row.value.code == "invalid_table" and "row 1" in row.value.message
    assert kind.value.code == "invalid_chart"
    assert series.value.code == "invalid_chart"


def test_an_unknown_report_kind_names_the_known_ones() -> None:
    principal = Principal("user", "lan", "viewer")
    with pytest.raises(InputError) as refused:
        registry.build("no-such-kind", None, {}, principal)  # type: ignore[arg-type]
    assert refused.value.code == "unknown_report_kind"
    assert "ltv" in refused.value.message


def test_recipients_are_cleaned_and_duplicates_dropped() -> None:
    assert check_recipients([" a@example.com ", "A@example.com", "b@x.vn"]) == [
        "a@example.com",
        "b@x.vn",
    ]


def test_the_attachment_name_is_plain_ascii() -> None:
    report = Report("Báo cáo Đà Nẵng / Q1", generated_at=datetime(2026, 3, 1, tzinfo=UTC))
    assert attachment_name(report) == "bao-cao-da-nang-q1-2026-03-01.pdf"
