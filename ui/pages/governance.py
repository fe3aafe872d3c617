"""Governance pages: tracking plans and their violations (/governance/tracking-plans), attribute
definitions and F0 runs (/governance/attributes), PII access policies (/governance/policies),
lineage drawn as SVG (/governance/lineage), the audit log (/governance/audit), the compliance
report as page, CSV and PDF (/governance/compliance), and deletion requests
(/governance/deletions).

Touches no database itself: c360.governance.*, c360.audit and c360.reports do, and each change
is audited by its service with the signed-in user as the actor.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from litestar import Request, get, post
from litestar.datastructures import State
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Response, Template

from c360 import accounts, audit
from c360.errors import InputError
from c360.governance import attributes, deletions, f0, lineage, policies, tracking_plans
from c360.governance import sources as sources_service
from c360.reports import registry
from c360.reports.pdf import render_pdf
from c360.ui.pages.admin import (
    Form,
    admin_page,
    csv_route,
    day_start,
    done,
    field,
    refused,
    values,
    who,
    whole,
)
from c360.ui.pages.common import Link, TableView, csv_response, require, with_query
from c360.ui.pages.reports import report_view, tables_csv

#: Days of tracking-plan violations the page shows.
VIOLATION_DAYS = 7

#: Audit entries per page, and at most in one CSV download.
AUDIT_PAGE = 50
AUDIT_CSV_MAX = 10_000

#: The compliance report's default period, in days up to and including today.
COMPLIANCE_DAYS = 30

#: The JSON Schema a new plan starts from: it checks an event's properties (an identify's or a
#: group's traits), as c360.governance.tracking_plans does.
STARTER_SCHEMA = {"type": "object", "properties": {}, "required": []}

#: The lineage drawing's geometry, in SVG user units.
SVG_COLUMN = 300  # distance between the source, event and attribute columns
SVG_ROW = 44  # distance between two nodes of a column
SVG_NODE_W, SVG_NODE_H = 220, 30
SVG_MARGIN = 10
SVG_LABEL_CHARS = 30  # longer labels are cut with an ellipsis (the table has them whole)

# -- tracking plans ----------------------------------------------------------------------------


@get(
    "/governance/tracking-plans",
    opt={"permission": "governance:read"},
    include_in_schema=False,
    sync_to_thread=True,
)
def plans_page(request: Request[Any, Any, Any], state: State) -> Template:
    """Active plans, violations of the last week, and the chosen plan (`source`, `event`) with
    its versions in the editor."""
    params = request.query_params
    source, event = params.get("source") or "", params.get("event") or ""
    return _plans(request, state, {"source": source, "event": event})


@post(
    "/governance/tracking-plans",
    opt={"permission": "governance:write"},
    include_in_schema=False,
    sync_to_thread=True,
)
def plan_save(request: Request[Any, Any, Any], state: State, data: Form) -> Any:
    """Save a new version of a plan; a schema that is not JSON or not a JSON Schema is shown
    beside the text area, with the text kept as typed."""
    actor = who(request).actor
    form = {key: field(data, key) for key in ("source", "event", "action")}
    text = str(data.get("schema") or "")
    try:
        schema = _schema_of(text)
        tracking_plans.save_plan(
            state.runtime,
            form["source"],
            form["event"],
            schema,
            form["action"],
            actor,
            active=field(data, "active") == "on",
        )
    except InputError as exc:
        context = {**form, "schema_text": text, "schema_error": exc.message}
        return _plans(request, state, context, 400)
    return done(
        "/governance/tracking-plans", "plan_saved", source=form["source"], event=form["event"]
    )


def _plans(
    request: Request[Any, Any, Any],
    state: State,
    chosen: Mapping[str, Any],
    status_code: int = 200,
) -> Template:
    runtime = state.runtime
    source, event = chosen.get("source", ""), chosen.get("event", "")
    versions = _versions(runtime, source, event)
    active = next((plan for plan in versions if plan.active), None)
    schema = active.schema if active else STARTER_SCHEMA
    context = {
        "plans": _plans_table(state),
        "violations": _violations_table(state),
        "source_names": [s.name for s in sources_service.list_sources(runtime)],
        "actions": tracking_plans.ACTIONS,
        "can_write": who(request).can("governance:write"),
        "source": source,
        "event": event,
        "action": chosen.get("action") or (active.action if active else "flag"),
        "schema_text": chosen.get("schema_text") or json.dumps(schema, indent=2),
        "schema_error": chosen.get("schema_error"),
        "versions": versions,
        "versions_table": _versions_table(runtime, source, event, versions),
        "samples": tracking_plans.violation_samples(runtime, source, event) if versions else [],
    }
    title = "Tracking plans"
    return admin_page(
        request, "governance/tracking_plans.html", title, "tracking-plans", context, status_code
    )


def _versions(runtime: Any, source: str, event: str) -> list[tracking_plans.Plan]:
    """The plan's versions, newest first; none for a plan not saved yet."""
    if not (source and event):
        return []
    try:
        return tracking_plans.plan_history(runtime, source, event)
    except sources_service.SourceNotFound:
        return []


def _versions_table(
    runtime: Any, source: str, event: str, versions: list[tracking_plans.Plan] | None = None
) -> TableView:
    found = _versions(runtime, source, event) if versions is None else versions
    return TableView(
        id="plan-versions",
        caption=f"Versions of the plan for {source} / {event}, newest first",
        columns=("Version", "Action", "Active", "Saved", "Saved by", "Schema"),
        rows=[
            [p.version, p.action, p.active, p.created_at, p.created_by, json.dumps(p.schema)]
            for p in found
        ],
        csv_href=with_query("/governance/export/plan-versions", {}, source=source, event=event),
    )


def _schema_of(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InputError(
            "invalid_schema_json",
            f"the schema is not valid JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}",
        ) from None


def _plans_table(state: State) -> TableView:
    plans = tracking_plans.list_plans(state.runtime)
    return TableView(
        id="tracking-plans",
        caption="Active tracking plans",
        columns=("Source and event", "Version", "Action", "Saved", "Saved by"),
        rows=[
            [
                Link(
                    f"{plan.source} / {plan.event}",
                    with_query(
                        "/governance/tracking-plans", {}, source=plan.source, event=plan.event
                    ),
                ),
                plan.version,
                plan.action,
                plan.created_at,
                plan.created_by,
            ]
            for plan in plans
        ],
        csv_href="/governance/export/plans",
        numeric=frozenset({1}),
    )


def _violations_table(state: State) -> TableView:
    until = datetime.now(UTC).date()
    since = until - timedelta(days=VIOLATION_DAYS - 1)
    found = tracking_plans.violations(state.runtime, since, until)
    return TableView(
        id="violations",
        caption=f"Tracking-plan violations, {since} to {until} (UTC)",
        columns=("Source", "Event", "Day", "Violations", "Action", "Last message"),
        rows=[[v.source, v.event, v.day, v.count, v.action, v.last_message] for v in found],
        csv_href="/governance/export/violations",
        numeric=frozenset({3}),
    )


# -- attributes and F0 -------------------------------------------------------------------------


@get(
    "/governance/attributes",
    opt={"permission": "governance:read"},
    include_in_schema=False,
    sync_to_thread=True,
)
def attributes_page(request: Request[Any, Any, Any], state: State) -> Template:
    """Every attribute definition, the form for a new one, and F0: run it, see its runs."""
    return _attributes(request, state)


@post(
    "/governance/attributes",
    opt={"permission": "governance:write"},
    include_in_schema=False,
    sync_to_thread=True,
)
def attribute_create(request: Request[Any, Any, Any], state: State, data: Form) -> Any:
    """Define a new attribute (pending until F0 activates it)."""
    actor = who(request).actor
    try:
        spec = {"name": field(data, "name"), **spec_of_form(data)}
        with state.runtime.pool.connection() as conn:
            attributes.create_definition(conn, actor, spec)
    except InputError as exc:
        return _attributes(request, state, {**refused(exc), "form": _kept(data)}, 400)
    return done("/governance/attributes", "attribute_created")


@get(
    "/governance/attributes/{name:str}",
    opt={"permission": "governance:read"},
    include_in_schema=False,
    sync_to_thread=True,
)
def attribute_page(request: Request[Any, Any, Any], state: State, name: FromPath[str]) -> Template:
    """One definition, with its edit and retire forms."""
    return _attribute(request, state, name)


@post(
    "/governance/attributes/{name:str}",
    opt={"permission": "governance:write"},
    include_in_schema=False,
    sync_to_thread=True,
)
def attribute_save(
    request: Request[Any, Any, Any], state: State, name: FromPath[str], data: Form
) -> Any:
    """Save a new version of a definition (pending until F0 activates it)."""
    actor = who(request).actor
    try:
        changes = spec_of_form(data)
        with state.runtime.pool.connection() as conn:
            attributes.update_definition(conn, actor, name, changes)
    except InputError as exc:
        return _attribute(request, state, name, {**refused(exc), "form": _kept(data)}, 400)
    return done(f"/governance/attributes/{name}", "attribute_saved")


@post(
    "/governance/attributes/{name:str}/retire",
    opt={"permission": "governance:write"},
    include_in_schema=False,
    sync_to_thread=True,
)
def attribute_retire(request: Request[Any, Any, Any], state: State, name: FromPath[str]) -> Any:
    """Retire a definition (kept for the record)."""
    actor = who(request).actor
    try:
        with state.runtime.pool.connection() as conn:
            attributes.retire_definition(conn, actor, name)
    except InputError as exc:
        return _attribute(request, state, name, refused(exc), exc.status_code)
    return done(f"/governance/attributes/{name}", "attribute_retired")


@post(
    "/governance/f0",
    opt={"permission": "governance:write"},
    include_in_schema=False,
    sync_to_thread=True,
)
def f0_sync(request: Request[Any, Any, Any], state: State, data: Form) -> Any:
    """Run F0 now: `backfill` none, all, or the attributes ticked (`backfill_attribute`)."""
    actor = who(request).actor
    choice = field(data, "backfill") or "none"
    backfill: bool | list[str] = {"none": False, "all": True}.get(choice, False)
    try:
        if choice == "chosen":
            backfill = values(data, "backfill_attribute")
            if not backfill:
                raise InputError("no_backfill_attribute", "tick the attributes to back-fill")
        elif choice not in ("none", "all"):
            raise InputError("invalid_backfill", "choose no back-fill, all, or the chosen ones")
        run = f0.sync(state.runtime, actor, backfill, trigger="ui")
    except InputError as exc:
        return _attributes(request, state, refused(exc), exc.status_code)
    return done("/governance/attributes", "f0", run=run.run_id, outcome=run.outcome)


def spec_of_form(form: Mapping[str, Any]) -> dict[str, Any]:
    """The editable fields of an attribute definition from its form (checked again by
    c360.governance.attributes)."""
    events = [name.strip() for name in field(form, "event_names").split(",") if name.strip()]
    return {
        "type": field(form, "type"),
        "source": field(form, "source"),
        "event_names": events,
        "property": field(form, "property") or None,
        "aggregation": field(form, "aggregation") or None,
        "window_days": whole(field(form, "window_days"), "window_days"),
        "trait": field(form, "trait") or None,
        "pii": field(form, "pii") == "on",
        "retention_days": whole(field(form, "retention_days"), "retention_days"),
        "owner": field(form, "owner"),
        "description": field(form, "description"),
    }


def _attributes(
    request: Request[Any, Any, Any],
    state: State,
    extra: Mapping[str, Any] | None = None,
    status_code: int = 200,
) -> Template:
    with state.runtime.pool.connection() as conn:
        defined = attributes.list_definitions(conn)
    params = request.query_params
    context = {
        "table": _attributes_table(state, defined),
        "runs": _runs_table(state),
        "choices": _choices(),
        "form": {"source": "events", "type": "number", "aggregation": "count"},
        "backfillable": [d.name for d in defined if not d.built_in and d.status != "retired"],
        "can_write": who(request).can("governance:write"),
        "f0_run": params.get("run"),
        "f0_outcome": params.get("outcome"),
        **(extra or {}),
    }
    title = "Attributes and F0"
    return admin_page(
        request, "governance/attributes.html", title, "attributes", context, status_code
    )


def _attribute(
    request: Request[Any, Any, Any],
    state: State,
    name: str,
    extra: Mapping[str, Any] | None = None,
    status_code: int = 200,
) -> Template:
    try:
        with state.runtime.pool.connection() as conn:
            found = attributes.get_definition(conn, name)
    except attributes.UnknownAttribute as exc:
        raise NotFoundException(exc.message) from None
    form = {
        **{key: _text(getattr(found, key)) for key in _FORM_FIELDS},
        "event_names": ", ".join(found.event_names),
        "pii": found.pii,
    }
    context = {
        "definition": found,
        "choices": _choices(),
        "form": form,
        "can_write": who(request).can("governance:write") and not found.built_in,
        **(extra or {}),
    }
    title = f"Attribute {found.name}"
    return admin_page(
        request, "governance/attribute.html", title, "attributes", context, status_code
    )


#: The definition fields the attribute forms show as text.
_FORM_FIELDS = (
    "type",
    "source",
    "property",
    "aggregation",
    "window_days",
    "trait",
    "retention_days",
    "owner",
    "description",
)


def _choices() -> dict[str, Any]:
    return {
        "types": attributes.TYPES,
        "aggregations": attributes.AGGREGATIONS,
        "sources": attributes.SOURCES,
    }


def _kept(form: Mapping[str, Any]) -> dict[str, Any]:
    kept: dict[str, Any] = {key: field(form, key) for key in form if key != "_csrf"}
    kept["pii"] = field(form, "pii") == "on"
    return kept


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _attributes_table(
    state: State, defined: Sequence[attributes.Definition] | None = None
) -> TableView:
    if defined is None:
        with state.runtime.pool.connection() as conn:
            defined = attributes.list_definitions(conn)
    return TableView(
        id="attributes",
        caption="Attribute definitions",
        columns=("Name", "Type", "Computed as", "PII", "Retention (days)", "Owner", "Status"),
        rows=[
            [
                Link(d.name, f"/governance/attributes/{d.name}"),
                d.type,
                computation(d),
                d.pii,
                d.retention_days,
                d.owner,
                f"{d.status} (version {d.version})",
            ]
            for d in defined
        ],
        csv_href="/governance/export/attributes",
    )


def computation(d: attributes.Definition) -> str:
    """How an attribute is computed, in a few words."""
    if d.source == "trait":
        return f"trait {d.trait}"
    if d.source != "events":
        return "built in"
    events = ", ".join(d.event_names) or "every event"
    what = f"{d.aggregation}({d.property})" if d.property else f"{d.aggregation}"
    window = f", last {d.window_days} days" if d.window_days else ""
    return f"{what} of {events}{window}"


def _runs_table(state: State) -> TableView:
    with state.runtime.pool.connection() as conn:
        runs = f0.runs(conn, 20)
    return TableView(
        id="f0-runs",
        caption="F0 runs, newest first",
        columns=("Run", "Started", "Finished", "Trigger", "By", "Outcome", "Steps", "Error"),
        rows=[
            [
                run.run_id,
                run.started_at,
                run.finished_at,
                run.trigger,
                run.actor,
                run.outcome,
                "; ".join(step_summary(step) for step in run.steps),
                run.error,
            ]
            for run in runs
        ],
        csv_href="/governance/export/f0-runs",
    )


def step_summary(step: Mapping[str, Any]) -> str:
    """One F0 step as text: its name and what it did (`migrations: applied 0007`)."""
    parts = []
    for key, value in step.items():
        if key == "step":
            continue
        if isinstance(value, list | tuple):
            value = ", ".join(str(item) for item in value) or "none"
        parts.append(f"{key} {value}")
    return f"{step.get('step', 'step')}: {', '.join(parts)}"


# -- access policies ---------------------------------------------------------------------------


@get(
    "/governance/policies",
    opt={"permission": "governance:write"},
    include_in_schema=False,
    sync_to_thread=True,
)
def policies_page(request: Request[Any, Any, Any], state: State) -> Template:
    """Which role may see which PII attribute: a row of checkboxes per role."""
    return _policies(request, state)


@post(
    "/governance/policies/{role:str}",
    opt={"permission": "governance:write"},
    include_in_schema=False,
    sync_to_thread=True,
)
def policies_save(
    request: Request[Any, Any, Any], state: State, role: FromPath[str], data: Form
) -> Any:
    """Replace one role's policies with the boxes ticked in its row."""
    actor = who(request).actor
    allowed = set(values(data, "allow"))
    try:
        with state.runtime.pool.connection() as conn:
            names = [policies.ALL_PII, *(d.name for d in attributes.pii_attributes(conn))]
            rules = {name: name in allowed for name in names}
            policies.set_policies(conn, actor, role, rules)
    except InputError as exc:
        return _policies(request, state, refused(exc), exc.status_code)
    return done("/governance/policies", "policies_saved", role=role)


@dataclass(frozen=True)
class PolicyRow:
    """One role's row of the policy table: its boxes as (attribute, ticked)."""

    role: str
    has_pii_read: bool
    boxes: list[tuple[str, bool]]


def policy_rows(conn: Any) -> tuple[list[str], list[PolicyRow]]:
    """The policy table: the PII attribute columns and a row per role, a box ticked where the
    role's policy allows the attribute (explicitly, through `*pii*`, or by default)."""
    names = [policies.ALL_PII, *(d.name for d in attributes.pii_attributes(conn))]
    rows = []
    for role in accounts.list_roles(conn):
        rules = {
            row["attribute"]: row["allowed"] for row in policies.list_policies(conn, role.name)
        }
        everything = rules.get(policies.ALL_PII, role.name in policies.SEES_ALL_BY_DEFAULT)
        boxes = [(name, bool(rules.get(name, everything))) for name in names]
        rows.append(PolicyRow(role.name, "pii:read" in role.permissions, boxes))
    return names, rows


def _policies(
    request: Request[Any, Any, Any],
    state: State,
    extra: Mapping[str, Any] | None = None,
    status_code: int = 200,
) -> Template:
    with state.runtime.pool.connection() as conn:
        names, rows = policy_rows(conn)
    context = {
        "names": names,
        "rows": rows,
        "all_pii": policies.ALL_PII,
        "table": _policies_table(state),
        **(extra or {}),
    }
    title = "Access policies"
    return admin_page(request, "governance/policies.html", title, "policies", context, status_code)


def _policies_table(state: State) -> TableView:
    with state.runtime.pool.connection() as conn:
        found = policies.list_policies(conn)
    return TableView(
        id="policies",
        caption="Policy rules as stored",
        columns=("Role", "Attribute", "Allowed", "Changed by", "Changed"),
        rows=[
            [r["role"], r["attribute"], r["allowed"], r["updated_by"], r["updated_at"]]
            for r in found
        ],
        csv_href="/governance/export/policies",
    )


# -- lineage -----------------------------------------------------------------------------------


@get(
    "/governance/lineage",
    opt={"permission": "governance:read"},
    include_in_schema=False,
    sync_to_thread=True,
)
def lineage_page(request: Request[Any, Any, Any], state: State) -> Template:
    """attribute <- events <- sources, drawn as SVG, with the same graph as tables."""
    drawing, edges, nodes = _lineage_tables(state)
    context = {"drawing": drawing, "edges": edges, "nodes": nodes}
    return admin_page(request, "governance/lineage.html", "Lineage", "lineage", context)


@dataclass(frozen=True)
class SvgNode:
    """A node's box and label in the drawing."""

    id: str
    kind: str
    label: str
    title: str
    x: int
    y: int


@dataclass(frozen=True)
class SvgEdge:
    """A line from the right side of one box to the left side of the next column's box."""

    x1: int
    y1: int
    x2: int
    y2: int
    title: str


@dataclass(frozen=True)
class Drawing:
    """The laid-out lineage graph."""

    width: int
    height: int
    nodes: list[SvgNode]
    edges: list[SvgEdge]
    node_width: int = SVG_NODE_W
    node_height: int = SVG_NODE_H


def layout(graph: Mapping[str, Sequence[Mapping[str, Any]]]) -> Drawing:
    """Place each node of c360.governance.lineage.graph at its column (x) and row (y)."""
    placed: dict[str, SvgNode] = {}
    for node in graph["nodes"]:
        label = str(node["label"])
        short = label if len(label) <= SVG_LABEL_CHARS else label[: SVG_LABEL_CHARS - 1] + "…"
        placed[node["id"]] = SvgNode(
            id=f"node-{len(placed)}",
            kind=node["kind"],
            label=f"{short} ({node['count']:,})",
            title=f"{node['kind']} {label}: {node['count']:,} events",
            x=SVG_MARGIN + int(node["x"]) * SVG_COLUMN,
            y=SVG_MARGIN + int(node["y"]) * SVG_ROW,
        )
    edges = [
        SvgEdge(
            x1=placed[edge["from"]].x + SVG_NODE_W,
            y1=placed[edge["from"]].y + SVG_NODE_H // 2,
            x2=placed[edge["to"]].x,
            y2=placed[edge["to"]].y + SVG_NODE_H // 2,
            title=f"{edge['from']} → {edge['to']}: {edge['count']:,}",
        )
        for edge in graph["edges"]
        if edge["from"] in placed and edge["to"] in placed
    ]
    rows = max((int(node["y"]) for node in graph["nodes"]), default=0) + 1
    width = 2 * SVG_MARGIN + 2 * SVG_COLUMN + SVG_NODE_W
    height = 2 * SVG_MARGIN + (rows - 1) * SVG_ROW + SVG_NODE_H
    return Drawing(width, height, list(placed.values()), edges)


def _lineage_tables(state: State) -> tuple[Drawing, TableView, TableView]:
    graph = lineage.graph(state.runtime)
    labels = {node["id"]: f"{node['kind']} {node['label']}" for node in graph["nodes"]}
    edges = TableView(
        id="lineage",
        caption="Lineage: what flows where",
        columns=("From", "To", "Events"),
        rows=[
            [labels.get(e["from"], e["from"]), labels.get(e["to"], e["to"]), e["count"]]
            for e in graph["edges"]
        ],
        csv_href="/governance/export/lineage",
        numeric=frozenset({2}),
    )
    nodes = TableView(
        id="lineage-nodes",
        caption="Sources, events and attributes",
        columns=("Name", "Kind", "Events", "PII"),
        rows=[[n["label"], n["kind"], n["count"], n.get("pii")] for n in graph["nodes"]],
        csv_href="/governance/export/lineage-nodes",
        numeric=frozenset({2}),
    )
    return layout(graph), edges, nodes


# -- audit log ---------------------------------------------------------------------------------


@get(
    "/governance/audit",
    opt={"permission": "audit:read"},
    include_in_schema=False,
    sync_to_thread=True,
)
def audit_page(request: Request[Any, Any, Any], state: State) -> Template:
    """The audit log newest first, filtered by period, action and actor, a page at a time."""
    filters = AuditFilters.of(request.query_params)
    number = whole(request.query_params.get("page") or "", "page", 1) or 1
    if number < 1:
        raise InputError("invalid_page", "page is a whole number from 1")
    with state.runtime.pool.connection() as conn:
        found = filters.entries(conn, AUDIT_PAGE + 1, (number - 1) * AUDIT_PAGE)
    params = request.query_params
    context = {
        "filters": filters,
        "table": _audit_table(found[:AUDIT_PAGE], with_query("/governance/audit.csv", params)),
        "previous_href": with_query("/governance/audit", params, page=number - 1)
        if number > 1
        else None,
        "next_href": with_query("/governance/audit", params, page=number + 1)
        if len(found) > AUDIT_PAGE
        else None,
    }
    return admin_page(request, "governance/audit.html", "Audit log", "audit", context)


@get(
    "/governance/audit.csv",
    opt={"permission": "audit:read"},  # exports:create checked below, as in csv_route
    include_in_schema=False,
    sync_to_thread=True,
)
def audit_csv(request: Request[Any, Any, Any], state: State) -> Response:
    """The filtered audit log as CSV (the newest entries, at most AUDIT_CSV_MAX)."""
    require(request, "exports:create")
    filters = AuditFilters.of(request.query_params)
    with state.runtime.pool.connection() as conn:
        found = filters.entries(conn, AUDIT_CSV_MAX, 0)
    view = _audit_table(found, None)
    return csv_response("audit.csv", view.columns, view.rows)


@dataclass(frozen=True)
class AuditFilters:
    """The audit page's filters as typed: dates (UTC days, both included), an action prefix
    and an actor."""

    since: str = ""
    until: str = ""
    action: str = ""
    actor: str = ""

    @classmethod
    def of(cls, params: Mapping[str, Any]) -> AuditFilters:
        """The filters from a query string."""
        return cls(
            *((params.get(key) or "").strip() for key in ("since", "until", "action", "actor"))
        )

    def entries(self, conn: Any, limit: int, offset: int) -> list[audit.AuditEntry]:
        """The entries these filters select; an InputError for a bad date or period."""
        since = day_start(self.since, "since")
        until = day_start(self.until, "until")
        if until is not None:
            until += timedelta(days=1)  # the last day is included
        if since and until and since >= until:
            raise InputError("invalid_period", "the first day must not be after the last")
        return audit.entries(
            conn,
            since=since,
            until=until,
            action_prefix=self.action or None,
            actor=self.actor or None,
            limit=limit,
            offset=offset,
        )


def _audit_table(found: Sequence[audit.AuditEntry], csv_href: str | None) -> TableView:
    return TableView(
        id="audit",
        caption="Audit log, newest first",
        columns=("Entry", "At", "Actor", "Action", "Target", "Before", "After", "Detail"),
        rows=[_audit_row(e) for e in found],
        csv_href=csv_href,
    )


def _audit_row(e: audit.AuditEntry) -> list[Any]:
    changes = [_json_text(e.before), _json_text(e.after), _json_text(e.detail)]
    return [e.audit_id, e.at, e.actor, e.action, e.target, *changes]


def _json_text(value: Any) -> str | None:
    if value in (None, {}, []):
        return None
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


# -- compliance report -------------------------------------------------------------------------


@get(
    "/governance/compliance",
    opt={"permission": "audit:read"},
    include_in_schema=False,
    sync_to_thread=True,
)
def compliance_page(request: Request[Any, Any, Any], state: State) -> Template:
    """The compliance report for a period (`since`, `until`: days, both included)."""
    params = _compliance_params(request)
    report = registry.build("compliance", state.runtime, params, who(request))
    last_day = date.fromisoformat(params["until"]) - timedelta(days=1)
    query = {"since": params["since"], "until": last_day.isoformat()}
    context = {
        "report": report_view(report, "compliance"),
        "since": params["since"],
        "until": query["until"],
        "csv_href": with_query("/governance/compliance/csv", query),
        "pdf_href": with_query("/governance/compliance/pdf", query),
        "can_export": who(request).can("exports:create"),
    }
    return admin_page(
        request, "governance/compliance.html", "Compliance report", "compliance", context
    )


@get(
    "/governance/compliance/{form:str}",
    opt={"permission": "audit:read"},  # exports:create checked below, as in csv_route
    include_in_schema=False,
    sync_to_thread=True,
)
def compliance_download(request: Request[Any, Any, Any], state: State, form: FromPath[str]) -> Any:
    """The compliance report as CSV (`csv`) or PDF (`pdf`)."""
    who_ = require(request, "exports:create")
    if form not in ("csv", "pdf"):
        raise NotFoundException("the compliance report downloads as csv or pdf")
    params = _compliance_params(request)
    report = registry.build("compliance", state.runtime, params, who_)
    name = f"c360-compliance-{params['since']}.{form}"
    content = tables_csv(report) if form == "csv" else render_pdf(report)
    media = "text/csv" if form == "csv" else "application/pdf"  # charset added once
    return Response(
        content=content,
        media_type=media,
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store",
        },
    )


def _compliance_params(request: Request[Any, Any, Any]) -> dict[str, str]:
    """since and until for the compliance builder (its until is excluded; the page's last
    day is included)."""
    params = request.query_params
    last = day_start((params.get("until") or "").strip(), "until")
    first = day_start((params.get("since") or "").strip(), "since")
    until = (last.date() if last else datetime.now(UTC).date()) + timedelta(days=1)
    since = first.date() if first else until - timedelta(days=COMPLIANCE_DAYS)
    return {"since": since.isoformat(), "until": until.isoformat()}


# -- deletion requests -------------------------------------------------------------------------


@get(
    "/governance/deletions",
    opt={"permission": "governance:write"},
    include_in_schema=False,
    sync_to_thread=True,
)
def deletions_page(request: Request[Any, Any, Any], state: State) -> Template:
    """Deletion requests with their status, and the form for a new one."""
    return _deletions(request, state)


@post(
    "/governance/deletions",
    opt={"permission": "governance:write"},
    include_in_schema=False,
    sync_to_thread=True,
)
def deletion_create(request: Request[Any, Any, Any], state: State, data: Form) -> Any:
    """Record a deletion request, and run it at once when `run` is ticked."""
    actor = who(request).actor
    try:
        with state.runtime.pool.connection() as conn:
            made = deletions.request_deletion(conn, actor, field(data, "reference"))
    except InputError as exc:
        return _deletions(request, state, {**refused(exc), "reference": field(data, "reference")})
    if field(data, "run") == "on":
        deletions.run_deletion(state.runtime, made["request_id"], actor)
    return done("/governance/deletions", "deletion_recorded")


@post(
    "/governance/deletions/{request_id:int}/run",
    opt={"permission": "governance:write"},
    include_in_schema=False,
    sync_to_thread=True,
)
def deletion_run(request: Request[Any, Any, Any], state: State, request_id: FromPath[int]) -> Any:
    """Run (or retry) a recorded request."""
    actor = who(request).actor
    try:
        deletions.run_deletion(state.runtime, request_id, actor)
    except InputError as exc:
        return _deletions(request, state, refused(exc), exc.status_code)
    return done("/governance/deletions", "deletion_run")


def _deletions(
    request: Request[Any, Any, Any],
    state: State,
    extra: Mapping[str, Any] | None = None,
    status_code: int | None = None,
) -> Template:
    with state.runtime.pool.connection() as conn:
        found = deletions.deletion_requests(conn)
    context = {
        "table": _deletions_table(state, found),
        "runnable": [r["request_id"] for r in found if r.get("status") in ("pending", "failed")],
        "reference": "",
        **(extra or {}),
    }
    status = status_code or (400 if context.get("error") else 200)
    return admin_page(
        request, "governance/deletions.html", "Deletion requests", "deletions", context, status
    )


def _deletions_table(state: State, found: Sequence[Mapping[str, Any]] | None = None) -> TableView:
    if found is None:
        with state.runtime.pool.connection() as conn:
            found = deletions.deletion_requests(conn)
    return TableView(
        id="deletions",
        caption="Deletion requests, newest first",
        columns=("Request", "Reference", "Requested by", "Requested", "Status", "Finished"),
        rows=[
            [
                r["request_id"],
                masked_reference(r.get("reference")),
                r.get("requested_by"),
                r.get("requested_at"),
                r.get("status"),
                r.get("finished_at"),
            ]
            for r in found
        ],
        csv_href="/governance/export/deletions",
    )


def masked_reference(reference: Any) -> Any:
    """A deletion request's reference, masked: it names a person who asked to be forgotten,
    and whoever reads the list needs its status, not the name again (finished requests keep
    it redacted already; the same rule, c360.governance.deletions.redacted)."""
    return deletions.redacted(reference)


def _plan_versions(request: Request[Any, Any, Any], state: State) -> TableView:
    params = request.query_params
    return _versions_table(state.runtime, params.get("source") or "", params.get("event") or "")


HANDLERS = [
    plans_page,
    plan_save,
    csv_route("/governance/export/plans", "governance:read", lambda _r, s: _plans_table(s)),
    csv_route(
        "/governance/export/violations", "governance:read", lambda _r, s: _violations_table(s)
    ),
    csv_route(
        "/governance/export/attributes", "governance:read", lambda _r, s: _attributes_table(s)
    ),
    csv_route("/governance/export/f0-runs", "governance:read", lambda _r, s: _runs_table(s)),
    csv_route("/governance/export/lineage", "governance:read", lambda _r, s: _lineage_tables(s)[1]),
    csv_route(
        "/governance/export/lineage-nodes", "governance:read", lambda _r, s: _lineage_tables(s)[2]
    ),
    csv_route("/governance/export/plan-versions", "governance:read", _plan_versions),
    csv_route(
        "/governance/export/deletions", "governance:write", lambda _r, s: _deletions_table(s)
    ),
    csv_route("/governance/export/policies", "governance:write", lambda _r, s: _policies_table(s)),
    attributes_page,
    attribute_create,
    attribute_page,
    attribute_save,
    attribute_retire,
    f0_sync,
    policies_page,
    policies_save,
    lineage_page,
    audit_page,
    audit_csv,
    compliance_page,
    compliance_download,
    deletions_page,
    deletion_create,
    deletion_run,
]
