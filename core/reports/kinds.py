"""Report kinds over other parts' services: `segment` (a saved segment's members, masked for
the reader by c360.segments) and `compliance` (the auditor's report of c360.governance).
Registered on import; each builder checks the reader's permission for what it shows, as the
page or endpoint behind it would. Reads through those services only.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from c360.access import Principal
from c360.errors import InputError
from c360.reports import registry
from c360.reports.model import Report, Table, Text
from c360.runtime import Runtime

#: Most members a segment report lists (the CSV export has them all).
MAX_SEGMENT_ROWS = 1000
#: A compliance report without dates covers the last 30 days.
COMPLIANCE_DAYS = 30


class ReportNotAllowed(InputError):
    """The reader lacks the permission the report's content needs."""

    status_code = 403


def build_segment(runtime: Runtime, params: dict[str, Any], principal: Principal) -> Report:
    """A saved segment's members, most valuable first: params {segment_id, limit}."""
    from c360.segments import service  # the segments part; imported when a report needs it

    _require(principal, "segments:read", "segment reports")
    segment_id = _whole(params.get("segment_id"), "segment_id", 1, 2**62)
    limit = _whole(params.get("limit", 200), "limit", 1, MAX_SEGMENT_ROWS)
    page = service.members(runtime, segment_id, limit, 0, principal)
    with runtime.pool.connection() as conn:
        segment = service.get_segment(conn, principal, segment_id)
    rows = [_member_row(doc) for doc in page["profiles"]]
    return Report(
        title=f"Segment: {segment['name']}",
        subtitle=f"{page['count']:,} members",
        sections=[
            Text(segment.get("description") or ""),
            Table(
                ["profile", "name", "email", "orders", "revenue", "last seen"],
                rows,
                caption=f"The {len(rows):,} most valuable members",
            ),
        ],
    )


def build_compliance(runtime: Runtime, params: dict[str, Any], principal: Principal) -> Report:
    """The compliance report for params {since, until} (days, YYYY-MM-DD; until excluded);
    the last 30 days by default."""
    from c360.governance import compliance  # the governance part, imported when needed

    _require(principal, "audit:read", "the compliance report")
    until = _day(params.get("until")) or datetime.now(UTC).date() + timedelta(days=1)
    since = _day(params.get("since")) or until - timedelta(days=COMPLIANCE_DAYS)
    if since >= until:
        raise InputError("invalid_period", "since must be before until")
    start, end = (datetime.combine(day, time(0), tzinfo=UTC) for day in (since, until))
    report: Report = compliance.compliance_report_as_report(runtime, start, end)
    return report


def _member_row(doc: dict[str, Any]) -> list[Any]:
    traits = doc.get("traits") or {}
    return [
        doc.get("profile_id"),
        _text(traits.get("name")),
        _text(traits.get("email")),
        doc.get("order_count"),
        doc.get("revenue"),
        doc.get("last_seen"),
    ]


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _require(principal: Principal, permission: str, what: str) -> None:
    if not principal.can(permission):
        raise ReportNotAllowed(
            "report_not_allowed",
            f"{what} need the {permission} permission, which your role {principal.role!r} "
            "lacks; ask an admin",
        )


def _whole(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InputError(
            "invalid_report_params", f"{name} must be a whole number from {low}; got {value!r}"
        )
    return value


def _day(value: Any) -> date | None:
    if value in (None, ""):
        return None
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise InputError(
            "invalid_report_params", f"dates are written YYYY-MM-DD; got {str(value)[:30]!r}"
        ) from None


registry.register("segment", build_segment)
registry.register("compliance", build_compliance)
