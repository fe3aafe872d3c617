"""Scheduled reports: when a saved report is built and e-mailed (`analytics.report_schedules`),
the worker loop that sends the due ones (`run_due`, `ReportScheduler`), and each attempt's
outcome (`analytics.report_runs`).

A due schedule is claimed with FOR UPDATE SKIP LOCKED and held until its run is recorded and
its next time set, so two workers never send one report twice. The report is built as the
user who created the schedule (they chose the recipients), through that user's permissions
today: masked personal data stays masked, and a user who can no longer sign in sends nothing.
A failed send is recorded and retried after a back-off. Touches analytics.report_schedules,
analytics.report_runs and the audit log; talks to the SMTP server in settings.
"""

from __future__ import annotations

import logging
from calendar import monthrange
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

from c360 import audit
from c360.access import Principal
from c360.accounts import principal_for_user
from c360.errors import C360Error, InputError
from c360.periodic import PeriodicTask
from c360.reports import registry
from c360.reports.mailer import check_recipients, send_report
from c360.reports.pdf import render_pdf
from c360.reports.saved import (
    ADMIN_ROLE,
    ReportForbidden,
    get_report,
    visible_report_ids,
)
from c360.runtime import Runtime

log = logging.getLogger(__name__)

EVERY = ("daily", "weekly", "monthly")

#: First retry of a failed send after a minute (a blip at the SMTP server), doubling per
#: failure in a row up to an hour, so a server down for a day is not hammered.
RETRY_FIRST = timedelta(minutes=1)
RETRY_MAX = timedelta(hours=1)

#: Most schedules one `run_due` call sends; the rest wait for the next call.
MAX_RUNS_PER_CALL = 100

#: How often the worker's scheduler looks for due reports.
CHECK_INTERVAL_S = 60.0


class ScheduleNotFound(InputError):
    """No schedule with that id that the principal may see."""

    status_code = 404


@dataclass(frozen=True, slots=True)
class Schedule:
    """When a saved report is sent, and to whom."""

    schedule_id: int
    report_id: int
    every: str
    at_hour: int
    weekday: int
    month_day: int
    recipients: list[str]
    next_run_at: datetime
    failures: int
    active: bool
    created_by: int
    created_at: datetime

    def as_dict(self) -> dict[str, Any]:
        """The schedule as the JSON API answers it."""
        return {
            "schedule_id": self.schedule_id,
            "report_id": self.report_id,
            "every": self.every,
            "at_hour": self.at_hour,
            "weekday": self.weekday,
            "month_day": self.month_day,
            "recipients": list(self.recipients),
            "next_run_at": self.next_run_at,
            "failures": self.failures,
            "active": self.active,
            "created_by": self.created_by,
            "created_at": self.created_at,
        }


@dataclass(frozen=True, slots=True)
class Run:
    """One attempt to build and send a scheduled report."""

    run_id: int
    schedule_id: int
    started_at: datetime
    finished_at: datetime
    outcome: str  # "sent" or "failed"
    error: str | None
    recipients: list[str]
    pdf_bytes: int | None

    def as_dict(self) -> dict[str, Any]:
        """The run as the JSON API answers it."""
        return {
            "run_id": self.run_id,
            "schedule_id": self.schedule_id,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "outcome": self.outcome,
            "error": self.error,
            "recipients": list(self.recipients),
            "pdf_bytes": self.pdf_bytes,
        }


def create_schedule(
    conn: psycopg.Connection,
    principal: Principal,
    report_id: int,
    every: Any,
    at_hour: Any,
    recipients: Any,
    weekday: Any = 0,
    month_day: Any = 1,
    now: datetime | None = None,
) -> Schedule:
    """Schedule a report `principal` may see; it will be built as `principal`. Audited."""
    if principal.user_id is None:
        raise ReportForbidden(
            "report_needs_user",
            "reports are scheduled by signed-in users (each run is built as its creator); "
            "sign in rather than using an API token",
        )
    timing = _check_timing(every, at_hour, weekday, month_day)
    clean = check_recipients(recipients)
    first = next_run(*timing, after=_aware(now))
    with conn.transaction():
        report = get_report(conn, principal, report_id)
        registry.check(report.kind, conn, report.params, principal)  # saved before checks
        created = _schedules(
            conn,
            "INSERT INTO analytics.report_schedules (report_id, every, at_hour, weekday,"
            " month_day, recipients, next_run_at, created_by)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING *",
            (report_id, *timing, clean, first, principal.user_id),
        )[0]
        audit.record(
            conn,
            actor=principal.actor,
            action="report.schedule",
            target=f"report:{report_id}",
            after=_audited(created),
        )
    return created


def delete_schedule(conn: psycopg.Connection, principal: Principal, schedule_id: int) -> Schedule:
    """Delete a schedule (its creator, the report's owner or an admin), with its runs."""
    with conn.transaction():
        found = _schedule_for(conn, principal, schedule_id, lock=True)
        owner = conn.execute(
            "SELECT owner FROM analytics.saved_reports WHERE report_id = %s", (found.report_id,)
        ).fetchone()
        if principal.role != ADMIN_ROLE and principal.user_id not in (
            found.created_by,
            owner[0] if owner else None,
        ):
            raise ReportForbidden(
                "schedule_not_yours",
                f"schedule {schedule_id} was made by another user: ask them or an admin",
            )
        conn.execute(
            "DELETE FROM analytics.report_schedules WHERE schedule_id = %s", (schedule_id,)
        )
        audit.record(
            conn,
            actor=principal.actor,
            action="report.unschedule",
            target=f"report:{found.report_id}",
            before=_audited(found),
        )
    return found


def list_schedules(
    conn: psycopg.Connection, principal: Principal, report_id: int
) -> list[Schedule]:
    """The schedules of a report `principal` may see, oldest first."""
    get_report(conn, principal, report_id)
    return _schedules(
        conn,
        "SELECT * FROM analytics.report_schedules WHERE report_id = %s ORDER BY schedule_id",
        (report_id,),
    )


def runs(
    conn: psycopg.Connection, principal: Principal, schedule_id: int, limit: int = 50
) -> list[Run]:
    """A schedule's latest runs, newest first."""
    _schedule_for(conn, principal, schedule_id)
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT * FROM analytics.report_runs WHERE schedule_id = %s"
            " ORDER BY run_id DESC LIMIT %s",
            (schedule_id, limit),
        ).fetchall()
    return [Run(**row) for row in rows]


def next_run(every: str, at_hour: int, weekday: int, month_day: int, after: datetime) -> datetime:
    """The first time strictly after `after` that a schedule falls on (UTC)."""
    after = after.astimezone(UTC)
    at = time(at_hour, tzinfo=UTC)
    if every == "daily":
        slot = datetime.combine(after.date(), at)
        return slot if slot > after else slot + timedelta(days=1)
    if every == "weekly":
        day = after.date() + timedelta(days=(weekday - after.weekday()) % 7)
        slot = datetime.combine(day, at)
        return slot if slot > after else slot + timedelta(days=7)
    slot = datetime.combine(date(after.year, after.month, month_day), at)
    if slot > after:
        return slot
    year, month = (after.year + 1, 1) if after.month == 12 else (after.year, after.month + 1)
    return datetime.combine(date(year, month, min(month_day, monthrange(year, month)[1])), at)


def run_due(runtime: Runtime, now: datetime | None = None) -> list[Run]:
    """Build and send every schedule due at `now`; returns the runs made, in order."""
    moment = _aware(now)
    made: list[Run] = []
    while len(made) < MAX_RUNS_PER_CALL:
        with runtime.pool.connection() as conn, conn.transaction():
            due = _claim_one(conn, moment)
            if due is None:
                break
            made.append(_run_one(runtime, conn, due, moment))
    return made


class ReportScheduler(PeriodicTask):
    """The worker's loop: `run_due` now and every `interval_s` seconds until `stop()`."""

    def __init__(self, runtime: Runtime, interval_s: float = CHECK_INTERVAL_S) -> None:
        super().__init__("c360-report-scheduler", interval_s)
        self.runtime = runtime

    def tick(self) -> None:
        """Send the reports that are due."""
        sent = run_due(self.runtime)
        if sent:
            log.info("Ran %d scheduled reports.", len(sent))


def _claim_one(conn: psycopg.Connection, moment: datetime) -> dict[str, Any] | None:
    """Lock one due schedule with its report; rows another worker holds are skipped."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT s.*, r.kind, r.params, r.name FROM analytics.report_schedules s"
            " JOIN analytics.saved_reports r USING (report_id)"
            " WHERE s.active AND s.next_run_at <= %s"
            " ORDER BY s.next_run_at, s.schedule_id LIMIT 1 FOR UPDATE OF s SKIP LOCKED",
            (moment,),
        ).fetchone()


def _run_one(
    runtime: Runtime, conn: psycopg.Connection, due: dict[str, Any], moment: datetime
) -> Run:
    """Build, render and send one claimed schedule; record the run and set the next time."""
    started = datetime.now(UTC)
    size: int | None = None
    error: str | None = None
    creator: Principal | None = None
    paused = False
    try:
        creator = creator_principal(conn, due["created_by"])
        if creator is None:
            raise _CreatorGone(due["created_by"])
        report = registry.build(due["kind"], runtime, dict(due["params"]), creator)
        pdf = render_pdf(report)
        size = len(pdf)
        send_report(runtime.settings, due["recipients"], report, pdf, due["name"])
    except _CreatorGone as exc:
        error, paused = str(exc), True
    except C360Error as exc:
        error = str(exc)
    except Exception as exc:  # a builder's bug must not stop the other schedules
        log.exception("Building scheduled report %r failed.", due["schedule_id"])
        error = f"building the report failed ({type(exc).__name__}: {exc}); see the worker log"
    run = _record(conn, due, started, error, size)
    _advance(conn, due, moment, error, paused)
    if creator is not None and error is None:
        audit.record(
            conn,
            actor=creator.actor,
            action="report.email",
            target=f"report:{due['report_id']}",
            detail={
                "schedule_id": due["schedule_id"],
                "recipients": due["recipients"],
                "pdf_bytes": size,
            },
        )
    else:
        log.warning("Scheduled report %r failed: %s", due["schedule_id"], error)
    return run


def creator_principal(conn: psycopg.Connection, user_id: int) -> Principal | None:
    """The user as a principal with their role's permissions today, or None when they are
    gone or disabled (c360.accounts decides who a user is)."""
    return principal_for_user(conn, user_id)


class _CreatorGone(Exception):
    def __init__(self, user_id: int) -> None:
        super().__init__(
            f"user {user_id}, who made this schedule, can no longer sign in; the schedule is "
            "paused: make a new one as another user"
        )


def _record(
    conn: psycopg.Connection,
    due: dict[str, Any],
    started: datetime,
    error: str | None,
    size: int | None,
) -> Run:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "INSERT INTO analytics.report_runs (schedule_id, started_at, finished_at, outcome,"
            " error, recipients, pdf_bytes) VALUES (%s, %s, clock_timestamp(), %s, %s, %s, %s)"
            " RETURNING *",
            (
                due["schedule_id"],
                started,
                "failed" if error else "sent",
                error,
                due["recipients"],
                size,
            ),
        ).fetchone()
    assert row is not None
    return Run(**row)


def _advance(
    conn: psycopg.Connection,
    due: dict[str, Any],
    moment: datetime,
    error: str | None,
    paused: bool,
) -> None:
    """After a send, the next slot; after a failure, a retry after the back-off."""
    if error is None:
        following = next_run(
            due["every"], due["at_hour"], due["weekday"], due["month_day"], after=moment
        )
        failures = 0
    else:
        failures = due["failures"] + 1
        following = moment + min(RETRY_FIRST * 2 ** (failures - 1), RETRY_MAX)
    conn.execute(
        "UPDATE analytics.report_schedules SET next_run_at = %s, failures = %s,"
        " active = active AND NOT %s WHERE schedule_id = %s",
        (following, failures, paused, due["schedule_id"]),
    )


def _schedule_for(
    conn: psycopg.Connection, principal: Principal, schedule_id: int, lock: bool = False
) -> Schedule:
    """A schedule of a report `principal` may see; ScheduleNotFound otherwise."""
    found = _schedules(
        conn,
        "SELECT * FROM analytics.report_schedules WHERE schedule_id = %s"
        + (" FOR UPDATE" if lock else ""),
        (schedule_id,),
    )
    if not found or found[0].report_id not in visible_report_ids(conn, principal):
        raise ScheduleNotFound(
            "schedule_not_found", f"there is no schedule {schedule_id} you can see"
        )
    return found[0]


def _check_timing(
    every: Any, at_hour: Any, weekday: Any, month_day: Any
) -> tuple[str, int, int, int]:
    if every not in EVERY:
        raise InputError(
            "invalid_schedule", f"every must be daily, weekly or monthly; got {str(every)[:40]!r}"
        )
    checks = (
        ("at_hour", at_hour, 0, 23),
        ("weekday", weekday, 0, 6),
        ("month_day", month_day, 1, 28),
    )
    for name, value, low, high in checks:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise InputError(
                "invalid_schedule",
                f"{name} must be a whole number from {low} to {high}; got {str(value)[:40]!r}"
                + (" (hours are UTC)" if name == "at_hour" else "")
                + (" (0 is Monday)" if name == "weekday" else "")
                + (" (so that every month has the day)" if name == "month_day" else ""),
            )
    return every, at_hour, weekday, month_day


def _aware(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC)")
    return now


def _audited(schedule: Schedule) -> dict[str, Any]:
    return {
        "schedule_id": schedule.schedule_id,
        "every": schedule.every,
        "at_hour": schedule.at_hour,
        "weekday": schedule.weekday,
        "month_day": schedule.month_day,
        "recipients": list(schedule.recipients),
    }


def _schedules(conn: psycopg.Connection, query: str, params: tuple[Any, ...]) -> list[Schedule]:
    with conn.cursor(row_factory=dict_row) as cur:
        return [Schedule(**row) for row in cur.execute(query, params).fetchall()]
