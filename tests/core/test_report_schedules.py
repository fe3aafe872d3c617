"""Saved and scheduled reports on the real engines, e-mailed to an SMTP server (aiosmtpd) that
each test starts on 127.0.0.1: the PDF arrives attached to the right recipients, built as the
schedule's creator; two workers send a due report once; a failed send is recorded and retried;
every refused input says why."""

from __future__ import annotations

import dataclasses
import io
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email import message_from_bytes, policy
from email.message import Message
from typing import Any

import psycopg
import pypdf
import pytest
from aiosmtpd.controller import Controller

from c360 import audit, sharing
from c360.access import BUILT_IN_ROLES, Principal
from c360.adapters.bus import ID_RESOLUTION
from c360.errors import InputError
from c360.reports import registry
from c360.reports.model import Report, Table, Text
from c360.reports.saved import delete_report, get_report, list_reports, save_report
from c360.reports.schedules import (
    ReportScheduler,
    create_schedule,
    delete_schedule,
    list_schedules,
    next_run,
    run_due,
    runs,
)
from c360.runtime import Runtime

KIND = "test-contacts"
NOW = datetime(2026, 3, 2, 6, 30, tzinfo=UTC)  # a Monday


class Inbox:
    """An aiosmtpd handler keeping what arrives; `refuse` answers 451 to that many messages."""

    def __init__(self) -> None:
        self.received: list[tuple[list[str], Message]] = []
        self.refuse = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.refuse:
            self.refuse -= 1
            return "451 4.3.0 mailbox busy, try again later"
        self.received.append(
            (list(envelope.rcpt_tos), message_from_bytes(envelope.content, policy=policy.default))
        )
        return "250 OK"


@pytest.fixture
def inbox(runtime: Runtime) -> Iterator[Inbox]:
    """An SMTP server on a free loopback port, and the runtime's settings pointing at it."""
    handler = Inbox()
    port = _free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    runtime.settings = dataclasses.replace(
        runtime.settings, smtp_host="127.0.0.1", smtp_port=port, smtp_starttls=False
    )
    try:
        yield handler
    finally:
        controller.stop()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _contacts_report(runtime: Runtime, params: dict[str, Any], principal: Principal) -> Report:
    """A builder that shows personal data only to principals allowed to see it."""
    email = "lan.nguyen@example.vn" if principal.can("pii:read") else "l***@example.vn"
    return Report(
        title=params.get("title", "Khách hàng thân thiết"),
        subtitle=f"built for {principal.actor}",
        sections=[Text("Danh sách khách hàng"), Table(["name", "email"], [["Lan", email]])],
    )


registry.register(KIND, _contacts_report)


def _user(conn: psycopg.Connection, name: str, role: str) -> Principal:
    user_id = conn.execute(
        "INSERT INTO governance.users (name, role, password_hash) VALUES (%s, %s, 'x')"
        " RETURNING user_id",
        (name, role),
    ).fetchone()[0]
    return Principal("user", name, role, frozenset(BUILT_IN_ROLES[role]), user_id=user_id)


@pytest.fixture
def people(runtime: Runtime) -> dict[str, Principal]:
    with runtime.pool.connection() as conn:
        return {
            "analyst": _user(conn, "an", "analyst"),
            "marketer": _user(conn, "minh", "marketer"),
            "other": _user(conn, "other", "analyst"),
            "admin": _user(conn, "root", "admin"),
            "viewer": _user(conn, "vi", "viewer"),
        }


def _pdf_text(message: Message) -> tuple[str, str]:
    """(file name, text) of the PDF attached to a message."""
    parts = [part for part in message.walk() if part.get_content_type() == "application/pdf"]
    assert len(parts) == 1
    data = parts[0].get_payload(decode=True)
    reader = pypdf.PdfReader(io.BytesIO(data))
    return parts[0].get_filename(), "\n".join(page.extract_text() for page in reader.pages)


def test_a_due_report_arrives_with_its_pdf_attached_to_its_recipients(
    runtime: Runtime, inbox: Inbox, people: dict[str, Principal]
) -> None:
    analyst = people["analyst"]
    with runtime.pool.connection() as conn:
        saved = save_report(conn, analyst, "Khách VIP", KIND, {"title": "Báo cáo tuần"})
        schedule = create_schedule(
            conn, analyst, saved.report_id, "daily", 7, ["a@example.com", "b@example.vn"], now=NOW
        )
    assert schedule.next_run_at == datetime(2026, 3, 2, 7, tzinfo=UTC)

    assert run_due(runtime, NOW) == []  # not due before 07:00
    made = run_due(runtime, NOW + timedelta(hours=1))

    assert [run.outcome for run in made] == ["sent"]
    assert len(inbox.received) == 1
    recipients, message = inbox.received[0]
    assert recipients == ["a@example.com", "b@example.vn"]
    assert message["Subject"] == "Khách VIP: Báo cáo tuần"  # the saved name, then the title
    filename, text = _pdf_text(message)
    assert filename.endswith(".pdf")
    assert "Báo cáo tuần" in text and "lan.nguyen@example.vn" in text
    assert made[0].pdf_bytes == len(
        next(p for p in message.walk() if p.get_content_type() == "application/pdf").get_payload(
            decode=True
        )
    )
    with runtime.pool.connection() as conn:
        (after,) = list_schedules(conn, analyst, saved.report_id)
        logged = [entry.action for entry in audit.entries(conn, actor=analyst.actor)]
    assert after.next_run_at == datetime(2026, 3, 3, 7, tzinfo=UTC)  # the next day's slot
    assert logged == ["report.email", "report.schedule", "report.create"]


def test_a_shared_report_scheduled_by_a_marketer_keeps_personal_data_masked(
    runtime: Runtime, inbox: Inbox, people: dict[str, Principal]
) -> None:
    analyst, marketer = people["analyst"], people["marketer"]
    with runtime.pool.connection() as conn:
        saved = save_report(conn, analyst, "Contacts", KIND, {})
        sharing.share(conn, analyst.actor, "report", saved.report_id, role="marketer")
        create_schedule(conn, marketer, saved.report_id, "daily", 7, ["m@example.com"], now=NOW)

    run_due(runtime, NOW + timedelta(hours=1))

    _filename, text = _pdf_text(inbox.received[0][1])
    assert "l***@example.vn" in text
    assert "lan.nguyen" not in text
    assert "user:minh" in text


def test_two_workers_at_once_send_a_due_report_once(
    runtime: Runtime, inbox: Inbox, people: dict[str, Principal]
) -> None:
    analyst = people["analyst"]
    finished = threading.Event()

    def slow_build(rt: Runtime, params: dict[str, Any], principal: Principal) -> Report:
        # hold the claim until the other worker has looked and gone: the race is real
        finished.wait(timeout=10)
        return _contacts_report(rt, params, principal)

    registry.register("test-slow", slow_build)
    with runtime.pool.connection() as conn:
        saved = save_report(conn, analyst, "Slow", "test-slow", {})
        create_schedule(conn, analyst, saved.report_id, "daily", 7, ["a@example.com"], now=NOW)
    start = threading.Barrier(2)
    made: list[list[Any]] = []

    def worker() -> None:
        start.wait()
        made.append(run_due(runtime, NOW + timedelta(hours=1)))
        finished.set()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(len(batch) for batch in made) == [0, 1]
    assert len(inbox.received) == 1
    with runtime.pool.connection() as conn:
        count = conn.execute("SELECT count(*) FROM analytics.report_runs").fetchone()[0]
    assert count == 1


def test_a_failed_send_is_recorded_and_retried_at_the_next_run(
    runtime: Runtime, inbox: Inbox, people: dict[str, Principal]
) -> None:
    analyst = people["analyst"]
    inbox.refuse = 1
    with runtime.pool.connection() as conn:
        saved = save_report(conn, analyst, "Retry", KIND, {})
        schedule = create_schedule(
            conn, analyst, saved.report_id, "weekly", 7, ["a@example.com"], weekday=0, now=NOW
        )
    due = NOW + timedelta(hours=1)

    (failed,) = run_due(runtime, due)
    assert run_due(runtime, due + timedelta(seconds=30)) == []  # backing off
    (retried,) = run_due(runtime, due + timedelta(minutes=1))

    assert failed.outcome == "failed"
    assert "451" in (failed.error or "") and "127.0.0.1" in (failed.error or "")
    assert retried.outcome == "sent" and retried.error is None
    assert len(inbox.received) == 1
    with runtime.pool.connection() as conn:
        history = runs(conn, analyst, schedule.schedule_id)
        (after,) = list_schedules(conn, analyst, saved.report_id)
    assert [run.outcome for run in history] == ["sent", "failed"]
    assert after.failures == 0
    assert after.next_run_at == datetime(2026, 3, 9, 7, tzinfo=UTC)  # next Monday 07:00


def test_without_an_smtp_server_the_run_fails_with_the_setting_to_change(
    runtime: Runtime, people: dict[str, Principal]
) -> None:
    analyst = people["analyst"]
    with runtime.pool.connection() as conn:
        saved = save_report(conn, analyst, "No mail", KIND, {})
        create_schedule(conn, analyst, saved.report_id, "daily", 7, ["a@example.com"], now=NOW)

    (run,) = run_due(runtime, NOW + timedelta(hours=1))

    assert run.outcome == "failed"
    assert "C360_SMTP_HOST" in (run.error or "")


def test_a_server_without_starttls_is_refused_when_starttls_is_required(
    runtime: Runtime, inbox: Inbox, people: dict[str, Principal]
) -> None:
    runtime.settings = dataclasses.replace(runtime.settings, smtp_starttls=True)
    analyst = people["analyst"]
    with runtime.pool.connection() as conn:
        saved = save_report(conn, analyst, "TLS", KIND, {})
        create_schedule(conn, analyst, saved.report_id, "daily", 7, ["a@example.com"], now=NOW)

    (run,) = run_due(runtime, NOW + timedelta(hours=1))

    assert run.outcome == "failed"
    assert "STARTTLS" in (run.error or "")
    assert inbox.received == []


def test_a_schedule_whose_creator_is_disabled_is_paused(
    runtime: Runtime, inbox: Inbox, people: dict[str, Principal]
) -> None:
    analyst = people["analyst"]
    with runtime.pool.connection() as conn:
        saved = save_report(conn, analyst, "Gone", KIND, {})
        create_schedule(conn, analyst, saved.report_id, "daily", 7, ["a@example.com"], now=NOW)
        conn.execute(
            "UPDATE governance.users SET disabled = true WHERE user_id = %s", (analyst.user_id,)
        )

    (run,) = run_due(runtime, NOW + timedelta(hours=1))

    assert run.outcome == "failed" and "paused" in (run.error or "")
    assert run_due(runtime, NOW + timedelta(days=3)) == []
    assert inbox.received == []


def test_saved_reports_are_seen_by_their_owner_the_shared_role_and_admins_only(
    runtime: Runtime, people: dict[str, Principal]
) -> None:
    analyst, marketer, other, admin = (people[k] for k in ("analyst", "marketer", "other", "admin"))
    with runtime.pool.connection() as conn:
        mine = save_report(conn, analyst, "Mine", KIND, {})
        shared = save_report(conn, analyst, "Shared", KIND, {})
        sharing.share(conn, analyst.actor, "report", shared.report_id, role="marketer")

        seen = {
            name: [r.name for r in list_reports(conn, who)]
            for name, who in (("analyst", analyst), ("marketer", marketer), ("other", other))
        }
        assert sorted(r.name for r in list_reports(conn, admin)) == ["Mine", "Shared"]
        with pytest.raises(InputError) as hidden:
            get_report(conn, other, mine.report_id)
        with pytest.raises(InputError) as not_owner:
            delete_report(conn, marketer, shared.report_id)
        delete_report(conn, analyst, shared.report_id)
        left = [r.name for r in list_reports(conn, marketer)]
        share_rows = conn.execute("SELECT count(*) FROM analytics.shares").fetchone()[0]

    assert seen == {"analyst": ["Shared", "Mine"], "marketer": ["Shared"], "other": []}
    assert (hidden.value.code, hidden.value.status_code) == ("report_not_found", 404)
    assert (not_owner.value.code, not_owner.value.status_code) == ("report_not_owner", 403)
    assert left == [] and share_rows == 0


def test_deleting_a_schedule_is_audited_and_limited_to_its_creator_owner_or_admin(
    runtime: Runtime, people: dict[str, Principal]
) -> None:
    analyst, marketer = people["analyst"], people["marketer"]
    with runtime.pool.connection() as conn:
        saved = save_report(conn, analyst, "Weekly", KIND, {})
        sharing.share(conn, analyst.actor, "report", saved.report_id, role="marketer")
        schedule = create_schedule(conn, analyst, saved.report_id, "monthly", 5, ["a@x.vn"])
        with pytest.raises(InputError) as refused:
            delete_schedule(conn, marketer, schedule.schedule_id)
        with pytest.raises(InputError) as unseen:
            delete_schedule(conn, people["other"], schedule.schedule_id)
        delete_schedule(conn, analyst, schedule.schedule_id)
        (entry, *_rest) = audit.entries(conn, action_prefix="report.")

    assert refused.value.code == "schedule_not_yours"
    assert (unseen.value.code, unseen.value.status_code) == ("schedule_not_found", 404)
    assert entry.action == "report.unschedule"
    assert entry.before["recipients"] == ["a@x.vn"]


@pytest.mark.parametrize(
    ("every", "at_hour", "extra", "code"),
    [
        ("hourly", 7, {}, "invalid_schedule"),
        ("daily", 24, {}, "invalid_schedule"),
        ("daily", -1, {}, "invalid_schedule"),
        ("daily", "7", {}, "invalid_schedule"),
        ("daily", True, {}, "invalid_schedule"),
        ("weekly", 7, {"weekday": 7}, "invalid_schedule"),
        ("monthly", 7, {"month_day": 31}, "invalid_schedule"),
        ("daily", 7, {"recipients": []}, "invalid_recipients"),
        ("daily", 7, {"recipients": "a@example.com"}, "invalid_recipients"),
        ("daily", 7, {"recipients": ["not-an-address"]}, "invalid_recipients"),
        ("daily", 7, {"recipients": ["a@example.com\r\nBcc: x@evil.com"]}, "invalid_recipients"),
        ("daily", 7, {"recipients": ["Lan <a@example.com>"]}, "invalid_recipients"),
        (
            "daily",
            7,
            {"recipients": [f"u{i}@example.com" for i in range(51)]},
            "invalid_recipients",
        ),
    ],
)
def test_a_bad_schedule_is_refused_with_the_fix(
    runtime: Runtime,
    people: dict[str, Principal],
    every: Any,
    at_hour: Any,
    extra: dict[str, Any],
    code: str,
) -> None:
    analyst = people["analyst"]
    recipients = extra.pop("recipients", ["a@example.com"])
    with runtime.pool.connection() as conn:
        saved = save_report(conn, analyst, "R", KIND, {})
        with pytest.raises(InputError) as refused:
            create_schedule(conn, analyst, saved.report_id, every, at_hour, recipients, **extra)
        count = conn.execute("SELECT count(*) FROM analytics.report_schedules").fetchone()[0]
    assert refused.value.code == code
    assert count == 0


def test_unknown_kinds_bad_names_bad_params_and_tokens_are_refused(
    runtime: Runtime, people: dict[str, Principal]
) -> None:
    analyst = people["analyst"]
    token = Principal("token", "ci", "token", frozenset(BUILT_IN_ROLES["analyst"]))
    with runtime.pool.connection() as conn:
        cases = {
            "unknown_report_kind": lambda: save_report(conn, analyst, "R", "no-such-kind", {}),
            "invalid_report_name": lambda: save_report(conn, analyst, "  ", KIND, {}),
            "invalid_report_params": lambda: save_report(conn, analyst, "R", KIND, [1, 2]),
            "report_needs_user": lambda: save_report(conn, token, "R", KIND, {}),
        }
        for code, attempt in cases.items():
            with pytest.raises(InputError) as refused:
                attempt()
            assert refused.value.code == code, code
        with pytest.raises(InputError) as too_big:
            save_report(conn, analyst, "R", KIND, {"x": "a" * 20_000})
        with pytest.raises(InputError) as missing:
            create_schedule(conn, analyst, 999_999, "daily", 7, ["a@example.com"])
    assert too_big.value.code == "invalid_report_params"
    assert missing.value.code == "report_not_found"
    assert "no-such-kind" not in registry.kinds()


@pytest.mark.parametrize(
    ("every", "after", "expected"),
    [
        ("daily", datetime(2026, 3, 2, 6, 59, tzinfo=UTC), datetime(2026, 3, 2, 7, tzinfo=UTC)),
        ("daily", datetime(2026, 3, 2, 7, 0, tzinfo=UTC), datetime(2026, 3, 3, 7, tzinfo=UTC)),
        # weekday 2 is Wednesday; 2026-03-02 is a Monday
        ("weekly", datetime(2026, 3, 2, 8, tzinfo=UTC), datetime(2026, 3, 4, 7, tzinfo=UTC)),
        ("weekly", datetime(2026, 3, 4, 7, tzinfo=UTC), datetime(2026, 3, 11, 7, tzinfo=UTC)),
        ("monthly", datetime(2026, 3, 2, 8, tzinfo=UTC), datetime(2026, 3, 28, 7, tzinfo=UTC)),
        ("monthly", datetime(2026, 12, 28, 7, tzinfo=UTC), datetime(2027, 1, 28, 7, tzinfo=UTC)),
    ],
)
def test_the_next_run_is_the_first_slot_after_now(
    every: str, after: datetime, expected: datetime
) -> None:
    assert next_run(every, 7, 2, 28, after) == expected


# The JSON API -------------------------------------------------------------------------------


@pytest.fixture
def api(runtime: Runtime, inbox: Inbox) -> Iterator[Any]:
    """A test client on the app with the reports routes, and sessions for three users."""
    from litestar.testing import TestClient

    from c360.api.app import create_app

    with TestClient(app=create_app(runtime.settings)) as client:
        yield client


def _session(runtime: Runtime, who: Principal) -> dict[str, str]:
    """Headers of a signed-in browser: the session cookie and its CSRF token."""
    from c360 import sessions

    session_id, csrf = sessions.start_session(runtime, who.user_id, who.role)
    return {"Cookie": f"{sessions.COOKIE}={session_id}", "X-CSRF-Token": csrf}


def test_the_api_saves_exports_schedules_and_unschedules_a_report_with_audit(
    runtime: Runtime, api: Any, inbox: Inbox, people: dict[str, Principal]
) -> None:
    analyst = people["analyst"]
    headers = _session(runtime, analyst)

    made = api.post(
        "/v1/reports",
        json={"name": "Khách VIP", "kind": KIND, "params": {"title": "Báo cáo"}},
        headers=headers,
    )
    assert made.status_code == 201, made.text
    report_id = made.json()["report_id"]
    listed = api.get("/v1/reports", headers=headers).json()
    pdf = api.get(f"/v1/reports/{report_id}/pdf", headers=headers)
    csv_export = api.get(f"/v1/reports/{report_id}/csv", headers=headers)
    scheduled = api.post(
        f"/v1/reports/{report_id}/schedules",
        json={"every": "weekly", "at_hour": 6, "weekday": 4, "recipients": ["a@example.com"]},
        headers=headers,
    )
    detail = api.get(f"/v1/reports/{report_id}", headers=headers).json()
    schedule_id = scheduled.json()["schedule_id"]
    history = api.get(f"/v1/reports/schedules/{schedule_id}/runs", headers=headers)
    removed = api.delete(f"/v1/reports/schedules/{schedule_id}", headers=headers)

    assert [r["name"] for r in listed["reports"]] == ["Khách VIP"] and KIND in listed["kinds"]
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert "Báo cáo" in pypdf.PdfReader(io.BytesIO(pdf.content)).pages[0].extract_text()
    assert pdf.headers["content-disposition"].startswith("attachment; filename=")
    assert csv_export.content.decode() == "name,email\r\nLan,lan.nguyen@example.vn\r\n"
    assert scheduled.status_code == 201 and scheduled.json()["weekday"] == 4
    assert [s["schedule_id"] for s in detail["schedules"]] == [schedule_id]
    assert history.status_code == 200 and history.json() == {"runs": []}
    assert removed.status_code == 200
    with runtime.pool.connection() as conn:
        actions = [entry.action for entry in audit.entries(conn, actor=analyst.actor)]
    assert actions == [
        "report.unschedule",
        "report.schedule",
        "report.export",
        "report.export",
        "report.create",
    ]


def test_the_api_shares_a_report_and_the_reader_gets_it_through_their_permissions(
    runtime: Runtime, api: Any, people: dict[str, Principal]
) -> None:
    analyst, marketer = people["analyst"], people["marketer"]
    owner, reader = _session(runtime, analyst), _session(runtime, marketer)
    report_id = api.post("/v1/reports", json={"name": "C", "kind": KIND}, headers=owner).json()[
        "report_id"
    ]

    hidden = api.get(f"/v1/reports/{report_id}/csv", headers=reader)
    shared = api.post(f"/v1/reports/{report_id}/shares", json={"role": "marketer"}, headers=owner)
    seen = api.get(f"/v1/reports/{report_id}/csv", headers=reader)
    reshare = api.post(f"/v1/reports/{report_id}/shares", json={"role": "viewer"}, headers=reader)
    unshared = api.delete(
        f"/v1/reports/{report_id}/shares/{shared.json()['share_id']}", headers=owner
    )

    assert hidden.status_code == 404 and hidden.json()["code"] == "report_not_found"
    assert shared.status_code == 201
    assert seen.content.decode() == "name,email\r\nLan,l***@example.vn\r\n"
    assert reshare.status_code == 403 and reshare.json()["code"] == "report_not_owner"
    assert unshared.status_code == 200
    assert api.get(f"/v1/reports/{report_id}", headers=reader).status_code == 404


def test_the_api_refuses_bad_input_and_missing_permissions(
    runtime: Runtime, api: Any, people: dict[str, Principal]
) -> None:
    analyst = _session(runtime, people["analyst"])
    report_id = api.post("/v1/reports", json={"name": "R", "kind": KIND}, headers=analyst).json()[
        "report_id"
    ]
    viewer = _session(runtime, people["viewer"])
    no_csrf = {"Cookie": analyst["Cookie"]}

    answers = {
        "unknown kind": api.post("/v1/reports", json={"name": "R", "kind": "x"}, headers=analyst),
        "no name": api.post("/v1/reports", json={"kind": KIND}, headers=analyst),
        "bad schedule": api.post(
            f"/v1/reports/{report_id}/schedules",
            json={"every": "hourly", "at_hour": 6, "recipients": ["a@example.com"]},
            headers=analyst,
        ),
        "bad recipients": api.post(
            f"/v1/reports/{report_id}/schedules",
            json={"every": "daily", "at_hour": 6, "recipients": ["nobody"]},
            headers=analyst,
        ),
        "no schedule": api.delete("/v1/reports/schedules/999999", headers=analyst),
        "viewer saves": api.post("/v1/reports", json={"name": "R", "kind": KIND}, headers=viewer),
        "viewer exports": api.get(f"/v1/reports/{report_id}/pdf", headers=viewer),
        "no csrf": api.post("/v1/reports", json={"name": "R", "kind": KIND}, headers=no_csrf),
        "nobody": api.get("/v1/reports"),
    }

    codes = {name: (answer.status_code, answer.json()["code"]) for name, answer in answers.items()}
    assert codes["unknown kind"] == (400, "unknown_report_kind")
    assert codes["no name"] == (400, "invalid_report_name")
    assert codes["bad schedule"] == (400, "invalid_schedule")
    assert codes["bad recipients"] == (400, "invalid_recipients")
    assert codes["no schedule"] == (404, "schedule_not_found")
    assert codes["viewer saves"][0] == 403
    assert codes["viewer exports"][0] == 403
    assert codes["no csrf"][0] == 403
    assert codes["nobody"][0] == 401


def test_the_ltv_endpoint_answers_a_token_and_refuses_bad_parameters(
    runtime: Runtime, api: Any
) -> None:
    token = {"Authorization": f"Bearer {runtime.settings.api_tokens[0]}"}

    empty = api.get("/v1/reports/ltv", headers=token)
    bad = api.get("/v1/reports/ltv?horizon_weeks=0", headers=token)
    typo = api.get("/v1/reports/ltv?horizon=52", headers=token)
    anonymous = api.get("/v1/reports/ltv")

    assert empty.status_code == 200
    assert empty.json()["customers"] == 0 and empty.json()["fitted"] is False
    assert (bad.status_code, bad.json()["code"]) == (400, "invalid_horizon_weeks")
    assert (typo.status_code, typo.json()["code"]) == (400, "unknown_parameter")
    assert anonymous.status_code == 401


def test_the_segment_and_compliance_kinds_build_for_readers_allowed_to_see_them(
    runtime: Runtime, people: dict[str, Principal]
) -> None:
    from c360.events.f1 import IngestContext, ParsedRequest, ingest
    from c360.events.model import encode
    from c360.segments import service
    from c360.stages import f2_persist, f3_resolve

    order = {
        "type": "track",
        "event": "Order Completed",
        "userId": "u-1",
        "messageId": "m-1",
        "timestamp": "2026-01-02T03:04:05Z",
        "properties": {"revenue": "80.00"},
    }
    ctx = IngestContext(source="web", received_at=datetime.now(UTC))
    result = ingest(ParsedRequest(events=[encode(order)]), ctx, runtime.settings, runtime.hooks)
    f2_persist.persist(runtime, [encode(event) for event in result.accepted])
    f3_resolve.resolve(runtime, runtime.bus.read_all(ID_RESOLUTION))
    analyst, marketer, admin = people["analyst"], people["marketer"], people["admin"]
    with runtime.pool.connection() as conn:
        segment = service.save(
            conn, analyst.actor, "Big", {"field": "revenue", "op": ">", "value": 50}
        )

    members = registry.build("segment", runtime, {"segment_id": segment["segment_id"]}, analyst)
    compliance = registry.build("compliance", runtime, {"since": "2026-01-01"}, admin)
    with pytest.raises(InputError) as not_allowed:
        registry.build("compliance", runtime, {}, marketer)
    with pytest.raises(InputError) as bad_id:
        registry.build("segment", runtime, {"segment_id": "one"}, analyst)

    assert members.title == "Segment: Big"
    (table,) = members.tables()
    assert [row[4] for row in table.rows] == [Decimal("80.00")]
    assert compliance.title == "Compliance report"
    assert "Compliance report" in _pdf_of(compliance)
    assert (not_allowed.value.code, not_allowed.value.status_code) == ("report_not_allowed", 403)
    assert bad_id.value.code == "invalid_report_params"


def _pdf_of(report: Report) -> str:
    from c360.reports.pdf import render_pdf

    reader = pypdf.PdfReader(io.BytesIO(render_pdf(report)))
    return "\n".join(page.extract_text() for page in reader.pages)


def test_the_scheduler_thread_sends_due_reports_until_stopped(
    runtime: Runtime, inbox: Inbox, people: dict[str, Principal]
) -> None:
    analyst = people["analyst"]
    with runtime.pool.connection() as conn:
        saved = save_report(conn, analyst, "Now", KIND, {})
        create_schedule(conn, analyst, saved.report_id, "daily", 7, ["a@example.com"], now=NOW)
    scheduler = ReportScheduler(runtime, interval_s=0.05)

    scheduler.start()
    try:
        for _ in range(400):  # the first pass runs at once; wait for it, 20 s at most
            if inbox.received:
                break
            threading.Event().wait(0.05)
    finally:
        scheduler.stop(timeout=10)

    assert not scheduler.is_alive()
    assert len(inbox.received) == 1  # sent once: the next slot is tomorrow


# Params checked when a report is saved, not when it is first rendered ---------------------


@pytest.mark.parametrize(
    ("kind", "params", "code"),
    [
        ("overview", {"date_from": "garbage"}, "invalid_date"),
        ("overview", {"colour": "red"}, "unknown_parameter"),
        ("ltv", {"horizon_weeks": 9999}, "invalid_horizon_weeks"),
        ("segment", {"segment_id": 99999}, "segment_not_found"),
        ("segment", {"segment_id": "one"}, "invalid_report_params"),
        ("rfm", {"as_of": "0000-01-01"}, "invalid_date"),
        ("cohorts", {"months": 3}, "unknown_parameter"),
        ("compliance", {"since": "2026-02-01", "until": "2026-01-01"}, "invalid_period"),
        ("compliance", {"since": "last week"}, "invalid_report_params"),
    ],
)
def test_a_report_whose_params_its_kind_refuses_is_not_saved(
    runtime: Runtime, api: Any, people: dict[str, Principal], kind: str, params: dict, code: str
) -> None:
    admin = _session(runtime, people["admin"])

    answer = api.post(
        "/v1/reports", json={"name": "bad", "kind": kind, "params": params}, headers=admin
    )

    assert answer.status_code in (400, 404), answer.text
    assert answer.json()["code"] == code and answer.json()["message"]
    with runtime.pool.connection() as conn:
        assert list_reports(conn, people["admin"]) == []


def test_good_params_of_each_built_in_kind_are_saved(
    runtime: Runtime, people: dict[str, Principal]
) -> None:
    admin = people["admin"]
    good = {
        "overview": {"date_from": "2026-01-01", "date_to": "2026-01-31", "granularity": "week"},
        "ltv": {"horizon_weeks": 26},
        "rfm": {"as_of": "2026-01-01"},
        "cohorts": {},
        "compliance": {"since": "2026-01-01", "until": "2026-02-01"},
    }
    with runtime.pool.connection() as conn:
        for kind, params in good.items():
            save_report(conn, admin, kind, kind, params)
        saved = sorted(report.kind for report in list_reports(conn, admin))

    assert saved == sorted(good)


def test_a_schedule_of_a_report_saved_with_bad_params_is_refused(
    runtime: Runtime, people: dict[str, Principal]
) -> None:
    admin = people["admin"]
    with runtime.pool.connection() as conn:
        report = save_report(conn, admin, "fine", "ltv", {})
        conn.execute(  # as saved before params were checked
            "UPDATE analytics.saved_reports SET params = %s WHERE report_id = %s",
            ('{"horizon_weeks": 9999}', report.report_id),
        )
        with pytest.raises(InputError) as refused:
            create_schedule(conn, admin, report.report_id, "daily", 7, ["a@example.com"])

    assert "horizon_weeks" in refused.value.message


def test_unknown_fields_in_report_share_and_schedule_bodies_are_refused_by_name(
    runtime: Runtime, api: Any, people: dict[str, Principal]
) -> None:
    analyst = _session(runtime, people["analyst"])
    made = api.post("/v1/reports", json={"name": "R", "kind": KIND}, headers=analyst).json()
    base = f"/v1/reports/{made['report_id']}"
    schedule = {"every": "daily", "at_hour": 6, "recipients": ["a@example.com"]}

    answers = [
        api.post("/v1/reports", json={"name": "R", "kind": KIND, "colour": 1}, headers=analyst),
        api.post(f"{base}/shares", json={"user": "vi", "role": "viewer"}, headers=analyst),
        api.post(f"{base}/schedules", json={**schedule, "format": "exe"}, headers=analyst),
    ]

    assert [a.status_code for a in answers] == [400, 400, 400]
    assert {a.json()["code"] for a in answers} == {"unknown_field"}
    assert [a.json()["message"].split(";")[0] for a in answers] == [
        "unknown field colour",
        "unknown field user",
        "unknown field format",
    ]
    with runtime.pool.connection() as conn:
        assert sharing.shares_of(conn, "report", made["report_id"]) == []
        assert list_schedules(conn, people["analyst"], made["report_id"]) == []
