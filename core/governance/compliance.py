"""The compliance report's data, for an auditor: which attributes hold personal data and which
roles may see them, consent coverage by purpose, data past its retention, deletion requests,
tracking-plan violations and the administrative changes of a period.

Reads only: governance tables, `profiles`, `events`, `consent`, the audit log, and the
tracking-plan violations when that module exists. The page, CSV and PDF render
`compliance_report_as_report` through c360.reports.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

from c360 import audit
from c360.governance import attributes, consent, deletions, policies
from c360.runtime import Runtime

log = logging.getLogger(__name__)

#: Audit actions that are reads, not changes: the report lists changes.
_READ_ACTIONS = ("pii.read",)


def compliance_report(
    runtime: Runtime, since: datetime, until: datetime, as_of: datetime | None = None
) -> dict[str, Any]:
    """The report's sections as data, for the period [since, until); data past its retention
    is judged at `as_of` (now by default)."""
    as_of = as_of or datetime.now(UTC)
    with runtime.pool.connection() as conn:
        report = {
            "period": {"since": since, "until": until, "as_of": as_of},
            "pii": pii_access(conn),
            "consent": consent.coverage_in(conn),
            "retention": past_retention(conn, as_of),
            "deletions": _deletions(conn, since, until),
            "admin_changes": _changes(conn, since, until),
        }
    report["violations"] = _violations(runtime, since, until)
    return report


def pii_access(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Each PII attribute with the roles that see it unmasked (policy and pii:read)."""
    with conn.cursor(row_factory=dict_row) as cur:
        roles = cur.execute(
            "SELECT name, permissions FROM governance.roles ORDER BY name"
        ).fetchall()
    visible = {}
    for role in roles:
        principal = _RolePrincipal(role["name"], frozenset(role["permissions"]))
        visible[role["name"]] = policies.visible_pii(conn, principal)  # type: ignore[arg-type]
    return [
        {
            "attribute": d.name,
            "built_in": d.built_in,
            "retention_days": d.retention_days,
            "roles": sorted(name for name, seen in visible.items() if d.name in seen),
        }
        for d in attributes.pii_attributes(conn)
    ]


def past_retention(conn: psycopg.Connection, as_of: datetime) -> list[dict[str, Any]]:
    """Per attribute with a retention: profiles holding a value, and stored events it reads,
    older than its retention at `as_of` (a profile's value counts by its last activity)."""
    out = []
    for d in attributes.list_definitions(conn):
        if d.retention_days is None or d.status == "retired":
            continue
        cutoff = as_of - timedelta(days=d.retention_days)
        events = conn.execute(
            "SELECT count(*) FROM events WHERE event_time < %s"
            " AND (cardinality(%s::text[]) = 0 OR coalesce(event, type) = ANY(%s))",
            (cutoff, list(d.event_names), list(d.event_names)),
        ).fetchone()
        profiles = conn.execute(
            "SELECT count(*) FROM profiles WHERE merged_into IS NULL AND last_seen < %s"
            " AND attributes ? %s",
            (cutoff, d.name),
        ).fetchone()
        out.append(
            {
                "attribute": d.name,
                "retention_days": d.retention_days,
                "cutoff": cutoff,
                "events": events[0] if events else 0,
                "profiles": profiles[0] if profiles else 0,
            }
        )
    return out


def _last_day(until: datetime) -> datetime:
    """The last day a period ending at `until` (excluded) covers: a period to midnight of
    12-04 covers 12-03, one to 12-04 15:00 covers part of 12-04."""
    return until - timedelta(microseconds=1)


def compliance_report_as_report(
    runtime: Runtime, since: datetime, until: datetime, as_of: datetime | None = None
) -> Any:
    """The report as a c360.reports.model.Report (for the page, CSV and PDF); None when the
    reports package is not installed."""
    try:
        from c360.reports import model
    except ImportError:
        return None
    data = compliance_report(runtime, since, until, as_of)
    return model.Report(
        title="Compliance report",
        subtitle=f"{since:%Y-%m-%d} to {_last_day(until):%Y-%m-%d}",
        sections=[
            model.Table(
                ["attribute", "built in", "retention (days)", "roles that see it"],
                [
                    [
                        r["attribute"],
                        "yes" if r["built_in"] else "no",
                        r["retention_days"],
                        ", ".join(r["roles"]),
                    ]
                    for r in data["pii"]
                ],
                caption="Personal data and who may see it",
            ),
            model.Table(
                ["purpose", "granted", "denied", "unknown"],
                [[r["purpose"], r["granted"], r["denied"], r["unknown"]] for r in data["consent"]],
                caption="Consent coverage by purpose",
            ),
            model.Table(
                ["attribute", "retention (days)", "events past it", "profiles past it"],
                [
                    [r["attribute"], r["retention_days"], r["events"], r["profiles"]]
                    for r in data["retention"]
                ],
                caption="Data past its retention",
            ),
            model.Table(
                ["request", "requested by", "requested at", "status", "finished at"],
                [
                    [
                        r["request_id"],
                        r["requested_by"],
                        r["requested_at"],
                        r["status"],
                        r["finished_at"],
                    ]
                    for r in data["deletions"]["requests"]
                ],
                caption="Deletion requests",
            ),
            model.Table(
                ["source", "event", "day", "violations", "action"],
                [
                    [v["source"], v["event"], str(v["day"]), v["count"], v["action"]]
                    for v in data["violations"]["rows"]
                ],
                caption="Tracking-plan violations",
            ),
            model.Table(
                ["at", "actor", "action", "target"],
                [[c["at"], c["actor"], c["action"], c["target"]] for c in data["admin_changes"]],
                caption="Administrative changes",
            ),
        ],
    )


class _RolePrincipal:
    """A role as a principal, for asking what it may see."""

    def __init__(self, role: str, permissions: frozenset[str]) -> None:
        self.role = role
        self.permissions = permissions

    def can(self, permission: str) -> bool:
        return permission in self.permissions


def _deletions(conn: psycopg.Connection, since: datetime, until: datetime) -> dict[str, Any]:
    requests = [
        {
            key: row[key]
            for key in ("request_id", "requested_by", "requested_at", "status", "finished_at")
        }
        for row in deletions.deletion_requests(conn, limit=100_000)
        if since <= row["requested_at"] < until or row["status"] in ("received", "running")
    ]
    by_status: dict[str, int] = {}
    for row in requests:
        by_status[row["status"]] = by_status.get(row["status"], 0) + 1
    return {"requests": requests, "by_status": by_status}


def _changes(conn: psycopg.Connection, since: datetime, until: datetime) -> list[dict[str, Any]]:
    entries = audit.entries(conn, since=since, until=until, limit=100_000)
    return [asdict(e) for e in entries if e.action not in _READ_ACTIONS]


def _violations(runtime: Runtime, since: datetime, until: datetime) -> dict[str, Any]:
    """The sources helper's violation counts; absent module or failure is said, not hidden."""
    try:
        from c360.governance import tracking_plans
    except ImportError:
        return {"available": False, "rows": [], "total": 0}
    try:
        rows = [asdict(v) for v in tracking_plans.violations(runtime, since.date(), until.date())]
    except (psycopg.Error, AttributeError, TypeError) as exc:
        log.warning("Tracking-plan violations unavailable for the report: %s", exc)
        return {"available": False, "rows": [], "total": 0}
    return {"available": True, "rows": rows, "total": sum(r["count"] for r in rows)}
