"""Customer pages: search by any identifier and a list by value or recency (/customers), and one
customer (/customers/{id}): profile with personal data masked for the reader's role,
identifiers, merge history, event timeline (paged), segments and consent.

Touches no database itself: profiles, merges, policies, segments and consent are services.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, get
from litestar.datastructures import State
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Response, Template

from c360 import audit, profile_service
from c360.analytics import drill
from c360.errors import InputError
from c360.governance import consent, policies
from c360.profile_service import ProfileFilter
from c360.segments import service as segment_service
from c360.ui.pages.common import (
    Link,
    TableView,
    csv_response,
    moment,
    page,
    principal,
    require,
    with_query,
)

#: Rows per page of the customer list and of a customer's timeline.
PAGE_SIZE = 50

#: Deepest offset a pager link may ask for (PostgreSQL scans everything before an OFFSET).
MAX_OFFSET = 1_000_000

_ORDERS = {"revenue": "Revenue", "last_seen": "Last seen", "orders": "Orders"}

_LIST_COLUMNS = ("Profile", "Email", "Orders", "Revenue", "Last seen")


@get(
    "/customers", opt={"permission": "profiles:read"}, include_in_schema=False, sync_to_thread=True
)
def customer_list(request: Request[Any, Any, Any], state: State) -> Template:
    """Search by any identifier (`q`), or the list ordered by revenue, last seen or orders."""
    view, form = _list(request, state)
    return page(request, "customers.html", "Customers", "customers", {"list": view, **form})


@get(
    "/customers/export",
    opt={"permission": "exports:create"},
    include_in_schema=False,
    sync_to_thread=True,
)
def customer_list_csv(request: Request[Any, Any, Any], state: State) -> Response:
    """The customer list as it is shown (same search, order and page), as CSV."""
    require(request, "profiles:read")
    view, _ = _list(request, state)
    return csv_response("customers.csv", view.columns, view.rows)


@get(
    "/customers/{reference:str}",
    opt={"permission": "profiles:read"},
    include_in_schema=False,
    sync_to_thread=True,
)
def customer_page(
    request: Request[Any, Any, Any], state: State, reference: FromPath[str]
) -> Template:
    """One customer: profile, identifiers, merges, timeline, segments and consent."""
    runtime = state.runtime
    doc = profile_service.get_profile(runtime, reference)
    if doc is None:
        raise NotFoundException(f"no customer is known by {reference!r}")
    who = principal(request)
    [shown] = _masked(request, state, [doc])
    offset = _offset(request)
    timeline = drill.profile_events(runtime, doc["profile_id"], PAGE_SIZE, offset)
    history = profile_service.profile_merges(runtime, doc["profile_id"]) or {"merges": []}
    following = offset + PAGE_SIZE
    context = {
        "profile": shown,
        "traits": sorted((shown.get("traits") or {}).items()),
        "identifiers": _identifiers_table(shown),
        "merges": _merges_table(history["merges"]),
        "timeline": _timeline_table(timeline),
        "previous_href": _page_href(request, offset - PAGE_SIZE) if offset > 0 else None,
        "next_href": _page_href(request, following) if following < timeline["total"] else None,
        "segments": segment_service.segments_of_profile(runtime, doc["profile_id"], who),
        "consent": consent.consent_for(runtime, doc["profile_id"]),
    }
    return page(request, "customer.html", "Customer", "customers", context)


HANDLERS = [customer_list, customer_list_csv, customer_page]


def _masked(
    request: Request[Any, Any, Any], state: State, docs: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The documents as the reader may see them; personal data shown unmasked is audited."""
    if not docs:
        return docs
    who = principal(request)
    with state.runtime.pool.connection() as conn:
        masked, fields = policies.mask_profiles(conn, who, docs)
        if fields and who is not None:
            audit.record_pii_read(
                conn,
                actor=who.actor,
                profile_ids=[doc["profile_id"] for doc in docs],
                fields=fields,
                # the route, not the path: /customers/<email> would copy the email into the
                # audit log; the profile ids say whose data was seen
                via=f"ui:{min(request.route_handler.paths, default='/customers')}",
            )
    return masked


def _list(request: Request[Any, Any, Any], state: State) -> tuple[TableView, dict[str, Any]]:
    """The table of the list page (masked per reader) and the form's current values."""
    runtime, params = state.runtime, request.query_params
    query = (params.get("q") or "").strip()
    order_by = params.get("order_by") or "revenue"
    if order_by not in _ORDERS:
        raise InputError("invalid_order_by", "order_by must be revenue, last_seen or orders")
    offset = _offset(request)
    if query:
        found = profile_service.get_profile(runtime, query)
        docs = [found] if found else []
    else:
        filters = ProfileFilter(order_by=order_by, limit=PAGE_SIZE + 1, offset=offset)
        docs = profile_service.list_profiles(runtime, filters)
    more = len(docs) > PAGE_SIZE
    shown = _masked(request, state, docs[:PAGE_SIZE])
    view = TableView(
        id="customer-list",
        caption=f"Customers matching {query!r}" if query else f"Customers by {_ORDERS[order_by]}",
        columns=_LIST_COLUMNS,
        rows=[_list_row(doc) for doc in shown],
        csv_href=with_query("/customers/export", params),
        numeric=frozenset({2, 3}),
    )
    form = {
        "q": query,
        "order_by": order_by,
        "orders": _ORDERS,
        "previous_href": _page_href(request, offset - PAGE_SIZE) if offset > 0 else None,
        "next_href": _page_href(request, offset + PAGE_SIZE) if more else None,
    }
    return view, form


def _list_row(doc: dict[str, Any]) -> list[Any]:
    email = next((i["raw"] or i["value"] for i in doc["identifiers"] if i["type"] == "email"), None)
    return [
        Link(_label(doc), f"/customers/{doc['profile_id']}"),
        email,
        doc["order_count"],
        doc["revenue"],
        doc["last_seen"],
    ]


def _label(doc: dict[str, Any]) -> str:
    """How a customer is named in a list: their userId, else the profile id."""
    user_ids = [i["value"] for i in doc["identifiers"] if i["type"] == "user_id"]
    return user_ids[0] if user_ids else doc["profile_id"]


def _identifiers_table(doc: dict[str, Any]) -> TableView:
    return TableView(
        id="identifiers",
        caption="Identifiers",
        columns=("Type", "Value", "As sent", "First seen", "Last seen"),
        rows=[
            [i["type"], i["value"], i.get("raw"), i.get("first_seen"), i.get("last_seen")]
            for i in doc["identifiers"]
        ],
    )


def _merges_table(history: list[dict[str, Any]]) -> TableView:
    return TableView(
        id="merges",
        caption="Merge history",
        columns=("Merge", "When", "Kept profile", "Merged profile", "Rule", "Undone"),
        rows=[
            [
                merge["merge_id"],
                merge["created_at"],
                Link(str(merge["surviving_id"]), f"/customers/{merge['surviving_id']}"),
                Link(str(merge["merged_id"]), f"/customers/{merge['merged_id']}"),
                merge["rule"],
                merge["undone_at"],
            ]
            for merge in history
        ],
    )


def _timeline_table(found: dict[str, Any]) -> TableView:
    shown = f"{found['offset'] + 1:,} to {found['offset'] + len(found['rows']):,} of "
    return TableView(
        id="timeline",
        caption=f"Events, newest first: {shown if found['rows'] else ''}{found['total']:,}",
        columns=("When", "Type", "Event", "Source", "Revenue"),
        rows=[
            [
                moment(event["time"]),
                event["type"],
                event.get("event"),
                event["source"],
                event.get("revenue"),
            ]
            for event in found["rows"]
        ],
        numeric=frozenset({4}),
    )


def _offset(request: Request[Any, Any, Any]) -> int:
    text = request.query_params.get("offset") or "0"
    if not text.isdigit() or int(text) > MAX_OFFSET:
        raise InputError(
            "invalid_page", f"offset must be a whole number from 0 to {MAX_OFFSET:,}; got {text!r}"
        )
    return int(text)


def _page_href(request: Request[Any, Any, Any], offset: int) -> str:
    return with_query(request.url.path, request.query_params, offset=max(offset, 0) or None)
