"""PDF exports of the analytics pages (/export/pdf/{kind}): the page's query string handed to
the report builder of that kind, rendered by c360.reports.pdf. (CSV exports of tables live
beside each page; a drill-down's CSV, every row of it, streams through `csv_download`.)

Touches no database itself: the builders read through the analytics services.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from litestar import Request, get
from litestar.datastructures import State
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Response, Stream

from c360.reports import registry
from c360.reports.csv_export import safe_cell, to_csv
from c360.reports.pdf import render_pdf
from c360.ui.pages.common import Link, require

#: The pages that download as PDF, with the permission that reads each page.
PDF_KINDS = {
    "overview": "dashboards:read",
    "rfm": "analytics:read",
    "cohorts": "analytics:read",
    "ltv": "analytics:read",
}


@get(
    "/export/pdf/{kind:str}",
    opt={"permission": "exports:create"},
    include_in_schema=False,
    sync_to_thread=True,
)
def page_pdf(request: Request[Any, Any, Any], state: State, kind: FromPath[str]) -> Response:
    """The page `kind` as a PDF report, for the same parameters as the page."""
    if kind not in PDF_KINDS:
        raise NotFoundException(f"there is no PDF of {kind!r}; try {', '.join(PDF_KINDS)}")
    who = require(request, PDF_KINDS[kind])
    params = {key: _value(request.query_params.getall(key)) for key in request.query_params}
    report = registry.build(kind, state.runtime, params, who)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M")
    return Response(
        content=render_pdf(report),
        media_type="application/pdf",
        headers={
            "Content-Disposition": f'attachment; filename="c360-{kind}-{stamp}.pdf"',
            "Cache-Control": "no-store",
        },
    )


HANDLERS = [page_pdf]


def _value(values: list[str]) -> str | list[str]:
    """One value as itself, repeated ones (source=a&source=b) as a list."""
    return values[0] if len(values) == 1 else values


#: Most rows a drill-down CSV holds; a larger one is cut there and says so in its file name
#: and its X-C360-Rows-Cut header (spreadsheets stop near a million rows anyway).
MAX_CSV_ROWS = 1_000_000

#: Rows read from the store per step of a CSV download: bounded memory, few round trips.
CSV_PAGE = 1000

#: `fetch(limit, offset)`: the total behind a table and one page of its rows (cells or Links).
Fetch = Callable[[int, int], tuple[int, list[list[Any]]]]


def csv_download(name: str, columns: Sequence[str], fetch: Fetch) -> Stream:
    """Every row of a drill-down as a CSV download, read and sent a page at a time. The first
    page is read before answering, so a bad parameter is an error page, not a broken file."""
    total, first = fetch(CSV_PAGE, 0)
    cut = total > MAX_CSV_ROWS
    filename = f"{name}-first-{MAX_CSV_ROWS}.csv" if cut else f"{name}.csv"
    headers = {
        "Content-Disposition": f'attachment; filename="{filename}"',
        "Cache-Control": "no-store",
    }
    if cut:
        headers["X-C360-Rows-Cut"] = f"{MAX_CSV_ROWS} of {total}"
    return Stream(
        _csv_chunks(columns, first, min(total, MAX_CSV_ROWS), fetch),
        media_type="text/csv; charset=utf-8",
        headers=headers,
    )


def _csv_chunks(
    columns: Sequence[str], first: list[list[Any]], wanted: int, fetch: Fetch
) -> Iterator[bytes]:
    yield to_csv(columns, _plain(first[:wanted]), bom=True)
    offset = len(first)
    while first and offset < wanted:
        _, rows = fetch(min(CSV_PAGE, wanted - offset), offset)
        if not rows:  # the data shrank while it was read
            return
        yield _csv_lines(_plain(rows))
        offset += len(rows)


def _csv_lines(rows: list[list[Any]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(
        [[safe_cell(value) for value in row] for row in rows]
    )
    return buffer.getvalue().encode("utf-8")


def _plain(rows: list[list[Any]]) -> list[list[Any]]:
    """Cells that are Links export their text."""
    return [[cell.text if isinstance(cell, Link) else cell for cell in row] for row in rows]
