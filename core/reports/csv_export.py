"""Tables as CSV that spreadsheets open safely: UTF-8, money exact, and no cell a spreadsheet
would run as a formula.
Pure functions: nothing here touches a database or a file.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal

from c360.events.model import encode
from c360.reports.model import Cell, Report

#: A cell starting with one of these is a formula to Excel, LibreOffice or Google Sheets
#: (OWASP's CSV injection list); a leading apostrophe makes it plain text.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

#: Excel guesses the encoding of a CSV without a byte-order mark, and guesses wrong.
_BOM = "\ufeff"


def to_csv(columns: Sequence[str], rows: Iterable[Sequence[Cell]], bom: bool = False) -> bytes:
    """One table as CSV bytes: a header line, then one line per row. `bom` starts the file
    with a UTF-8 byte-order mark, for Excel (which misreads Vietnamese without one)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([safe_cell(name) for name in columns])
    for row in rows:
        writer.writerow([safe_cell(value) for value in row])
    return ((_BOM if bom else "") + buffer.getvalue()).encode("utf-8")


def report_csv(report: Report) -> bytes:
    """A report's first table as CSV (a report without a table gives just its title)."""
    tables = report.tables()
    if not tables:
        return to_csv(["report"], [[report.title]])
    return to_csv(tables[0].columns, tables[0].rows)


def safe_cell(value: Cell | dict | list | tuple) -> str:
    """A cell's text: Decimal exactly as stored, times in ISO 8601, formulas defused.

    A negative number stays a number (-12.5 is data, not a formula); a text starting with a
    formula character gets a leading apostrophe."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, int | float):
        return repr(value) if isinstance(value, float) else str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    # a profile's traits or attributes go out as JSON, not as Python's repr of a dict
    text = encode(value).decode() if isinstance(value, dict | list | tuple) else str(value)
    if text.startswith(FORMULA_STARTS):
        return "'" + text
    return text
