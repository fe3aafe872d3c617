"""The segments JSON API and CSV export over HTTP, behind the accounts guard: previews with
exact money, saved segments, members, shares, permissions, every error path, and exports
whose rows are the segment's profiles with cells no spreadsheet runs as formulas and personal
data masked as the reader's role requires."""

from __future__ import annotations

import csv
import io
import itertools
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from c360 import audit, tokens
from c360.access import BUILT_IN_ROLES, Principal
from c360.adapters.bus import ID_RESOLUTION
from c360.events.f1 import IngestContext, ParsedRequest, ingest
from c360.events.model import encode
from c360.profile_service import get_profile
from c360.segments import service
from c360.segments.pii import PiiFilterRefused
from c360.stages import f2_persist, f3_resolve

_IDS = itertools.count(1)
WRITER = ["segments:read", "segments:write", "exports:create"]


def _order(user: str, revenue: str, **traits: str) -> dict:
    return {
        "type": "track",
        "event": "Order Completed",
        "userId": user,
        "messageId": f"m-{next(_IDS)}",
        "timestamp": "2026-11-02T03:04:05Z",
        "properties": {"revenue": Decimal(revenue)},
        "context": {"traits": traits},
    }


def _send(runtime, *events: dict) -> None:
    ctx = IngestContext(source="web", received_at=datetime.now(UTC))
    result = ingest(
        ParsedRequest(events=[encode(e) for e in events]), ctx, runtime.settings, runtime.hooks
    )
    assert not result.rejected
    f2_persist.persist(runtime, [encode(event) for event in result.accepted])
    f3_resolve.resolve(runtime, runtime.bus.read_all(ID_RESOLUTION))


@pytest.fixture
def api(runtime):
    """A client on the app with the segments routes, and a bearer header maker per scopes."""
    from litestar.testing import TestClient

    from c360.api.app import create_app

    def bearer(label: str, scopes: list[str]) -> dict[str, str]:
        with runtime.pool.connection() as conn:
            token, _ = tokens.create_token(conn, "user:root", label, scopes)
        return {"Authorization": f"Bearer {token}"}

    with TestClient(app=create_app(runtime.settings)) as client:
        client.bearer = bearer
        yield client


def _csv(body: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(body.decode("utf-8"))))


def test_a_preview_counts_with_exact_money_and_pages_the_profiles(runtime, api):
    _send(runtime, _order("u-1", "19.99"), _order("u-2", "20.00"), _order("u-3", "0.10"))
    reader = api.bearer("reader", ["segments:read"])
    spec = {"field": "revenue", "op": "=", "value": 19.99}
    answer = api.post("/v1/segments/preview", json={"spec": spec}, headers=reader)
    assert answer.status_code == 200
    assert answer.json()["count"] == 1
    assert answer.json()["profiles"][0]["profile_id"] == get_profile(runtime, "u-1")["profile_id"]

    spec = {"field": "revenue", "op": ">", "value": 0.1}
    page = api.post("/v1/segments/preview", json={"spec": spec, "limit": 1}, headers=reader)
    assert page.json()["count"] == 2
    assert [p["revenue"] for p in page.json()["profiles"]] == [20.0]


def test_a_saved_segment_goes_through_its_whole_life_over_http(runtime, api):
    _send(runtime, _order("u-1", "10"), _order("u-2", "99"))
    writer = api.bearer("writer", WRITER)
    made = api.post(
        "/v1/segments",
        json={"name": "Big", "spec": {"field": "revenue", "op": ">", "value": 50}},
        headers=writer,
    )
    assert made.status_code == 201, made.text
    segment = made.json()["segment_id"]
    assert made.json()["member_count"] == 1 and made.json()["owner"] == "token:writer"

    assert [s["name"] for s in api.get("/v1/segments", headers=writer).json()["segments"]] == [
        "Big"
    ]
    assert api.get(f"/v1/segments/{segment}", headers=writer).json()["shares"] == []
    members = api.get(f"/v1/segments/{segment}/members?limit=10", headers=writer).json()
    assert [p["profile_id"] for p in members["profiles"]] == [
        get_profile(runtime, "u-2")["profile_id"]
    ]

    changed = api.put(
        f"/v1/segments/{segment}",
        json={"spec": {"field": "revenue", "op": ">", "value": 5}},
        headers=writer,
    )
    assert changed.status_code == 200 and changed.json()["member_count"] == 2

    shared = api.post(f"/v1/segments/{segment}/shares", json={"role": "viewer"}, headers=writer)
    assert shared.status_code == 201 and shared.json()["role"] == "viewer"
    share_id = shared.json()["share_id"]
    assert (
        api.delete(f"/v1/segments/{segment}/shares/{share_id}", headers=writer).status_code == 204
    )

    assert api.delete(f"/v1/segments/{segment}", headers=writer).status_code == 204
    assert api.get(f"/v1/segments/{segment}", headers=writer).status_code == 404
    with runtime.pool.connection() as conn:
        actions = {e.action for e in audit.entries(conn, action_prefix="segment.")}
    assert actions == {
        "segment.create",
        "segment.update",
        "segment.share",
        "segment.unshare",
        "segment.delete",
    }


def test_routes_need_their_permission(runtime, api):
    reader = api.bearer("reader", ["segments:read"])
    body = {"name": "x", "spec": {"all": []}}
    assert api.post("/v1/segments", json=body, headers=reader).status_code == 403
    assert api.post("/v1/segments/preview", json={"spec": {"all": []}}).status_code == 401
    writer = api.bearer("writer", ["segments:read", "segments:write"])
    segment = api.post("/v1/segments", json=body, headers=writer).json()["segment_id"]
    assert api.get(f"/v1/segments/{segment}/export.csv", headers=writer).status_code == 403
    # another writer can neither see nor change it until it is shared
    other = api.bearer("other", WRITER)
    assert api.get(f"/v1/segments/{segment}", headers=other).status_code == 404
    assert api.delete(f"/v1/segments/{segment}", headers=other).status_code == 404


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("post", "/v1/segments/preview", {"spec": {"field": "x"}}, 400, "segment_unknown_field"),
        ("post", "/v1/segments/preview", {"spec": {"colour": 1}}, 400, "segment_unknown_key"),
        (
            "post",
            "/v1/segments/preview",
            {"spec": {"field": "revenue", "op": "like", "value": 1}},
            400,
            "segment_invalid_op",
        ),
        ("post", "/v1/segments/preview", {"spec": {"all": []}, "limit": 0}, 400, "invalid_page"),
        ("post", "/v1/segments/preview", {"spec": {"all": []}, "limit": "x"}, 400, "invalid_page"),
        ("post", "/v1/segments/preview", {"filter": {}}, 400, "unknown_field"),
        ("post", "/v1/segments/preview", {}, 400, "missing_key"),
        ("post", "/v1/segments/preview", [1], 400, "invalid_body"),
        ("post", "/v1/segments", {"name": "", "spec": {"all": []}}, 400, "invalid_segment_name"),
        ("get", "/v1/segments/999999", None, 404, "segment_not_found"),
        ("get", "/v1/segments/999999/members", None, 404, "segment_not_found"),
        ("get", "/v1/segments/999999/export.csv", None, 404, "segment_not_found"),
        ("put", "/v1/segments/999999", {"name": "y"}, 404, "segment_not_found"),
        ("post", "/v1/segments/999999/shares", {"role": "viewer"}, 404, "segment_not_found"),
    ],
)
def test_each_error_is_json_with_a_code(runtime, api, method, path, body, status, code):
    writer = api.bearer("writer", WRITER)
    kwargs = {"headers": writer} | ({} if body is None else {"json": body})
    answer = getattr(api, method)(path, **kwargs)
    assert answer.status_code == status, answer.text
    assert answer.json()["code"] == code and answer.json()["message"]


def test_invalid_json_and_bad_queries_are_refused(runtime, api):
    writer = api.bearer("writer", WRITER)
    answer = api.post("/v1/segments/preview", content=b"{nope", headers=writer)
    assert answer.status_code == 400 and answer.json()["code"] == "invalid_json"
    segment = api.post("/v1/segments", json={"name": "a", "spec": {"all": []}}, headers=writer)
    segment_id = segment.json()["segment_id"]
    again = api.post("/v1/segments", json={"name": "a", "spec": {"all": []}}, headers=writer)
    assert again.status_code == 409 and again.json()["code"] == "segment_name_taken"
    answer = api.get(f"/v1/segments/{segment_id}/members?page=2", headers=writer)
    assert answer.status_code == 400 and answer.json()["code"] == "unknown_parameter"
    answer = api.post(f"/v1/segments/{segment_id}/shares", json={"role": "nobody"}, headers=writer)
    assert answer.status_code == 400 and answer.json()["code"] == "share_unknown_role"
    answer = api.delete(f"/v1/segments/{segment_id}/shares/12345", headers=writer)
    assert answer.status_code == 404 and answer.json()["code"] == "share_not_found"


FORMULAS = ["=1+2", "+33 trick", "-2-3", "@SUM(A1)"]


def test_an_export_has_one_row_per_member_with_formula_safe_cells(runtime, api):
    _send(runtime, *[_order(user, "5.5") for user in FORMULAS], _order("plain", "1.25"))
    writer = api.bearer("writer", WRITER)
    spec = {"event": "Order Completed"}
    segment = api.post("/v1/segments", json={"name": "All", "spec": spec}, headers=writer).json()

    saved = api.get(f"/v1/segments/{segment['segment_id']}/export.csv", headers=writer)
    unsaved = api.post("/v1/segments/export.csv", json={"spec": spec}, headers=writer)
    assert saved.status_code == unsaved.status_code == 200
    assert saved.headers["content-type"].startswith("text/csv")
    assert "attachment" in saved.headers["content-disposition"]
    assert saved.content == unsaved.content

    rows = _csv(saved.content)
    assert list(rows[0])[:3] == ["profile_id", "user_id", "email"]
    ids = {get_profile(runtime, user)["profile_id"] for user in [*FORMULAS, "plain"]}
    assert {row["profile_id"] for row in rows} == ids
    assert {row["user_id"] for row in rows} == {"***"}  # a token without pii:read: masked

    # read by an admin, who sees the ids: cells a spreadsheet would run are quoted
    as_admin = b"".join(service.export_csv(runtime, segment["segment_id"], _user("admin")))
    by_user = {row["user_id"]: row for row in _csv(as_admin)}
    assert set(by_user) == {"'" + user for user in FORMULAS} | {"plain"}
    assert by_user["plain"]["revenue"] == "1.25" and by_user["'=1+2"]["revenue"] == "5.5"
    assert by_user["plain"]["profile_id"] == get_profile(runtime, "plain")["profile_id"]
    cells = [cell for row in by_user.values() for cell in row.values()]
    assert all(not cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in cells)


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ("=cmd", "'=cmd"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("-", "'-"),
        ("ok=1", "ok=1"),
        (Decimal("-1.50"), "-1.50"),
        (None, ""),
        ({"a": "=b"}, '{"a":"=b"}'),
    ],
)
def test_a_csv_cell_never_starts_a_formula(value, cell):
    assert service.csv_cell(value) == cell


def _user(role: str) -> Principal:
    return Principal("user", role, role, frozenset(BUILT_IN_ROLES[role]), user_id=1)


def test_an_export_masks_personal_data_for_a_role_without_pii_read(runtime):
    _send(runtime, _order("u-1", "3", email="lan@example.vn"))
    spec = {"identifier": "email", "op": "exists"}
    for_admin = b"".join(service.export_csv(runtime, spec, _user("admin")))
    for_marketer = b"".join(service.export_csv(runtime, spec, _user("marketer")))
    assert _csv(for_admin)[0]["email"] == "lan@example.vn"
    marketer_row = _csv(for_marketer)[0]
    assert marketer_row["email"] != "lan@example.vn" and "lan@" not in for_marketer.decode()
    assert marketer_row["profile_id"] == get_profile(runtime, "u-1")["profile_id"]
    with runtime.pool.connection() as conn:
        reads = audit.entries(conn, action_prefix="pii.read")
    assert [(e.actor, e.target) for e in reads] == [("user:admin", "export:segment-preview")]


@pytest.mark.parametrize(
    ("spec", "refused"),
    [
        ({"identifier": "email", "op": "=", "value": "lan@example.vn"}, True),
        ({"not": {"identifier": "phone", "op": "contains", "value": "678"}}, True),
        ({"trait": "firstName", "op": "contains", "value": "L"}, True),
        ({"identifier": "email", "op": "exists"}, False),
        ({"trait": "name", "op": "exists"}, False),
        ({"trait": "plan", "op": "=", "value": "gold"}, False),
    ],
)
def test_a_role_that_cannot_see_personal_data_cannot_filter_on_its_values(runtime, spec, refused):
    _send(runtime, _order("u-1", "3", email="lan@example.vn", firstName="Lan"))
    assert service.count(runtime, spec, _user("admin")) in (0, 1)
    if not refused:
        assert service.count(runtime, spec, _user("marketer")) in (0, 1)
        return
    with pytest.raises(PiiFilterRefused) as caught:
        service.preview(runtime, spec, principal=_user("marketer"))
    assert caught.value.status_code == 403 and "op exists" in caught.value.message
    with runtime.pool.connection() as conn, pytest.raises(PiiFilterRefused):
        service.save(conn, "user:marketer", "peek", spec, principal=_user("marketer"))


def test_a_pii_filter_over_http_is_a_403_with_its_code(runtime, api):
    reader = api.bearer("reader", ["segments:read"])
    spec = {"identifier": "email", "op": "=", "value": "lan@example.vn"}
    answer = api.post("/v1/segments/preview", json={"spec": spec}, headers=reader)
    assert answer.status_code == 403 and answer.json()["code"] == "pii_filter_forbidden"
