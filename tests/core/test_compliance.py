"""The compliance report's numbers for a small store, each counted independently here."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from litestar import Litestar, Request, Response
from litestar.datastructures import State
from litestar.testing import TestClient

from c360.access import BUILT_IN_ROLES, Principal
from c360.api import governance
from c360.errors import InputError
from c360.events.f1 import IngestContext, ParsedRequest, ingest
from c360.events.model import encode
from c360.governance import attributes, compliance, deletions, f0, policies
from c360.stages import f2_persist, f3_resolve

UNTIL = datetime(2026, 3, 1, tzinfo=UTC)
SINCE = UNTIL - timedelta(days=1)


def run(runtime, *events: dict) -> None:
    ctx = IngestContext(source="web", received_at=UNTIL)
    result = ingest(
        ParsedRequest(events=[encode(e) for e in events]), ctx, runtime.settings, runtime.hooks
    )
    assert not result.rejected, result.rejected
    f2_persist.persist(runtime, [encode(event) for event in result.accepted])
    f3_resolve.resolve(runtime, [encode(["web", e.message_id]) for e in result.accepted])


def viewed(mid: str, user: str, ts: str, prefs: dict | None = None) -> dict:
    event = {"type": "track", "event": "Viewed", "messageId": mid, "userId": user, "timestamp": ts}
    if prefs is not None:
        event["context"] = {"consent": {"categoryPreferences": prefs}}
    return event


def test_the_report_counts_a_small_store(runtime):
    with runtime.pool.connection() as conn:
        attributes.create_definition(
            conn,
            "user:lan",
            {
                "name": "views",
                "type": "number",
                "source": "events",
                "event_names": ["Viewed"],
                "aggregation": "count",
                "retention_days": 30,
            },
        )
        policies.set_policies(conn, "user:lan", "analyst", {"email": True})
    f0.sync(runtime, "user:lan")
    run(
        runtime,
        viewed("m1", "u1", "2026-01-10T00:00:00Z", {"Advertising": True}),  # past retention
        viewed("m2", "u1", "2026-01-12T00:00:00Z"),  # past retention
        viewed("m3", "u2", "2026-02-20T00:00:00Z", {"Advertising": False}),
        viewed("m4", "u3", "2026-01-15T00:00:00Z", {"Email": True}),  # past retention
    )
    with runtime.pool.connection() as conn:
        request = deletions.request_deletion(conn, "user:dpo", "u3")
    deletions.run_deletion(runtime, request["request_id"], actor="user:dpo")
    with runtime.pool.connection() as conn:
        deletions.request_deletion(conn, "user:dpo", "u9")  # still waiting

    # the period holds today (the audit log's times are real); retention is judged at UNTIL
    report = compliance.compliance_report(
        runtime, SINCE, datetime.now(UTC) + timedelta(days=1), as_of=UNTIL
    )

    pii = {row["attribute"]: row["roles"] for row in report["pii"]}
    assert pii["email"] == ["admin", "analyst"]
    assert pii["phone"] == ["admin"]  # the analyst has pii:read but no policy for it
    assert report["consent"] == [
        {"purpose": "Advertising", "granted": 1, "denied": 1, "unknown": 0, "profiles": 2}
    ]
    (views,) = [row for row in report["retention"] if row["attribute"] == "views"]
    assert views["retention_days"] == 30
    assert views["events"] == 2  # u3's old event went with its deletion; u2's is recent
    assert views["profiles"] == 1  # u1, last seen 2026-01-12
    assert report["deletions"]["by_status"] == {"done": 1, "received": 1}
    actions = sorted({change["action"] for change in report["admin_changes"]})
    assert actions == [
        "attribute.activate",
        "attribute.create",
        "deletion.request",
        "deletion.run",
        "f0.sync",
        "policy.set",
    ]
    assert report["violations"]["total"] == 0


def test_the_report_renders_as_a_report_when_the_reports_package_exists(runtime):
    report = compliance.compliance_report_as_report(runtime, SINCE, UNTIL)
    if report is None:  # c360.reports is another part of the product, written separately
        return
    captions = [table.caption for table in report.tables()]
    assert "Personal data and who may see it" in captions
    assert "Consent coverage by purpose" in captions
    from c360.reports.csv_export import report_csv

    assert b"Personal data" in report_csv(report) or b"email" in report_csv(report)


def admin_client(runtime, who: Principal | None):
    """The governance routes behind a stand-in for the auth middleware (the guard and the
    role matrix are the accounts part's, tested there)."""

    def as_user(app):
        async def middleware(scope, receive, send):
            if who is not None:
                scope["user"] = who
            await app(scope, receive, send)

        return middleware

    def input_error(request: Request, exc: InputError) -> Response:
        return Response({"code": exc.code, "message": exc.message}, status_code=exc.status_code)

    return TestClient(
        app=Litestar(
            route_handlers=governance.route_handlers(),
            state=State({"runtime": runtime, "settings": runtime.settings}),
            middleware=[as_user],
            exception_handlers={InputError: input_error},
        )
    )


ADMIN = Principal(
    kind="user", name="root", role="admin", permissions=frozenset(BUILT_IN_ROLES["admin"])
)


def test_the_admin_api_changes_are_audited_and_errors_name_the_fix(runtime):
    run(runtime, viewed("m1", "u1", "2026-02-20T00:00:00Z", {"SMS": True}))
    spec = {"name": "views", "type": "number", "source": "events", "aggregation": "count"}
    with admin_client(runtime, ADMIN) as client:
        assert client.post("/v1/admin/attributes", json=spec).status_code == 201
        bad = client.post("/v1/admin/attributes", json={**spec, "name": "Views!"})
        assert (bad.status_code, bad.json()["code"]) == (400, "invalid_attribute_name")
        assert client.post("/v1/admin/attributes", content=b"{").json()["code"] == "invalid_json"
        changed = client.patch("/v1/admin/attributes/views", json={"owner": "growth"})
        assert changed.status_code == 200, changed.text
        assert changed.json()["version"] == 2
        missing = client.patch("/v1/admin/attributes/nope", json={"owner": "x"})
        assert (missing.status_code, missing.json()["code"]) == (404, "unknown_attribute")
        retired = client.post("/v1/admin/attributes/nope/retire")
        assert (retired.status_code, retired.json()["code"]) == (404, "unknown_attribute")
        names = [a["name"] for a in client.get("/v1/admin/attributes").json()["attributes"]]
        assert "views" in names and "email" in names

        synced = client.post("/v1/admin/f0/sync", json={"backfill": ["views"]})
        assert synced.status_code == 200 and synced.json()["outcome"] == "ok"
        assert synced.json()["steps"][2]["done"] == 1
        bad = client.post("/v1/admin/f0/sync", json={"backfill": "all"})
        assert bad.json()["code"] == "invalid_backfill"
        (listed,) = client.get("/v1/admin/f0/runs").json()["runs"]
        assert listed["trigger"] == "ui" and listed["actor"] == "user:root"
        assert client.get("/v1/admin/f0/runs?limit=0").json()["code"] == "invalid_limit"

        put = client.put("/v1/admin/policies/marketer", json={"email": True})
        assert put.json()["policies"][0]["attribute"] == "email"
        assert "*pii*" in client.get("/v1/admin/policies").json()["pii_attributes"]

        graph = client.get("/v1/admin/lineage").json()
        assert {"from": "source:web", "to": "event:Viewed", "count": 1} in graph["edges"]
        assert client.get("/v1/admin/lineage?format=dot").text.startswith("digraph")

        deleted = client.post("/v1/admin/deletions", json={"reference": "u1"})
        assert deleted.status_code == 201 and deleted.json()["status"] == "done"
        assert len(client.get("/v1/admin/deletions").json()["requests"]) == 1
        rerun = client.post(f"/v1/admin/deletions/{deleted.json()['request_id']}/run")
        assert rerun.json()["code"] == "deletion_not_runnable"

        report = client.get("/v1/admin/compliance").json()
        assert report["deletions"]["by_status"] == {"done": 1}
        # a typo or a second click finds nobody: said so, not reported as an erasure
        nobody = client.post("/v1/admin/deletions", json={"reference": "no-such@example.com"})
        assert nobody.status_code == 201 and nobody.json()["status"] == "not_found"
        again = client.post("/v1/admin/deletions", json={"reference": "u1"})
        assert again.json()["status"] == "not_found"
        report = client.get("/v1/admin/compliance").json()
        assert report["deletions"]["by_status"] == {"done": 1, "not_found": 2}
        stringly = client.post("/v1/admin/deletions", json={"reference": "u2", "run": "false"})
        assert stringly.status_code == 400 and stringly.json()["code"] == "invalid_run"
        bad = client.get("/v1/admin/compliance?since=2026-03-02&until=2026-03-01")
        assert bad.json()["code"] == "invalid_period"

        entries = client.get("/v1/admin/audit?action=attribute.").json()["entries"]
        assert [e["action"] for e in entries] == [
            "attribute.activate",
            "attribute.update",
            "attribute.create",
        ]
        assert all(e["actor"] == "user:root" for e in entries)
        csv = client.get("/v1/admin/audit?format=csv&actor=user:root")
        assert csv.headers["content-type"].startswith("text/csv")
        assert csv.text.splitlines()[0].startswith("audit_id,at,actor,action")
        assert "policy.set" in csv.text
        assert client.get("/v1/admin/audit?who=me").json()["code"] == "unknown_parameter"
        assert client.get("/v1/admin/audit?since=yesterday").json()["code"] == "invalid_since"
        assert client.get("/v1/admin/audit?offset=-1").json()["code"] == "invalid_offset"
        assert client.get("/v1/admin/audit?format=xml").json()["code"] == "invalid_format"
        listed = client.post("/v1/admin/attributes", json=[spec])
        assert listed.json()["code"] == "invalid_body"
        extra = client.post("/v1/admin/f0/sync", json={"backfill": True, "now": 1})
        assert extra.json()["code"] == "unknown_field"

    with admin_client(runtime, None) as client:
        refused = client.post("/v1/admin/attributes", json=spec)
        assert (refused.status_code, refused.json()["code"]) == (401, "not_signed_in")


def test_the_reports_heading_names_the_last_day_it_covers_not_the_excluded_end(runtime):
    # a period [12-01, 12-04) covers 12-01 to 12-03: the heading must not say 12-04
    report = compliance.compliance_report_as_report(
        runtime, datetime(2026, 12, 1, tzinfo=UTC), datetime(2026, 12, 4, tzinfo=UTC)
    )

    assert report.subtitle == "2026-12-01 to 2026-12-03"
