"""`GET /v1/analytics/...` over HTTP on the real engines: each endpoint answers what its service
function answers, money as exact JSON numbers; every route declares `analytics:read`; bad
parameters are 400s with a code and a message that says what to change; OpenAPI documents the
parameters."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from decimal import Decimal

import pytest
from litestar.testing import TestClient

from c360.adapters.bus import ID_RESOLUTION, RAW_EVENTS
from c360.analytics.cohorts import compute_cohorts
from c360.analytics.filters import Filters
from c360.analytics.rfm import compute_rfm, latest_order_day
from c360.api.analytics import route_handlers
from c360.api.app import create_app
from c360.events.model import encode
from c360.stages import f2_persist, f3_resolve, lake_sink

WEB = {"Authorization": "Basic " + base64.b64encode(b"test-write-key-1:").decode()}
TOKEN = {"Authorization": "Bearer test-api-token"}

AMOUNTS = ["13990.93", "0.10", "7", "1.01", "250.00", "19.99"]


@pytest.fixture
def api(runtime) -> Iterator[TestClient]:
    """The app as c360 serves it, with the analytics routes, signed in with the API token."""
    app = create_app(runtime.settings)
    with TestClient(app=app) as test_client:
        test_client.headers.update(TOKEN)
        yield test_client


def drain(runtime, topic, group, stage):
    while True:
        deliveries = runtime.bus.consume(topic, group, "test-worker", count=50, block_ms=10)
        if not deliveries:
            return
        for delivery in deliveries:
            stage(f"{delivery.stream}-{delivery.entry_id}".replace(":", "-"), delivery.payloads)
        runtime.bus.ack(group, deliveries)


@pytest.fixture
def loaded(api, runtime):
    events = [
        {
            "type": "track",
            "event": "Order Completed",
            "userId": f"u-{n % 4}",
            "messageId": f"o-{n}",
            "timestamp": f"2026-0{1 + n % 3}-{1 + n:02d}T09:30:00Z",
            "properties": {"revenue": amount},
        }
        for n, amount in enumerate(AMOUNTS)
    ]
    events.append({"type": "page", "userId": "u-9", "messageId": "p-1", "name": "Home"})
    answer = api.post("/v1/batch", json={"batch": events}, headers=WEB)
    assert answer.status_code == 200, answer.text
    drain(runtime, RAW_EVENTS, "f2", lambda _n, p: f2_persist.persist(runtime, p))
    drain(runtime, RAW_EVENTS, "lake", lambda name, p: lake_sink.sink(runtime, f"b-{name}", p))
    drain(runtime, ID_RESOLUTION, "f3", lambda _n, p: f3_resolve.resolve(runtime, p))
    return events


def exact_json(value) -> dict:
    return json.loads(encode(value), parse_float=Decimal)


def exact(response) -> dict:
    assert response.status_code == 200, response.text
    return json.loads(response.text, parse_float=Decimal)


def test_the_overview_answers_exact_money_over_http(api, loaded):
    body = exact(api.get("/v1/analytics/overview", params={"source": "web"}, headers=TOKEN))

    assert body["revenue_total"] == sum(map(Decimal, AMOUNTS))
    assert '"revenue_total":14269.03' in api.get("/v1/analytics/overview").text
    assert body["events_total"] == len(loaded)
    assert body["orders_total"] == len(AMOUNTS)
    assert body["active_customers"] == 5


def test_trends_rows_and_profiles_follow_their_parameters(api, loaded):
    trends = exact(api.get("/v1/analytics/trends?by=source&granularity=week"))
    rows = exact(api.get("/v1/analytics/rows?period=2026-01-01&event_type=Order%20Completed"))
    profiles = exact(api.get("/v1/analytics/profiles?metric=new_profiles&date_to=2026-01-31"))

    assert [s["key"] for s in trends["series"]] == ["web"]
    assert rows["total"] == 1 and rows["rows"][0]["revenue"] == Decimal("13990.93")
    january = {e["userId"] for e in loaded[:-1] if e["timestamp"].startswith("2026-01")}
    assert {p["user_id"] for p in profiles["profiles"]} == january


def test_rfm_cohorts_and_their_cells_match_the_service(api, runtime, loaded):
    grid = exact(api.get("/v1/analytics/rfm"))
    cohorts = exact(api.get("/v1/analytics/cohorts"))

    assert grid == exact_json(compute_rfm(runtime, latest_order_day(runtime)))
    assert grid["monetary_total"] == sum(map(Decimal, AMOUNTS))
    assert [c["cohort"] for c in cohorts["cohorts"]] == [
        c["cohort"] for c in compute_cohorts(runtime)["cohorts"]
    ]
    full = next(c for c in grid["cells"] if c["customers"])
    cell = exact(api.get(f"/v1/analytics/rfm/cells/{full['r']}/{full['f']}?limit=1"))
    assert cell["customers"] == full["customers"] and len(cell["profiles"]) == 1
    first = cohorts["cohorts"][0]
    members = exact(api.get(f"/v1/analytics/cohorts/{first['cohort']}/0"))
    assert members["total"] == first["size"]


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/v1/analytics/overview?date_from=2026-02-30", "invalid_date"),
        ("/v1/analytics/overview?date_from=2026-03-02&date_to=2026-03-01", "invalid_date_range"),
        ("/v1/analytics/overview?granularity=hour", "invalid_granularity"),
        ("/v1/analytics/overview?limit=5", "unknown_parameter"),
        ("/v1/analytics/trends?by=city", "invalid_breakdown"),
        ("/v1/analytics/rfm?as_of=soon", "invalid_date"),
        ("/v1/analytics/rfm?date_from=2026-01-01", "unknown_parameter"),
        ("/v1/analytics/rfm/cells/6/1", "invalid_score"),
        ("/v1/analytics/rfm/cells/1/1?limit=5000", "invalid_page"),
        ("/v1/analytics/rfm/cells/1/1?offset=x", "invalid_page"),
        ("/v1/analytics/cohorts?x=1", "unknown_parameter"),
        ("/v1/analytics/cohorts/1997-13/0", "invalid_cohort"),
        ("/v1/analytics/rows?period=monday", "invalid_date"),
        ("/v1/analytics/rows?by=source", "invalid_breakdown"),
        ("/v1/analytics/profiles?metric=revenue", "invalid_metric"),
    ],
)
def test_bad_parameters_are_400s_that_say_what_to_change(api, path, code):
    answer = api.get(path)

    assert answer.status_code == 400, answer.text
    assert answer.json()["code"] == code
    assert answer.json()["message"]


def test_a_score_that_is_not_a_number_is_a_400(api):
    assert api.get("/v1/analytics/rfm/cells/x/1").status_code in (400, 404)


def test_every_analytics_route_needs_analytics_read():
    for handler in route_handlers():
        assert handler.opt.get("permission") == "analytics:read", handler.paths


def test_openapi_documents_the_analytics_parameters(api):
    schema = api.get("/schema/openapi.json").json()

    overview = schema["paths"]["/v1/analytics/overview"]["get"]
    names = {p["name"]: p for p in overview["parameters"]}
    assert {"date_from", "date_to", "source", "event_type", "granularity"} <= set(names)
    assert "YYYY-MM-DD" in names["date_from"]["description"]
    assert "lake" in overview["description"]
    cell = schema["paths"]["/v1/analytics/rfm/cells/{r}/{f}"]["get"]
    assert {p["name"] for p in cell["parameters"]} >= {"r", "f", "limit", "offset", "as_of"}


def test_empty_stores_answer_zeros(api):
    body = exact(api.get("/v1/analytics/overview"))

    assert body["events_total"] == 0 and body["revenue_total"] == 0
    assert exact(api.get("/v1/analytics/rfm"))["customers"] == 0
    assert exact(api.get("/v1/analytics/cohorts"))["cohorts"] == []


def test_filters_narrow_the_overview(api, loaded):
    body = exact(api.get("/v1/analytics/overview?source=ios"))

    assert body["events_total"] == 0
    assert body["profiles_total"] == 5
    assert Filters().canonical()["sources"] == []


def test_new_profiles_follow_the_source_and_event_type_filters(api, loaded):
    everyone = exact(api.get("/v1/analytics/overview"))
    nowhere = exact(api.get("/v1/analytics/overview?source=nope"))
    web = exact(api.get("/v1/analytics/overview?source=web"))
    by_order = {"metric": "new_profiles", "event_type": "Order Completed"}
    ordered = exact(api.get("/v1/analytics/overview", params={"event_type": "Order Completed"}))
    drilled = exact(api.get("/v1/analytics/profiles", params=by_order))
    drilled_nowhere = exact(api.get("/v1/analytics/profiles?metric=new_profiles&source=nope"))

    buyers = {e["userId"] for e in loaded if e["type"] == "track"}
    assert everyone["new_profiles_total"] == len(buyers) + 1  # and u-9, who viewed a page
    assert nowhere["events_total"] == 0 and nowhere["new_profiles_total"] == 0
    assert web["new_profiles_total"] == everyone["new_profiles_total"]
    assert ordered["new_profiles_total"] == len(buyers)  # u-9's first event was a page view
    assert {p["user_id"] for p in drilled["profiles"]} == buyers
    assert drilled_nowhere["total"] == 0 and drilled_nowhere["profiles"] == []


def test_rfm_answers_echo_the_day_they_are_as_of(api, loaded):
    latest = max(e["timestamp"][:10] for e in loaded if e["type"] == "track")

    assert exact(api.get("/v1/analytics/rfm"))["as_of"] == latest
    assert exact(api.get("/v1/analytics/rfm/cells/1/1"))["as_of"] == latest
    assert exact(api.get("/v1/analytics/rfm?as_of=2026-02-01"))["as_of"] == "2026-02-01"
