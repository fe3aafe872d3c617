"""Saved reports (`analytics.saved_reports`): a report kind with its parameters, owned by the
user who saved it, visible to its owner and to the roles and users it is shared with
(c360.sharing), and built for whoever opens it, through that reader's own permissions.
Touches analytics.saved_reports and writes the audit log; reads analytics.shares.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from c360 import audit, sharing
from c360.access import Principal
from c360.errors import InputError
from c360.events.model import encode
from c360.reports import registry
from c360.reports.model import Report
from c360.runtime import Runtime

#: Longest report name: a line in a list and an e-mail subject.
MAX_NAME = 200

#: Largest parameter document, as JSON: parameters are filters, not data.
MAX_PARAMS_BYTES = 16_384

#: The role that may see, schedule and delete every report (as c360.sharing lets it see all).
ADMIN_ROLE = "admin"


class ReportNotFound(InputError):
    """No saved report with that id, or none the principal may see (the same answer, so ids
    of other people's reports are not revealed)."""

    status_code = 404


class ReportForbidden(InputError):
    """The principal sees the report but may not change it."""

    status_code = 403


@dataclass(frozen=True, slots=True)
class SavedReport:
    """One saved report."""

    report_id: int
    name: str
    kind: str
    params: dict[str, Any]
    owner: int
    created_at: datetime

    def as_dict(self) -> dict[str, Any]:
        """The saved report as the JSON API answers it."""
        return {
            "report_id": self.report_id,
            "name": self.name,
            "kind": self.kind,
            "params": self.params,
            "owner": self.owner,
            "created_at": self.created_at,
        }


def save_report(
    conn: psycopg.Connection, principal: Principal, name: str, kind: str, params: Any
) -> SavedReport:
    """Save a report of a known kind for `principal` (a signed-in user: a report needs an
    owner to be built as), with its audit entry in the same transaction."""
    owner = _owner_id(principal)
    name = _check_name(name)
    registry.require_kind(kind)
    params = _check_params(params)
    registry.check(kind, conn, params, principal)
    with conn.transaction():
        saved = _rows(
            conn,
            "INSERT INTO analytics.saved_reports (name, kind, params, owner)"
            " VALUES (%s, %s, %s, %s) RETURNING *",
            (name, kind, Jsonb(params, dumps=_dumps), owner),
        )[0]
        audit.record(
            conn,
            actor=principal.actor,
            action="report.create",
            target=f"report:{saved.report_id}",
            after=_audited(saved),
        )
    return saved


def list_reports(conn: psycopg.Connection, principal: Principal) -> list[SavedReport]:
    """The reports `principal` may see, newest first."""
    ids = sorted(visible_report_ids(conn, principal))
    return _rows(
        conn,
        "SELECT * FROM analytics.saved_reports WHERE report_id = ANY(%s)"
        " ORDER BY created_at DESC, report_id DESC",
        (ids,),
    )


def get_report(conn: psycopg.Connection, principal: Principal, report_id: int) -> SavedReport:
    """One report `principal` may see; ReportNotFound otherwise."""
    if report_id not in visible_report_ids(conn, principal):
        raise ReportNotFound("report_not_found", f"there is no report {report_id} you can see")
    found = _rows(conn, "SELECT * FROM analytics.saved_reports WHERE report_id = %s", (report_id,))
    if not found:  # deleted since the visibility check
        raise ReportNotFound("report_not_found", f"there is no report {report_id} you can see")
    return found[0]


def delete_report(conn: psycopg.Connection, principal: Principal, report_id: int) -> SavedReport:
    """Delete a report (its owner or an admin), with its schedules, runs and shares."""
    with conn.transaction():
        saved = get_report(conn, principal, report_id)
        require_owner(principal, saved)
        conn.execute("DELETE FROM analytics.saved_reports WHERE report_id = %s", (report_id,))
        sharing.forget(conn, "report", report_id)
        audit.record(
            conn,
            actor=principal.actor,
            action="report.delete",
            target=f"report:{report_id}",
            before=_audited(saved),
        )
    return saved


def build_saved(runtime: Runtime, saved: SavedReport, principal: Principal) -> Report:
    """The saved report built now for `principal`, through its permissions."""
    return registry.build(saved.kind, runtime, dict(saved.params), principal)


def visible_report_ids(conn: psycopg.Connection, principal: Principal) -> set[int]:
    """Ids of the reports `principal` may see: its own, those shared with its role or with
    it, every one for an admin. The one place that asks c360.sharing."""
    return sharing.visible_ids(conn, "report", principal)


def require_owner(principal: Principal, saved: SavedReport) -> None:
    """Only the owner or an admin may change a report; others who see it get 403."""
    if principal.role == ADMIN_ROLE or (
        principal.user_id is not None and principal.user_id == saved.owner
    ):
        return
    raise ReportForbidden(
        "report_not_owner",
        f"report {saved.report_id} is shared with you, not yours: ask its owner to change it",
    )


def _owner_id(principal: Principal) -> int:
    if principal.user_id is None:
        raise ReportForbidden(
            "report_needs_user",
            "reports are saved by signed-in users (a report is built as its owner); "
            "sign in rather than using an API token",
        )
    return principal.user_id


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InputError("invalid_report_name", "give the report a name (a non-empty text)")
    name = unicodedata.normalize("NFC", name.strip())
    if len(name) > MAX_NAME:
        raise InputError(
            "invalid_report_name", f"a report name may be at most {MAX_NAME} characters"
        )
    return name


def _check_params(params: Any) -> dict[str, Any]:
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise InputError(
            "invalid_report_params", 'params must be a JSON object such as {"since": "..."}'
        )
    if len(encode(params)) > MAX_PARAMS_BYTES:
        raise InputError(
            "invalid_report_params",
            f"params may be at most {MAX_PARAMS_BYTES:,} bytes of JSON; a report takes filters, "
            "not data",
        )
    return params


def _audited(saved: SavedReport) -> dict[str, Any]:
    return {"name": saved.name, "kind": saved.kind, "params": saved.params, "owner": saved.owner}


def _rows(conn: psycopg.Connection, query: str, params: tuple[Any, ...]) -> list[SavedReport]:
    with conn.cursor(row_factory=dict_row) as cur:
        return [SavedReport(**row) for row in cur.execute(query, params).fetchall()]


def _dumps(value: Any) -> str:
    return encode(value).decode()
