"""Report pages: the saved reports I may see (/reports: my own and those shared with me or my
role), one report rendered from its Report model (/reports/{id}) with its PDF and CSV, and
the forms that save a report from a page's kind and filters, schedule it for e-mail, share it
with roles or users, and delete it; each schedule lists its runs.

Touches no database itself: c360.reports.saved, .schedules, .registry and c360.sharing do,
each building and checking as the signed-in reader.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

from litestar import Request, get, post
from litestar.datastructures import State
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Response, Template

from c360 import accounts, sharing
from c360.errors import InputError
from c360.reports import model, registry, saved, schedules
from c360.reports.csv_export import to_csv
from c360.reports.pdf import render_pdf
from c360.ui.pages.admin import Form, admin_page, done, field, refused, who, whole
from c360.ui.pages.common import ChartView, Link, TableView, csv_response, require

#: Weekday names for the schedule form (0 is Monday, as c360.reports.schedules counts).
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

#: Runs shown under each schedule, and at most in its CSV.
RUNS_SHOWN = 10
RUNS_CSV_MAX = 1000


@dataclass(frozen=True)
class SectionView:
    """One section of a report as a page draws it: a paragraph or heading (`text`), a table
    (`table`), or a chart with the same numbers as a table (`chart` and `table`)."""

    kind: str
    text: str = ""
    heading: bool = False
    table: TableView | None = None
    chart: ChartView | None = None


@dataclass(frozen=True)
class ReportView:
    """A Report (c360.reports.model) ready for the `reports/_report.html` partial."""

    id: str
    title: str
    subtitle: str
    generated_at: datetime
    sections: list[SectionView]


def report_view(report: model.Report, id_prefix: str) -> ReportView:
    """A report's sections as the page's tables and charts (ids start with `id_prefix`)."""
    views = []
    for number, section in enumerate(report.sections, start=1):
        section_id = f"{id_prefix}-{number}"
        if isinstance(section, model.Text):
            views.append(SectionView("text", text=section.text, heading=section.heading))
        elif isinstance(section, model.Table):
            views.append(SectionView("table", table=_table(section, section_id)))
        else:
            views.append(_chart(section, section_id))
    return ReportView(id_prefix, report.title, report.subtitle, report.generated_at, views)


def tables_csv(report: model.Report) -> bytes:
    """Every table of a report in one CSV: each under a line with its caption, a blank line
    between them (c360.reports.csv_export.report_csv keeps only the first)."""
    parts = []
    for number, table in enumerate(report.tables()):
        caption = to_csv([table.caption or f"Table {number + 1}"], [], bom=number == 0)
        parts.append(caption + to_csv(table.columns, table.rows) + b"\r\n")
    return b"".join(parts) or to_csv(["report"], [[report.title]], bom=True)


# -- the list and saving -----------------------------------------------------------------------


@get("/reports", opt={"permission": "reports:read"}, include_in_schema=False, sync_to_thread=True)
def reports_page(request: Request[Any, Any, Any], state: State) -> Template:
    """The reports I may see, and the save form: `kind` and `params` (a page's query string)
    in the address fill it, so a page links here to save itself."""
    params = request.query_params
    form = {
        "name": params.get("name") or "",
        "kind": params.get("kind") or "",
        "params": params.get("params") or "",
    }
    return _list(request, state, {"form": form})


@post("/reports", opt={"permission": "reports:write"}, include_in_schema=False, sync_to_thread=True)
def report_save(request: Request[Any, Any, Any], state: State, data: Form) -> Any:
    """Save a report of a kind with its parameters (the query string of the page it shows)."""
    principal = who(request)
    form = {key: field(data, key) for key in ("name", "kind", "params")}
    try:
        with state.runtime.pool.connection() as conn:
            made = saved.save_report(
                conn, principal, form["name"], form["kind"], params_of(form["params"])
            )
    except InputError as exc:
        return _list(request, state, {**refused(exc), "form": form}, 400)
    return done(f"/reports/{made.report_id}", "report_saved")


@get(
    "/reports/export/list",
    opt={"permission": "exports:create"},
    include_in_schema=False,
    sync_to_thread=True,
)
def reports_csv(request: Request[Any, Any, Any], state: State) -> Response:
    """The list of reports I may see, as CSV."""
    principal = require(request, "reports:read")
    with state.runtime.pool.connection() as conn:
        view = _reports_table(saved.list_reports(conn, principal))
    return csv_response("reports.csv", view.columns, view.rows)


def params_of(text: str) -> dict[str, Any]:
    """A page's query string (`date_from=2026-01-01&source=web`, a leading `?` allowed) as a
    report's parameters; a repeated name becomes a list."""
    out: dict[str, Any] = {}
    for key, value in parse_qsl(text.strip().removeprefix("?"), keep_blank_values=False):
        if key in out:
            out[key] = [*(out[key] if isinstance(out[key], list) else [out[key]]), value]
        else:
            out[key] = value
    return out


def _list(
    request: Request[Any, Any, Any],
    state: State,
    extra: Mapping[str, Any],
    status_code: int = 200,
) -> Template:
    principal = who(request)
    with state.runtime.pool.connection() as conn:
        found = saved.list_reports(conn, principal)
    context = {
        "table": _reports_table(found),
        "kinds": registry.kinds(),
        "can_write": principal.can("reports:write"),
        "sections": [],  # reports are not part of the administration area
        **extra,
    }
    return admin_page(request, "reports/list.html", "Reports", "reports", context, status_code)


def _reports_table(found: list[saved.SavedReport]) -> TableView:
    return TableView(
        id="reports",
        caption="Saved reports you can see, newest first",
        columns=("Report", "Kind", "Parameters", "Saved"),
        rows=[
            [Link(r.name, f"/reports/{r.report_id}"), r.kind, _params_text(r.params), r.created_at]
            for r in found
        ],
        csv_href="/reports/export/list",
    )


def _params_text(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{key}={value}" for key, value in sorted(params.items())) or "—"


# -- one report --------------------------------------------------------------------------------


@get(
    "/reports/{report_id:int}",
    opt={"permission": "reports:read"},
    include_in_schema=False,
    sync_to_thread=True,
)
def report_page(
    request: Request[Any, Any, Any], state: State, report_id: FromPath[int]
) -> Template:
    """The report built now for me, its schedules with their runs, and its shares."""
    return _report(request, state, report_id)


@get(
    "/reports/{report_id:int}/download/{form:str}",
    opt={"permission": "exports:create"},
    include_in_schema=False,
    sync_to_thread=True,
)
def report_download(
    request: Request[Any, Any, Any], state: State, report_id: FromPath[int], form: FromPath[str]
) -> Response:
    """The report as `pdf` or `csv`, built for me."""
    principal = require(request, "reports:read")
    if form not in ("pdf", "csv"):
        raise NotFoundException("a report downloads as pdf or csv")
    with state.runtime.pool.connection() as conn:
        found = saved.get_report(conn, principal, report_id)
    report = saved.build_saved(state.runtime, found, principal)
    content = render_pdf(report) if form == "pdf" else tables_csv(report)
    media = "application/pdf" if form == "pdf" else "text/csv"  # charset added once
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M")
    return Response(
        content=content,
        media_type=media,
        headers={
            "Content-Disposition": f'attachment; filename="c360-report-{report_id}-{stamp}.{form}"',
            "Cache-Control": "no-store",
        },
    )


@post(
    "/reports/{report_id:int}/delete",
    opt={"permission": "reports:write"},
    include_in_schema=False,
    sync_to_thread=True,
)
def report_delete(request: Request[Any, Any, Any], state: State, report_id: FromPath[int]) -> Any:
    """Delete a report (its owner or an admin) with its schedules and shares."""
    principal = who(request)
    try:
        with state.runtime.pool.connection() as conn:
            saved.delete_report(conn, principal, report_id)
    except InputError as exc:
        return _report(request, state, report_id, refused(exc), exc.status_code)
    return done("/reports", "report_deleted")


@post(
    "/reports/{report_id:int}/schedules",
    opt={"permission": "reports:write"},
    include_in_schema=False,
    sync_to_thread=True,
)
def schedule_create(
    request: Request[Any, Any, Any], state: State, report_id: FromPath[int], data: Form
) -> Any:
    """Schedule the report: daily, weekly (a weekday) or monthly (a day), at an hour (UTC), to
    recipients (one per line or separated by commas)."""
    principal = who(request)
    try:
        recipients = [a.strip() for a in field(data, "recipients").replace("\n", ",").split(",")]
        with state.runtime.pool.connection() as conn:
            schedules.create_schedule(
                conn,
                principal,
                report_id,
                field(data, "every"),
                whole(field(data, "at_hour"), "at_hour"),
                [address for address in recipients if address],
                weekday=whole(field(data, "weekday"), "weekday", 0),
                month_day=whole(field(data, "month_day"), "month_day", 1),
            )
    except InputError as exc:
        form = {key: field(data, key) for key in data if key != "_csrf"}
        return _report(request, state, report_id, {**refused(exc), "schedule_form": form}, 400)
    return done(f"/reports/{report_id}", "schedule_created")


@post(
    "/reports/schedules/{schedule_id:int}/delete",
    opt={"permission": "reports:write"},
    include_in_schema=False,
    sync_to_thread=True,
)
def schedule_delete(
    request: Request[Any, Any, Any], state: State, schedule_id: FromPath[int]
) -> Any:
    """Stop a schedule (its creator, the report's owner or an admin)."""
    with state.runtime.pool.connection() as conn:
        gone = schedules.delete_schedule(conn, who(request), schedule_id)
    return done(f"/reports/{gone.report_id}", "schedule_deleted")


@post(
    "/reports/{report_id:int}/shares",
    opt={"permission": "reports:write"},
    include_in_schema=False,
    sync_to_thread=True,
)
def report_share(
    request: Request[Any, Any, Any], state: State, report_id: FromPath[int], data: Form
) -> Any:
    """Share the report with a role, or with one user by name (its owner or an admin)."""
    principal = who(request)
    role, user_name = field(data, "share_role") or None, field(data, "share_user")
    try:
        with state.runtime.pool.connection() as conn:
            saved.require_owner(principal, saved.get_report(conn, principal, report_id))
            user_id = accounts.get_user(conn, user_name).user_id if user_name else None
            sharing.share(conn, principal.actor, "report", report_id, role=role, user_id=user_id)
    except InputError as exc:
        return _report(request, state, report_id, refused(exc), exc.status_code)
    return done(f"/reports/{report_id}", "shared")


@post(
    "/reports/{report_id:int}/shares/{share_id:int}/delete",
    opt={"permission": "reports:write"},
    include_in_schema=False,
    sync_to_thread=True,
)
def report_unshare(
    request: Request[Any, Any, Any],
    state: State,
    report_id: FromPath[int],
    share_id: FromPath[int],
) -> Any:
    """Take a share back (the report's owner or an admin)."""
    principal = who(request)
    try:
        with state.runtime.pool.connection() as conn:
            saved.require_owner(principal, saved.get_report(conn, principal, report_id))
            sharing.unshare(conn, principal.actor, "report", report_id, share_id)
    except InputError as exc:
        return _report(request, state, report_id, refused(exc), exc.status_code)
    return done(f"/reports/{report_id}", "unshared")


@get(
    "/reports/schedules/{schedule_id:int}/runs",
    opt={"permission": "exports:create"},
    include_in_schema=False,
    sync_to_thread=True,
)
def schedule_runs_csv(
    request: Request[Any, Any, Any], state: State, schedule_id: FromPath[int]
) -> Response:
    """A schedule's runs (the latest RUNS_CSV_MAX) as CSV."""
    principal = require(request, "reports:read")
    with state.runtime.pool.connection() as conn:
        found = schedules.runs(conn, principal, schedule_id, RUNS_CSV_MAX)
    view = _runs_table(schedule_id, found)
    return csv_response(f"schedule-{schedule_id}-runs.csv", view.columns, view.rows)


@dataclass(frozen=True)
class ScheduleView:
    """A schedule and its latest runs, for the report page."""

    schedule: schedules.Schedule
    when: str
    runs: TableView


def _report(
    request: Request[Any, Any, Any],
    state: State,
    report_id: int,
    extra: Mapping[str, Any] | None = None,
    status_code: int = 200,
) -> Template:
    principal = who(request)
    with state.runtime.pool.connection() as conn:
        found = saved.get_report(conn, principal, report_id)
        timed = schedules.list_schedules(conn, principal, report_id)
        shared = sharing.shares_of(conn, "report", report_id)
        names = {user.user_id: user.name for user in accounts.list_users(conn)}
        roles = [role.name for role in accounts.list_roles(conn)]
        timed_views = [_schedule_view(conn, principal, s) for s in timed]
    if not principal.can("exports:create"):
        for view in timed_views:
            view.runs.csv_href = None
    try:
        built: ReportView | None = report_view(
            saved.build_saved(state.runtime, found, principal), f"report-{report_id}"
        )
        build_error = None
    except InputError as exc:  # the report cannot be built for me (a permission, a filter)
        built, build_error = None, exc.message
    owner = _is_owner(principal, found)
    context = {
        "saved": found,
        "report": built,
        "build_error": build_error,
        "owner_name": names.get(found.owner, f"user #{found.owner}"),
        "params_text": _params_text(found.params),
        "schedules": timed_views,
        "shares": [(s, names.get(s.user_id or -1)) for s in shared],
        "roles": roles,
        "weekdays": WEEKDAYS,
        "every": schedules.EVERY,
        "can_write": principal.can("reports:write"),
        "can_manage": owner and principal.can("reports:write"),
        "can_export": principal.can("exports:create"),
        "sections": [],
        "schedule_form": {"every": "weekly", "at_hour": "7", "weekday": "0", "month_day": "1"},
        **(extra or {}),
    }
    return admin_page(request, "reports/report.html", found.name, "reports", context, status_code)


def _is_owner(principal: Any, found: saved.SavedReport) -> bool:
    try:
        saved.require_owner(principal, found)
    except InputError:
        return False
    return True


def _schedule_view(conn: Any, principal: Any, schedule: schedules.Schedule) -> ScheduleView:
    runs = schedules.runs(conn, principal, schedule.schedule_id, RUNS_SHOWN)
    table = _runs_table(schedule.schedule_id, runs)
    return ScheduleView(schedule, _when_text(schedule), table)


def _runs_table(schedule_id: int, runs: list[schedules.Run]) -> TableView:
    return TableView(
        id=f"schedule-{schedule_id}-runs",
        caption=f"Latest runs of schedule {schedule_id}",
        columns=("Run", "Started", "Finished", "Outcome", "Recipients", "PDF bytes", "Error"),
        rows=[
            [
                r.run_id,
                r.started_at,
                r.finished_at,
                r.outcome,
                ", ".join(r.recipients),
                r.pdf_bytes,
                r.error,
            ]
            for r in runs
        ],
        csv_href=f"/reports/schedules/{schedule_id}/runs",
        numeric=frozenset({5}),
    )


def _when_text(s: schedules.Schedule) -> str:
    at = f"at {s.at_hour:02d}:00 UTC"
    if s.every == "weekly":
        return f"every {WEEKDAYS[s.weekday]} {at}"
    if s.every == "monthly":
        return f"on day {s.month_day} of every month {at}"
    return f"every day {at}"


def _table(section: model.Table, section_id: str) -> TableView:
    numeric = {
        index
        for index in range(len(section.columns))
        if section.rows and all(_is_number(row[index]) for row in section.rows)
    }
    return TableView(
        id=section_id,
        caption=section.caption or "Table",
        columns=tuple(str(column) for column in section.columns),
        rows=section.rows,
        numeric=frozenset(numeric),
    )


def _chart(section: model.Chart, section_id: str) -> SectionView:
    chart = ChartView(
        id=f"{section_id}-chart",
        caption=section.caption or "Chart",
        kind=section.kind,
        labels=section.labels,
        series=section.series,
    )
    table = TableView(
        id=section_id,
        caption=section.caption or "Chart",
        columns=("", *section.series),
        rows=[
            [label, *(values[index] for values in section.series.values())]
            for index, label in enumerate(section.labels)
        ],
        numeric=frozenset(range(1, len(section.series) + 1)),
    )
    return SectionView("chart", chart=chart, table=table)


def _is_number(value: Any) -> bool:
    return isinstance(value, Decimal | int | float) and not isinstance(value, bool)


HANDLERS = [
    reports_page,
    report_save,
    reports_csv,
    report_page,
    report_download,
    report_delete,
    schedule_create,
    schedule_delete,
    report_share,
    report_unshare,
    schedule_runs_csv,
]
