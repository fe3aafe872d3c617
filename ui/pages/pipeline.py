"""Pipeline health (/pipeline): the lag of each stage, the dead-letter queue with each entry's
raw payload shown as text (/pipeline/dlq/{id}), and a replay of an entry (pipeline:write).

Touches no bus or database itself: c360.governance.pipeline reads and replays.
"""

from __future__ import annotations

import json
from typing import Any

from litestar import Request, get, post
from litestar.datastructures import State
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Redirect, Response, Template

from c360.events.model import MAX_DEPTH, too_deep
from c360.governance import pipeline as pipeline_service
from c360.ui.pages.common import Link, TableView, csv_response, page, principal, require, with_query

#: Entries per page of the dead-letter list.
PAGE_SIZE = 50

#: What the page says after a replay, by c360.governance.pipeline's outcome.
OUTCOMES = {
    "accepted": "was accepted this time and is on its way through the pipeline",
    "rejected": "was refused again; the entry stays in the dead-letter queue, to replay once "
    "its cause is fixed",
    "already_replayed": "had been replayed and accepted before; nothing was sent twice",
    "not_replayable": "cannot be replayed (it was not an event sent to the gateway)",
    "not_found": "is no longer in the dead-letter queue",
}


@get("/pipeline", opt={"permission": "pipeline:read"}, include_in_schema=False, sync_to_thread=True)
def pipeline_page(request: Request[Any, Any, Any], state: State) -> Template:
    """Lag per stage and the newest dead letters."""
    lag, dlq = _tables(request, state)
    context = {
        "lag": lag,
        "dlq": dlq,
        "can_replay": _can_replay(request),
        "replayed": request.query_params.get("replayed"),
        "outcome": OUTCOMES.get(request.query_params.get("outcome") or "", ""),
    }
    return page(request, "pipeline.html", "Pipeline health", "pipeline", context)


@get(
    "/pipeline/export/{table:str}",
    # declared by the page's own permission: a role that may export but not see the
    # pipeline is refused by the guard; the export right is checked inside
    opt={"permission": "pipeline:read"},
    include_in_schema=False,
    sync_to_thread=True,
)
def pipeline_csv(request: Request[Any, Any, Any], state: State, table: FromPath[str]) -> Response:
    """The lag table (`lag`) or the dead-letter list (`dlq`) as CSV."""
    require(request, "exports:create")
    views = dict(zip(("lag", "dlq"), _tables(request, state), strict=True))
    if table not in views:
        raise NotFoundException("the pipeline tables are lag and dlq")
    view = views[table]
    return csv_response(f"pipeline-{table}.csv", view.columns, view.rows)


@get(
    "/pipeline/dlq/{entry_id:str}",
    opt={"permission": "pipeline:read"},
    include_in_schema=False,
    sync_to_thread=True,
)
def dlq_entry_page(
    request: Request[Any, Any, Any], state: State, entry_id: FromPath[str]
) -> Template:
    """One dead letter: why it was refused, where from, and its raw payload as escaped text."""
    entry = pipeline_service.dlq_entry(state.runtime, entry_id)
    context = {
        "entry": entry,
        "payload": _payload_text(entry.payload),
        "can_replay": _can_replay(request) and entry.replayable and entry.replayed_at is None,
    }
    return page(request, "dlq_entry.html", "Dead letter", "pipeline", context)


@post(
    "/pipeline/dlq/{entry_id:str}/replay",
    opt={"permission": "pipeline:write"},
    include_in_schema=False,
    sync_to_thread=True,
)
def dlq_replay(request: Request[Any, Any, Any], state: State, entry_id: FromPath[str]) -> Redirect:
    """Send the entry through the pipeline again; back to the list, which says how it went."""
    who = require(request, "pipeline:write")
    [outcome] = pipeline_service.replay(state.runtime, [entry_id], who.actor)
    return Redirect(
        path=with_query("/pipeline", {}, replayed=entry_id, outcome=outcome.outcome),
        status_code=303,
    )


HANDLERS = [pipeline_page, pipeline_csv, dlq_entry_page, dlq_replay]


def _tables(request: Request[Any, Any, Any], state: State) -> tuple[TableView, TableView]:
    runtime = state.runtime
    lag = TableView(
        id="stage-lag",
        caption="Lag per stage",
        columns=("Stage", "Topic", "Waiting", "Oldest waiting since", "Seconds behind"),
        rows=[
            [lag.stage, lag.topic, lag.waiting, lag.oldest_at, lag.age_s]
            for lag in pipeline_service.stage_lag(runtime)
        ],
        csv_href="/pipeline/export/lag",
        numeric=frozenset({2, 4}),
    )
    found = pipeline_service.dlq_entries(runtime, offset=0, limit=PAGE_SIZE)
    dlq = TableView(
        id="dlq",
        caption=f"Dead-letter queue: {found.total:,} entries, newest first",
        columns=("Entry", "Received", "Source", "Code", "Reason", "Replayed"),
        rows=[
            [
                Link(entry.entry_id, f"/pipeline/dlq/{entry.entry_id}"),
                entry.received_at,
                entry.source,
                entry.code,
                entry.reason,
                entry.replayed_at,
            ]
            for entry in found.entries
        ],
        csv_href="/pipeline/export/dlq",
    )
    return lag, dlq


def _payload_text(payload: Any) -> str:
    """The raw payload as text to show (the template escapes it): JSON indented when it is
    JSON, else as it came. JSON nested deeper than the gateway allows (likely why it was
    dead-lettered) is shown as it came: indenting it would recurse past the stack."""
    if isinstance(payload, bytes):
        payload = payload.decode("utf-8", errors="replace")
    if isinstance(payload, str):
        if too_deep(payload.encode("utf-8", "surrogatepass")):
            return payload
        try:
            payload = json.loads(payload)
        except ValueError:
            return payload
    try:
        return json.dumps(payload, indent=2, ensure_ascii=False, default=str)
    except RecursionError:
        return f"(nested more than {MAX_DEPTH} levels deep: too deep to show)"


def _can_replay(request: Request[Any, Any, Any]) -> bool:
    who = principal(request)
    return who is not None and who.can("pipeline:write")
