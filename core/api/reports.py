"""The JSON API of reports: saved reports (list, save, delete, share), their PDF and CSV
exports, their e-mail schedules and runs, and the lifetime-value report (`/v1/reports/ltv`).

Every change goes through c360.reports.saved, c360.reports.schedules or c360.sharing, which
write the audit entry in the same transaction; exports are recorded there too. A report is
built for whoever asks, through their own permissions, so a shared report never shows a
reader more than their role may see.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, Router, delete, get, post
from litestar.datastructures import State

from c360 import audit, sharing
from c360.access import Principal
from c360.analytics import ltv
from c360.api.auth import principal
from c360.errors import InputError, Unauthorized
from c360.events.model import encode
from c360.events.text import clean_text
from c360.reports import registry, saved, schedules
from c360.reports.csv_export import report_csv
from c360.reports.mailer import attachment_name
from c360.reports.model import Report
from c360.reports.pdf import render_pdf

_READ = {"permission": "reports:read"}
_WRITE = {"permission": "reports:write"}
_EXPORT = {"permission": "exports:create"}


@get("/v1/reports", sync_to_thread=True, opt=_READ)
def read_reports(request: Request[Any, Any, Any], state: State) -> Response[bytes]:
    """The saved reports I may see (mine, shared with my role or me), and the kinds I can
    save."""
    who = _who(request)
    with state.runtime.pool.connection() as conn:
        found = saved.list_reports(conn, who)
    return _json({"reports": [r.as_dict() for r in found], "kinds": registry.kinds()})


@post("/v1/reports", sync_to_thread=True, status_code=201, opt=_WRITE)
def create_report(
    request: Request[Any, Any, Any], state: State, data: dict[str, Any]
) -> Response[bytes]:
    """Save a report: {name, kind, params}, its params checked by its kind. 201 with the
    saved report."""
    who = _who(request)
    _only(data, ("name", "kind", "params"))
    with state.runtime.pool.connection() as conn:
        made = saved.save_report(
            conn, who, data.get("name"), str(data.get("kind", "")), data.get("params")
        )
    return _json(made.as_dict(), status=201)


@get("/v1/reports/{report_id:int}", sync_to_thread=True, opt=_READ)
def read_report(request: Request[Any, Any, Any], state: State, report_id: int) -> Response[bytes]:
    """One saved report with its schedules and shares."""
    who = _who(request)
    with state.runtime.pool.connection() as conn:
        found = saved.get_report(conn, who, report_id)
        timed = schedules.list_schedules(conn, who, report_id)
        shared = sharing.shares_of(conn, "report", report_id)
    return _json(
        {
            **found.as_dict(),
            "schedules": [s.as_dict() for s in timed],
            "shares": [s.as_dict() for s in shared],
        }
    )


@delete("/v1/reports/{report_id:int}", sync_to_thread=True, status_code=200, opt=_WRITE)
def delete_report(request: Request[Any, Any, Any], state: State, report_id: int) -> Response[bytes]:
    """Delete a report of mine (or any, as an admin), with its schedules and shares."""
    who = _who(request)
    with state.runtime.pool.connection() as conn:
        gone = saved.delete_report(conn, who, report_id)
    return _json(gone.as_dict())


@get("/v1/reports/{report_id:int}/pdf", sync_to_thread=True, opt=_EXPORT)
def export_pdf(request: Request[Any, Any, Any], state: State, report_id: int) -> Response[bytes]:
    """The report built now, for me, as a PDF download."""
    report = _built(request, state, report_id, "pdf")
    return _download(render_pdf(report), "application/pdf", attachment_name(report))


@get("/v1/reports/{report_id:int}/csv", sync_to_thread=True, opt=_EXPORT)
def export_csv(request: Request[Any, Any, Any], state: State, report_id: int) -> Response[bytes]:
    """The report's first table built now, for me, as a CSV download."""
    report = _built(request, state, report_id, "csv")
    name = attachment_name(report).removesuffix(".pdf") + ".csv"
    return _download(report_csv(report), "text/csv", name)  # Litestar adds the charset


@post("/v1/reports/{report_id:int}/shares", sync_to_thread=True, status_code=201, opt=_WRITE)
def share_report(
    request: Request[Any, Any, Any], state: State, report_id: int, data: dict[str, Any]
) -> Response[bytes]:
    """Share a report of mine with {role} or {user_id}; they see it through their own
    permissions."""
    who = _who(request)
    _only(data, ("role", "user_id"))
    with state.runtime.pool.connection() as conn:
        saved.require_owner(who, saved.get_report(conn, who, report_id))
        made = sharing.share(
            conn, who.actor, "report", report_id, data.get("role"), data.get("user_id")
        )
    return _json(made.as_dict(), status=201)


@delete(
    "/v1/reports/{report_id:int}/shares/{share_id:int}",
    sync_to_thread=True,
    status_code=200,
    opt=_WRITE,
)
def unshare_report(
    request: Request[Any, Any, Any], state: State, report_id: int, share_id: int
) -> Response[bytes]:
    """Withdraw one share of a report of mine."""
    who = _who(request)
    with state.runtime.pool.connection() as conn:
        saved.require_owner(who, saved.get_report(conn, who, report_id))
        gone = sharing.unshare(conn, who.actor, "report", report_id, share_id)
    return _json(gone.as_dict())


@post("/v1/reports/{report_id:int}/schedules", sync_to_thread=True, status_code=201, opt=_WRITE)
def create_schedule(
    request: Request[Any, Any, Any], state: State, report_id: int, data: dict[str, Any]
) -> Response[bytes]:
    """E-mail a report on a schedule: {every: daily|weekly|monthly, at_hour (UTC),
    recipients, weekday (0 = Monday, weekly), month_day (1 to 28, monthly)}. Each run is
    built as me."""
    who = _who(request)
    _only(data, ("every", "at_hour", "recipients", "weekday", "month_day"))
    with state.runtime.pool.connection() as conn:
        made = schedules.create_schedule(
            conn,
            who,
            report_id,
            data.get("every"),
            data.get("at_hour"),
            data.get("recipients"),
            weekday=data.get("weekday", 0),
            month_day=data.get("month_day", 1),
        )
    return _json(made.as_dict(), status=201)


@delete("/v1/reports/schedules/{schedule_id:int}", sync_to_thread=True, status_code=200, opt=_WRITE)
def delete_schedule(
    request: Request[Any, Any, Any], state: State, schedule_id: int
) -> Response[bytes]:
    """Stop a schedule I made (or of a report of mine; any, as an admin)."""
    who = _who(request)
    with state.runtime.pool.connection() as conn:
        gone = schedules.delete_schedule(conn, who, schedule_id)
    return _json(gone.as_dict())


@get("/v1/reports/schedules/{schedule_id:int}/runs", sync_to_thread=True, opt=_READ)
def read_runs(request: Request[Any, Any, Any], state: State, schedule_id: int) -> Response[bytes]:
    """A schedule's latest runs, newest first, each sent or failed with its error."""
    who = _who(request)
    with state.runtime.pool.connection() as conn:
        made = schedules.runs(conn, who, schedule_id)
    return _json({"runs": [run.as_dict() for run in made]})


@get("/v1/reports/ltv", sync_to_thread=True, opt={"permission": "analytics:read"})
def read_ltv(request: Request[Any, Any, Any], state: State) -> Response[bytes]:
    """Customer lifetime value: BG/NBD and Gamma-Gamma fitted on the store, the predicted
    value's distribution, P(alive), top customers and churn risk. Query parameters:
    horizon_weeks, discount (a year), churn_threshold, top, as_of (YYYY-MM-DD)."""
    who = _who(request)
    params = ltv.check_params(dict(request.query_params))
    report = ltv.ltv_report(
        state.runtime,
        params.horizon_weeks,
        params.discount,
        params.churn_threshold,
        params.top,
        params.as_of,
    )
    via = clean_text(f"api:{request.url.path}")  # what the PII-read audit entry names
    return _json(ltv.for_principal(report, who, state.runtime, via))


ROUTER = Router(
    path="/",
    route_handlers=[
        read_reports,
        create_report,
        read_report,
        delete_report,
        export_pdf,
        export_csv,
        share_report,
        unshare_report,
        create_schedule,
        delete_schedule,
        read_runs,
        read_ltv,
    ],
)


def _who(request: Request[Any, Any, Any]) -> Principal:
    who = principal(request)
    if who is None:  # the guard lets no one in without a principal; never trust that alone
        raise Unauthorized("not_signed_in", "sign in or send a token with this permission")
    return who


def _only(data: dict[str, Any], fields: tuple[str, ...]) -> None:
    """Refuse a body with a field this endpoint does not read (`{"user": ...}` for a share,
    `{"format": ...}` for a schedule): silently ignoring it would do something else."""
    unknown = sorted(str(key) for key in data if key not in fields)
    if unknown:
        raise InputError(
            "unknown_field",
            f"unknown field {', '.join(unknown)[:200]}; the body may hold {', '.join(fields)}",
        )


def _built(request: Request[Any, Any, Any], state: State, report_id: int, form: str) -> Report:
    """A saved report built for the requester, its export written to the audit log."""
    who = _who(request)
    with state.runtime.pool.connection() as conn:
        found = saved.get_report(conn, who, report_id)
    report = saved.build_saved(state.runtime, found, who)
    with state.runtime.pool.connection() as conn:
        audit.record(
            conn,
            actor=who.actor,
            action="report.export",
            target=f"report:{report_id}",
            detail={"format": form, "kind": found.kind},
        )
    return report


def _download(content: bytes, media_type: str, filename: str) -> Response[bytes]:
    return Response(
        content=content,
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _json(value: Any, status: int = 200) -> Response[bytes]:
    """JSON with Decimal as exact numbers."""
    return Response(content=encode(value), media_type="application/json", status_code=status)
