"""PDF exports of the analytics pages (/export/pdf/{kind}): the page's query string handed to
the report builder of that kind, rendered by c360.reports.pdf. (CSV exports of tables live
beside each page.)

Touches no database itself: the builders read through the analytics services.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from litestar import Request, get
from litestar.datastructures import State
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Response

from c360.reports import registry
from c360.reports.pdf import render_pdf
from c360.ui.pages.common import require

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
