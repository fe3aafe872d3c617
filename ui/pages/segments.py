"""Segment pages: the list (/segments), the builder for a new or saved segment with a live
count and preview (/segments/new, /segments/{id}), conditions added and removed with htmx,
save, share with roles or users, and CSV export of the members or of an unsaved filter.

The builder's conditions are form rows (kind, name, op, value, days) read into the JSON filter
c360.segments.spec understands; a filter the rows cannot express is edited as JSON instead.
Touches no database itself: c360.segments.service, c360.sharing and c360.accounts do.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from litestar import Request, get, post
from litestar.datastructures import State
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromPath
from litestar.response import Redirect, Response, Stream, Template

from c360 import accounts
from c360.errors import InputError
from c360.segments import service
from c360.segments.spec import AGGREGATE_FIELDS, COUNT_FIELDS, TIME_FIELDS
from c360.ui.pages.common import Link, TableView, page, principal, require, with_query

#: A posted form: repeated fields (one per condition row) arrive as lists.
Form = Annotated[dict[str, Any], Body(media_type=RequestEncodingType.URL_ENCODED)]

#: Profiles in the builder's preview.
PREVIEW_SIZE = 20

#: How long after the last keystroke the live count asks again (htmx's debounce).
COUNT_DELAY = "400ms"

#: The event that tells the builder's form its conditions changed (a row was removed).
CHANGED_EVENT = "segment-changed"

#: The kinds of condition a builder row can be, with what its name field means.
KINDS = {
    "field": "Profile figure",
    "trait": "Trait",
    "identifier": "Identifier",
    "event": "Event count",
}

#: Comparisons a row offers, by kind (the spec checks them again).
OPS = {
    "field": ("=", "!=", "<", "<=", ">", ">=", "in", "exists"),
    "trait": ("=", "!=", "<", "<=", ">", ">=", "in", "exists", "contains"),
    "identifier": ("=", "!=", "in", "exists", "contains"),
    "event": ("=", "!=", "<", "<=", ">", ">="),
}

IDENTIFIER_TYPES = ("user_id", "email", "phone", "anonymous_id", "crm_id")

#: The form's row fields; each is repeated once per condition, in order.
ROW_FIELDS = ("kind", "name", "op", "value", "days")


@dataclass
class Row:
    """One condition of the builder as its form shows it."""

    kind: str = "field"
    name: str = "revenue"
    op: str = ">="
    value: str = "0"  # a new row matches everyone until changed, so the count starts whole
    days: str = ""


@get("/segments", opt={"permission": "segments:read"}, include_in_schema=False, sync_to_thread=True)
def segment_list(request: Request[Any, Any, Any], state: State) -> Template:
    """The segments the reader may see."""
    with state.runtime.pool.connection() as conn:
        found = service.list_segments(conn, _who(request))
    view = TableView(
        id="segment-list",
        caption="Saved segments you can see",
        columns=("Segment", "Members", "Owner", "Computed"),
        rows=[
            [
                Link(s["name"], f"/segments/{s['segment_id']}"),
                s["member_count"],
                s["owner"],
                s["computed_at"],
            ]
            for s in found
        ],
        numeric=frozenset({1}),
    )
    return page(request, "segments.html", "Segments", "segments", {"list": view})


@get(
    "/segments/new",
    opt={"permission": "segments:read"},
    include_in_schema=False,
    sync_to_thread=True,
)
def segment_new(request: Request[Any, Any, Any], state: State) -> Template:
    """An empty builder (one condition to start from)."""
    return _builder(request, state, None, [Row()], "", "", None)


@get(
    "/segments/{segment_id:int}",
    opt={"permission": "segments:read"},
    include_in_schema=False,
    sync_to_thread=True,
)
def segment_page(
    request: Request[Any, Any, Any], state: State, segment_id: FromPath[int]
) -> Template:
    """A saved segment in the builder, with its members, shares and export."""
    with state.runtime.pool.connection() as conn:
        found = service.get_segment(conn, _who(request), segment_id)
    rows = rows_of_spec(found["spec"])
    spec_json = "" if rows is not None else json.dumps(found["spec"], indent=2)
    return _builder(request, state, found, rows or [], spec_json, found["name"], None)


@get(
    "/segments/preview",
    opt={"permission": "segments:read"},
    include_in_schema=False,
    sync_to_thread=True,
)
def segment_preview(request: Request[Any, Any, Any], state: State) -> Template:
    """The live count and a page of matching profiles for the builder's current form."""
    context = _preview(request, state, request.query_params)
    return page(request, "segment_preview.html", "Preview", "segments", context)


@get("/segments/condition", opt={"permission": "segments:read"}, include_in_schema=False)
async def segment_condition(request: Request[Any, Any, Any]) -> Template:
    """A new condition row for the builder (htmx appends it to the list)."""
    context = {"row": Row(), "row_id": secrets.token_hex(4), **_choices()}
    return page(request, "segment_condition.html", "Condition", "segments", context)


@get("/segments/condition/removed", opt={"permission": "segments:read"}, include_in_schema=False)
async def segment_condition_removed() -> Response:
    """Nothing: htmx removes the row whose Remove button asked (hx-swap delete); the event in
    HX-Trigger-After-Swap makes the builder count again without that condition."""
    return Response(
        content=b"", media_type="text/html", headers={"HX-Trigger-After-Swap": CHANGED_EVENT}
    )


@post(
    "/segments", opt={"permission": "segments:write"}, include_in_schema=False, sync_to_thread=True
)
def segment_create(request: Request[Any, Any, Any], state: State, data: Form) -> Any:
    """Save the builder's filter as a new segment, then show it."""
    form = data
    who = _who(request)
    try:
        spec = spec_of_form(form)
        with state.runtime.pool.connection() as conn:
            saved = service.save(
                conn,
                who.actor,
                form.get("segment_name", ""),
                spec,
                form.get("description", ""),
                region=state.settings.default_region,
                principal=who,  # filters on personal data need the right to see it
            )
    except InputError as exc:
        return _refused(request, state, None, form, exc)
    return Redirect(path=f"/segments/{saved['segment_id']}?saved=1", status_code=303)


@post(
    "/segments/{segment_id:int}",
    opt={"permission": "segments:write"},
    include_in_schema=False,
    sync_to_thread=True,
)
def segment_update(
    request: Request[Any, Any, Any], state: State, segment_id: FromPath[int], data: Form
) -> Any:
    """Save changes to a segment's name, description or filter (its owner or an admin)."""
    form = data
    who = _who(request)
    try:
        spec = spec_of_form(form)
        with state.runtime.pool.connection() as conn:
            service.update(
                conn,
                who,
                segment_id,
                name=form.get("segment_name", ""),
                spec=spec,
                description=form.get("description", ""),
                region=state.settings.default_region,
            )
    except InputError as exc:
        with state.runtime.pool.connection() as conn:
            found = service.get_segment(conn, who, segment_id)
        return _refused(request, state, found, form, exc)
    return Redirect(path=f"/segments/{segment_id}?saved=1", status_code=303)


@post(
    "/segments/{segment_id:int}/share",
    opt={"permission": "segments:write"},
    include_in_schema=False,
    sync_to_thread=True,
)
def segment_share(
    request: Request[Any, Any, Any], state: State, segment_id: FromPath[int], data: Form
) -> Any:
    """Share the segment with a role or with one user, by name."""
    form = data
    who = _who(request)
    role = form.get("share_role") or None
    user_name = (form.get("share_user") or "").strip()
    try:
        with state.runtime.pool.connection() as conn:
            user_id = accounts.get_user(conn, user_name).user_id if user_name else None
            service.share_segment(conn, who, segment_id, role=role, user_id=user_id)
    except InputError as exc:
        with state.runtime.pool.connection() as conn:
            found = service.get_segment(conn, who, segment_id)
        return _refused(request, state, found, form, exc, keep_spec=False)
    return Redirect(path=f"/segments/{segment_id}?shared=1", status_code=303)


@get(
    "/segments/{segment_id:int}/export",
    opt={"permission": "exports:create"},
    include_in_schema=False,
    sync_to_thread=True,
)
def segment_export(
    request: Request[Any, Any, Any], state: State, segment_id: FromPath[int]
) -> Stream:
    """The segment's members as CSV, masked for the reader."""
    who = require(request, "segments:read")
    chunks = service.export_csv(state.runtime, segment_id, who)
    return _csv_stream(chunks, f"segment-{segment_id}.csv")


@get(
    "/segments/export",
    opt={"permission": "exports:create"},
    include_in_schema=False,
    sync_to_thread=True,
)
def segment_filter_export(request: Request[Any, Any, Any], state: State) -> Stream:
    """The profiles matching the builder's unsaved filter as CSV, masked for the reader."""
    who = require(request, "segments:read")
    spec = spec_of_form(request.query_params)
    return _csv_stream(service.export_csv(state.runtime, spec, who), "segment-preview.csv")


HANDLERS = [
    segment_list,
    segment_new,
    segment_preview,
    segment_condition,
    segment_condition_removed,
    segment_export,
    segment_filter_export,
    segment_page,
    segment_create,
    segment_update,
    segment_share,
]


def spec_of_form(form: Any) -> Any:
    """The JSON filter of the builder's form: its JSON box when filled, else all its rows.
    A form with no condition matches every profile."""
    text = (_one(form, "spec_json") or "").strip()
    if text:
        try:
            return json.loads(text, parse_float=Decimal)
        except ValueError as exc:
            raise InputError(
                "segment_invalid_json",
                f"the filter written as JSON cannot be read ({exc}); fix it or empty the box "
                "to use the conditions above",
            ) from exc
    return {"all": [condition_of_row(row) for row in rows_of_form(form)]}


def rows_of_form(form: Any) -> list[Row]:
    """The builder rows, from the repeated fields (the nth of each field is row n)."""
    columns = {name: _all(form, name) for name in ROW_FIELDS}
    count = len(columns["kind"])
    if any(len(values) != count for values in columns.values()):
        raise InputError(
            "segment_form_broken", "the builder's rows arrived incomplete; reload the page"
        )
    return [Row(*(columns[name][i].strip() for name in ROW_FIELDS)) for i in range(count)]


def condition_of_row(row: Row) -> dict[str, Any]:
    """One row as a spec condition (the spec reader checks it and says what to change)."""
    days = _whole(row.days, "days") if row.days else None
    if row.kind == "event":
        found: dict[str, Any] = {
            "event": row.name,
            "count": {"op": row.op, "value": _whole(row.value or "1", "count")},
        }
        return found | ({"within_days": days} if days is not None else {})
    if row.kind == "field" and row.name in TIME_FIELDS and days is not None:
        return {"field": row.name, "within_days": days}
    if row.kind not in KINDS:
        raise InputError("segment_unknown_kind", f"a condition is one of {', '.join(KINDS)}")
    found = {row.kind: row.name, "op": row.op}
    if row.op != "exists":
        found["value"] = _value(row)
    return found


def rows_of_spec(spec: Any) -> list[Row] | None:
    """The builder rows of a saved filter, or None when rows cannot show it (nesting)."""
    if not isinstance(spec, Mapping) or set(spec) != {"all"} or not isinstance(spec["all"], list):
        return None
    rows = [_row_of_condition(condition) for condition in spec["all"]]
    return None if any(row is None for row in rows) else [row for row in rows if row]


def _row_of_condition(condition: Any) -> Row | None:
    if not isinstance(condition, Mapping):
        return None
    if "event" in condition and set(condition) <= {"event", "count", "within_days"}:
        count = condition.get("count", {"op": ">=", "value": 1})
        days = condition.get("within_days")
        return Row(
            "event",
            str(condition["event"]),
            str(count.get("op")),
            str(count.get("value")),
            "" if days is None else str(days),
        )
    if "field" in condition and "within_days" in condition:
        return Row("field", str(condition["field"]), ">=", "", str(condition["within_days"]))
    for kind in ("field", "trait", "identifier"):
        if kind in condition and set(condition) <= {kind, "op", "value"}:
            value = condition.get("value", "")
            text = ", ".join(map(str, value)) if isinstance(value, list) else _text(value)
            return Row(kind, str(condition[kind]), str(condition.get("op")), text, "")
    return None


def _builder(
    request: Request[Any, Any, Any],
    state: State,
    found: dict[str, Any] | None,
    rows: list[Row],
    spec_json: str,
    name: str,
    error: InputError | None,
    description: str | None = None,
) -> Template:
    """The builder page: the form, and (for a saved segment) its shares and members."""
    who = principal(request)
    can_write = who is not None and who.can("segments:write")
    context: dict[str, Any] = {
        "segment": found,
        "rows": rows,
        "spec_json": spec_json,
        "segment_name": name,
        "description": description
        if description is not None
        else (found or {}).get("description", ""),
        "error": error,
        "can_write": can_write,
        "can_export": who is not None and who.can("exports:create"),
        "count_delay": COUNT_DELAY,
        "saved": request.query_params.get("saved") == "1",
        "shared": request.query_params.get("shared") == "1",
        "roles": _roles(state) if can_write and found else [],
        **_choices(),
    }
    try:
        context.update(_preview(request, state, None, spec=_spec_of(rows, spec_json)))
    except InputError as exc:  # a saved filter that no longer reads: show why, keep the form
        context.update({"preview_error": exc, "count": None, "preview": None})
    title = f"Segment {name}" if found else "New segment"
    status = error.status_code if error else 200
    return page(request, "segment.html", title, "segments", context, status_code=status)


def _refused(
    request: Request[Any, Any, Any],
    state: State,
    found: dict[str, Any] | None,
    form: Any,
    exc: InputError,
    keep_spec: bool = True,
) -> Template:
    """The builder again, as the user left it, with what to change."""
    if keep_spec:
        try:
            rows = rows_of_form(form)
        except InputError:
            rows = [Row()]
        spec_json = _one(form, "spec_json") or ""
        name, description = _one(form, "segment_name") or "", _one(form, "description")
    else:
        assert found is not None
        rows = rows_of_spec(found["spec"]) or []
        spec_json = "" if rows else json.dumps(found["spec"], indent=2)
        name, description = found["name"], None
    return _builder(request, state, found, rows, spec_json, name, exc, description)


def _preview(
    request: Request[Any, Any, Any], state: State, form: Any, spec: Any = None
) -> dict[str, Any]:
    """The live count and preview table for a form (or a spec already read)."""
    try:
        spec = spec if spec is not None else spec_of_form(form)
        found = service.preview(state.runtime, spec, PREVIEW_SIZE, 0, principal(request))
    except InputError as exc:
        return {"preview_error": exc, "count": None, "preview": None}
    view = TableView(
        id="segment-preview",
        caption=f"The first {min(PREVIEW_SIZE, found['count'])} of {found['count']:,} "
        "matching customers, by revenue",
        columns=("Customer", "Email", "Orders", "Revenue", "Last seen"),
        rows=[_preview_row(doc) for doc in found["profiles"]],
        csv_href=_export_href(form),
        numeric=frozenset({2, 3}),
    )
    return {"preview_error": None, "count": found["count"], "preview": view}


def _export_href(form: Any) -> str | None:
    """The CSV link of an unsaved filter: the form's fields, never its CSRF token (a URL
    ends up in logs and browser history)."""
    if form is None:
        return None
    pairs = {name: _all(form, name) for name in (*ROW_FIELDS, "spec_json")}
    return with_query("/segments/export", {k: v for k, v in pairs.items() if v})


def _preview_row(doc: dict[str, Any]) -> list[Any]:
    identifiers = doc.get("identifiers") or []
    user_ids = [i["value"] for i in identifiers if i["type"] == "user_id"]
    email = next((i.get("raw") or i["value"] for i in identifiers if i["type"] == "email"), None)
    label = user_ids[0] if user_ids else doc["profile_id"]
    return [
        Link(label, f"/customers/{doc['profile_id']}"),
        email,
        doc.get("order_count"),
        doc.get("revenue"),
        doc.get("last_seen"),
    ]


def _spec_of(rows: list[Row], spec_json: str) -> Any:
    if spec_json:
        return json.loads(spec_json, parse_float=Decimal)
    return {"all": [condition_of_row(row) for row in rows]}


def _choices() -> dict[str, Any]:
    return {
        "kinds": KINDS,
        "ops": OPS,
        "fields": AGGREGATE_FIELDS,
        "identifier_types": IDENTIFIER_TYPES,
    }


def _roles(state: State) -> list[str]:
    with state.runtime.pool.connection() as conn:
        return [role.name for role in accounts.list_roles(conn)]


def _value(row: Row) -> Any:
    """The row's value as the spec wants it: whole numbers for counts, lists for `in`,
    numbers and true / false for traits written so, else the text."""
    if row.op == "in":
        return [_scalar(row, part.strip()) for part in row.value.split(",") if part.strip()]
    return _scalar(row, row.value)


def _scalar(row: Row, text: str) -> Any:
    if row.kind == "field" and row.name in COUNT_FIELDS:
        return _whole(text, row.name)
    if row.kind == "trait" and text in ("true", "false"):
        return text == "true"
    if row.kind == "trait" and text and text.lstrip("-").replace(".", "", 1).isdigit():
        try:
            return Decimal(text) if "." in text else int(text)
        except InvalidOperation:
            return text
    return text


def _whole(text: str, name: str) -> int:
    if not text.isdigit():
        raise InputError("segment_invalid_value", f"{name} must be a whole number; got {text!r}")
    return int(text)


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _who(request: Request[Any, Any, Any]) -> Any:
    who = principal(request)
    if who is None:
        raise InputError("not_signed_in", "sign in first")
    return who


def _csv_stream(chunks: Iterator[bytes], filename: str) -> Stream:
    return Stream(
        chunks,
        media_type="text/csv",  # Litestar adds the charset
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
        },
    )


def _one(form: Any, name: str) -> str | None:
    values = _all(form, name)
    return values[-1] if values else None


def _all(form: Any, name: str) -> list[str]:
    if hasattr(form, "getall"):
        return [str(value) for value in form.getall(name, [])]
    value = form.get(name) if isinstance(form, Mapping) else None
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list | tuple) else [str(value)]
