"""A report as a PDF, drawn with fpdf2: text in a Unicode TrueType font (Vietnamese renders),
tables that break across pages with their header repeated, and bar and line charts drawn with
fpdf2's own vector primitives. Reads one font file; writes nothing.

The font is the first found of: Noto Sans from the `fontpkg-noto-sans` wheel, then the
system's DejaVu Sans, Noto Sans or Liberation Sans (Debian's fonts-dejavu-core and friends).
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from pathlib import Path

from fpdf import FPDF
from fpdf.fonts import FontFace

from c360.errors import C360Error
from c360.reports.csv_export import safe_cell
from c360.reports.model import Chart, Report, Table, Text

FONT_FAMILY = "c360"

#: System fonts with Vietnamese glyphs, tried in order: (regular, bold or None).
SYSTEM_FONTS = (
    (
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    ),
    (
        "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
        "/usr/share/fonts/truetype/noto/NotoSans-Bold.ttf",
    ),
    (
        "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
        "/usr/share/fonts/truetype/liberation/LiberationSans-Bold.ttf",
    ),
)

#: Series colours (RGB), distinguishable in colour and in greyscale print.
PALETTE = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189))

_CHART_HEIGHT = 70.0  # mm: a chart and its axis labels fit a third of an A4 page
_MAX_BAR_LABELS = 24  # beyond this, label every n-th bar so labels never overlap
_WIDTH_SAMPLE_ROWS = 200  # enough rows to judge a column's width, few enough to be quick


@dataclass(frozen=True)
class FontFiles:
    """The TrueType files the PDF embeds; `bold_weight` is set for a variable font."""

    regular: Path
    bold: Path
    bold_weight: float | None = None


def render_pdf(report: Report) -> bytes:
    """The report as PDF bytes."""
    pdf = _new_document(report)
    _title_block(pdf, report)
    for section in report.sections:
        if isinstance(section, Text):
            _text(pdf, section)
        elif isinstance(section, Table):
            _table(pdf, section)
        else:
            _chart(pdf, section)
    return bytes(pdf.output())


@lru_cache(maxsize=1)
def find_font() -> FontFiles:
    """The font files to embed; a C360Error says what to install when none is found."""
    spec = importlib.util.find_spec("fontpkg_noto_sans")
    if spec is not None and spec.origin is not None:
        variable = Path(spec.origin).parent / "files" / "NotoSans[wdth,wght].ttf"
        if variable.exists():
            return FontFiles(variable, variable, bold_weight=700)
    for regular, bold in SYSTEM_FONTS:
        if Path(regular).exists():
            return FontFiles(Path(regular), Path(bold if Path(bold).exists() else regular))
    raise C360Error(
        "no Unicode font for PDF reports: `pip install fontpkg-noto-sans` (or on Debian "
        "`apt-get install fonts-dejavu-core`)"
    )


class _Document(FPDF):
    """An A4 page with the report's title and the page number in the footer."""

    def __init__(self, title: str) -> None:
        super().__init__(orientation="portrait", unit="mm", format="A4")
        self.report_title = title

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font(FONT_FAMILY, "", 7)
        self.set_text_color(120, 120, 120)
        self.cell(0, 5, f"{self.report_title[:80]} · {self.page_no()}/{{nb}}", align="R")
        self.set_text_color(0, 0, 0)


def _new_document(report: Report) -> FPDF:
    pdf = _Document(report.title)
    pdf.set_title(report.title)
    pdf.set_creator("c360")
    pdf.set_creation_date(report.generated_at)
    fonts = find_font()
    pdf.add_font(FONT_FAMILY, "", str(fonts.regular))
    if fonts.bold_weight is not None:
        pdf.add_font(FONT_FAMILY, "B", str(fonts.bold), variations={"wght": fonts.bold_weight})
    else:
        pdf.add_font(FONT_FAMILY, "B", str(fonts.bold))
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.alias_nb_pages()
    pdf.add_page()
    return pdf


def _title_block(pdf: FPDF, report: Report) -> None:
    pdf.set_font(FONT_FAMILY, "B", 18)
    pdf.multi_cell(0, 9, report.title, new_x="LMARGIN", new_y="NEXT", align="L")
    pdf.set_font(FONT_FAMILY, "", 10)
    stamp = report.generated_at.strftime("%Y-%m-%d %H:%M UTC")
    subtitle = f"{report.subtitle} · {stamp}" if report.subtitle else stamp
    pdf.set_text_color(90, 90, 90)
    pdf.multi_cell(0, 6, subtitle, new_x="LMARGIN", new_y="NEXT", align="L")
    pdf.set_text_color(0, 0, 0)
    pdf.ln(4)


def _text(pdf: FPDF, section: Text) -> None:
    if section.heading:
        pdf.set_font(FONT_FAMILY, "B", 13)
        pdf.ln(2)
        pdf.multi_cell(0, 7, section.text, new_x="LMARGIN", new_y="NEXT", align="L")
    else:
        pdf.set_font(FONT_FAMILY, "", 10)
        pdf.multi_cell(0, 5, section.text, new_x="LMARGIN", new_y="NEXT", align="L")
    pdf.ln(2)


def _table(pdf: FPDF, section: Table) -> None:
    """A table whose header row repeats on every page it runs onto."""
    if section.caption:
        _caption(pdf, section.caption)
    if not section.columns:
        return
    pdf.set_font(FONT_FAMILY, "", 8 if len(section.columns) > 6 else 9)
    heading = FontFace(emphasis="BOLD", fill_color=(230, 236, 245))
    header = [str(name) for name in section.columns]
    body = [[_cell_text(value) for value in row] for row in section.rows]
    with pdf.table(
        headings_style=heading,
        repeat_headings=1,
        text_align="LEFT",
        line_height=pdf.font_size * 1.6,
        col_widths=_column_widths(pdf, header, body),
    ) as table:
        table.row(header)
        for row in body:
            table.row(row)
    pdf.ln(4)


def _column_widths(pdf: FPDF, header: list[str], body: list[list[str]]) -> list[float]:
    """Widths in proportion to each column's widest text (over the first rows), each at
    least a tenth of the widest, so ids and amounts stay on one line when they can."""
    sample = [header, *body[:_WIDTH_SAMPLE_ROWS]]
    widest = [
        max(pdf.get_string_width(row[column]) for row in sample) + 2
        for column in range(len(header))
    ]
    floor = max(widest) / 10
    return [max(width, floor) for width in widest]


def _cell_text(value: object) -> str:
    """What a PDF cell shows: text as it is (a PDF runs no formulas), other values written
    as the CSV export writes them (Decimal exact, times in ISO 8601)."""
    if isinstance(value, str):
        return value
    return safe_cell(value)  # type: ignore[arg-type]  # the model allows only Cell values


def _caption(pdf: FPDF, caption: str) -> None:
    pdf.set_font(FONT_FAMILY, "B", 11)
    pdf.multi_cell(0, 6, caption, new_x="LMARGIN", new_y="NEXT", align="L")
    pdf.ln(1)


def _chart(pdf: FPDF, chart: Chart) -> None:
    """Axes, a scale from zero, bars or lines per series, labels and a legend."""
    if pdf.get_y() + _CHART_HEIGHT + 20 > pdf.h - pdf.b_margin:
        pdf.add_page()
    if chart.caption:
        _caption(pdf, chart.caption)
    values = [float(v) for series in chart.series.values() for v in series]
    low, high = _scale(values)
    box = _Box(pdf.l_margin + 14, pdf.get_y() + 2, pdf.epw - 16, _CHART_HEIGHT)
    _axes(pdf, box, low, high)
    for number, series in enumerate(chart.series.values()):
        colour = PALETTE[number % len(PALETTE)]
        pdf.set_draw_color(*colour)
        pdf.set_fill_color(*colour)
        points = [float(v) for v in series]
        if chart.kind == "bar":
            _bars(pdf, box, points, low, high, number, len(chart.series))
        else:
            _line(pdf, box, points, low, high)
    _labels(pdf, box, chart.labels)
    _legend(pdf, box, list(chart.series))
    pdf.set_draw_color(0, 0, 0)
    pdf.set_y(box.top + box.height + 16)


@dataclass(frozen=True)
class _Box:
    left: float
    top: float
    width: float
    height: float

    def y(self, value: float, low: float, high: float) -> float:
        return self.top + self.height * (1 - (value - low) / (high - low))


def _scale(values: Sequence[float]) -> tuple[float, float]:
    """An axis from zero (or the lowest negative value) to a round number above the top."""
    finite = [v for v in values if math.isfinite(v)] or [0.0]
    low, high = min(0.0, min(finite)), max(0.0, max(finite))
    if high == low:
        high = low + 1
    step = 10 ** math.floor(math.log10(high - low))
    return math.floor(low / step) * step, math.ceil(high / step) * step


def _axes(pdf: FPDF, box: _Box, low: float, high: float) -> None:
    pdf.set_draw_color(120, 120, 120)
    pdf.set_line_width(0.2)
    pdf.line(box.left, box.top, box.left, box.top + box.height)
    zero = box.y(0.0, low, high)
    pdf.line(box.left, zero, box.left + box.width, zero)
    pdf.set_font(FONT_FAMILY, "", 7)
    for tick in range(5):
        value = low + (high - low) * tick / 4
        y = box.y(value, low, high)
        pdf.line(box.left - 1, y, box.left, y)
        pdf.set_xy(pdf.l_margin, y - 2)
        pdf.cell(13, 4, _short(value), align="R")


def _bars(
    pdf: FPDF, box: _Box, values: list[float], low: float, high: float, index: int, count: int
) -> None:
    slot = box.width / max(len(values), 1)
    width = slot * 0.8 / count
    zero = box.y(0.0, low, high)
    for position, value in enumerate(values):
        if not math.isfinite(value):
            continue
        x = box.left + slot * position + slot * 0.1 + width * index
        top = box.y(value, low, high)
        pdf.rect(x, min(top, zero), width, abs(zero - top), style="F")


def _line(pdf: FPDF, box: _Box, values: list[float], low: float, high: float) -> None:
    slot = box.width / max(len(values), 1)
    points = [
        (box.left + slot * (position + 0.5), box.y(value, low, high))
        for position, value in enumerate(values)
        if math.isfinite(value)
    ]
    pdf.set_line_width(0.6)
    if len(points) > 1:
        pdf.polyline(points)
    for x, y in points:
        pdf.circle(x, y, 0.8, style="F")
    pdf.set_line_width(0.2)


def _labels(pdf: FPDF, box: _Box, labels: Sequence[str]) -> None:
    slot = box.width / max(len(labels), 1)
    every = max(1, math.ceil(len(labels) / _MAX_BAR_LABELS))
    pdf.set_font(FONT_FAMILY, "", 6)
    pdf.set_text_color(60, 60, 60)
    for position, label in enumerate(labels):
        if position % every == 0:
            pdf.set_xy(box.left + slot * position, box.top + box.height + 1)
            pdf.cell(slot * every, 4, str(label)[:14], align="C")
    pdf.set_text_color(0, 0, 0)


def _legend(pdf: FPDF, box: _Box, names: list[str]) -> None:
    if len(names) < 2 and names and names[0] in ("", "value"):
        return  # one unnamed series needs no legend
    x = box.left
    pdf.set_font(FONT_FAMILY, "", 8)
    for number, name in enumerate(names):
        pdf.set_fill_color(*PALETTE[number % len(PALETTE)])
        pdf.rect(x, box.top + box.height + 7, 3, 3, style="F")
        pdf.set_xy(x + 4, box.top + box.height + 6.5)
        width = pdf.get_string_width(name) + 8
        pdf.cell(width, 4, name)
        x += width + 4


def _short(value: float) -> str:
    """An axis number: 1.5k, 2M, or the number itself when small."""
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.3g}{suffix}"
    return f"{Decimal(str(round(value, 6))).normalize():f}"
