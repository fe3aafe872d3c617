"""What a report holds: a title, a subtitle, when it was made, and sections (tables, charts and
paragraphs of text). Builders make these; `c360.reports.pdf` and `c360.reports.csv_export`
render them. Plain data: nothing here touches a database or a file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

from c360.errors import InputError

#: What a table cell may hold; None prints as an empty cell.
Cell = str | int | Decimal | float | datetime | None

CHART_KINDS = ("bar", "line")


@dataclass(frozen=True)
class Text:
    """A paragraph (or a heading when `heading` is true)."""

    text: str
    heading: bool = False


@dataclass(frozen=True)
class Table:
    """Rows under named columns; every row has one cell per column."""

    columns: Sequence[str]
    rows: Sequence[Sequence[Cell]]
    caption: str = ""

    def __post_init__(self) -> None:
        width = len(self.columns)
        for number, row in enumerate(self.rows, start=1):
            if len(row) != width:
                raise InputError(
                    "invalid_table",
                    f"row {number} of table {self.caption!r} has {len(row)} cells for "
                    f"{width} columns; give every row one cell per column",
                )


@dataclass(frozen=True)
class Chart:
    """A bar or line chart: one value per label in each named series."""

    kind: Literal["bar", "line"]
    labels: Sequence[str]
    series: dict[str, Sequence[int | float | Decimal]]
    caption: str = ""

    def __post_init__(self) -> None:
        if self.kind not in CHART_KINDS:
            raise InputError("invalid_chart", f"a chart is bar or line, not {self.kind!r}")
        for name, values in self.series.items():
            if len(values) != len(self.labels):
                raise InputError(
                    "invalid_chart",
                    f"series {name!r} of chart {self.caption!r} has {len(values)} values "
                    f"for {len(self.labels)} labels; give one value per label",
                )


Section = Text | Table | Chart


@dataclass(frozen=True)
class Report:
    """A whole report, ready to render."""

    title: str
    subtitle: str = ""
    generated_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    sections: Sequence[Section] = ()

    def tables(self) -> list[Table]:
        """The report's tables in order (what a CSV export of the report holds)."""
        return [section for section in self.sections if isinstance(section, Table)]


def as_json(report: Report) -> dict[str, Any]:
    """The report as plain JSON-ready data (for an API answer or an HTML page)."""
    return {
        "title": report.title,
        "subtitle": report.subtitle,
        "generated_at": report.generated_at,
        "sections": [_section_json(section) for section in report.sections],
    }


def _section_json(section: Section) -> dict[str, Any]:
    if isinstance(section, Text):
        return {"type": "text", "text": section.text, "heading": section.heading}
    if isinstance(section, Table):
        return {
            "type": "table",
            "caption": section.caption,
            "columns": list(section.columns),
            "rows": [list(row) for row in section.rows],
        }
    return {
        "type": "chart",
        "kind": section.kind,
        "caption": section.caption,
        "labels": list(section.labels),
        "series": {name: list(values) for name, values in section.series.items()},
    }
