"""Tracking plans enforced by the real gateway: `flag` keeps an event with a warning, `dlq`
sends it to c360-dlq; violations are counted per source, event and day in Valkey."""

from __future__ import annotations

import base64
from datetime import UTC, date, datetime, timedelta

import pytest

from c360 import audit
from c360.adapters.bus import DLQ, RAW_EVENTS
from c360.errors import InputError
from c360.events.model import decode_any, decode_event
from c360.governance import tracking_plans
from c360.governance.keyring import VERSION_CHECK_S, Keyring

WRITE_KEY = "test-write-key-1"  # source "web"
OTHER_WRITE_KEY = "test-write-key-2"  # source "ios"
ACTOR = "user:lan"

ORDER_SCHEMA = {
    "type": "object",
    "properties": {"price": {"type": "number"}},
    "required": ["price"],
}
PRICE_NOT_A_NUMBER = (
    "tracking_plan: 'Order Completed' v1: properties.price: 'abc' is not of type 'number'"
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(client) -> FakeClock:
    fake = FakeClock()
    state = client.app.state
    state["keyring"] = Keyring(state.runtime, state.valkey, clock=fake)
    return fake


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def order(message_id: str, price: object) -> dict:
    return {
        "type": "track",
        "userId": "u-1",
        "event": "Order Completed",
        "messageId": message_id,
        "properties": {"price": price},
    }


def post_batch(client, events: list[dict], key: str = WRITE_KEY):
    response = client.post("/v1/batch", json={"batch": events}, headers=basic(key))
    assert response.status_code == 200, response.text
    return response.json()


def today() -> date:
    return datetime.now(UTC).date()


def test_a_flag_plan_keeps_a_violating_event_with_a_warning(client, runtime, clock):
    tracking_plans.save_plan(runtime, "web", "Order Completed", ORDER_SCHEMA, "flag", ACTOR)

    answer = post_batch(client, [order("m-good", 12.5), order("m-bad", "abc")])

    assert (answer["accepted"], answer["rejected"]) == (2, 0)
    assert answer["warnings"] == [{"index": 1, "messageId": "m-bad", "message": PRICE_NOT_A_NUMBER}]
    stored = {e.message_id: e.warnings for e in map(decode_event, runtime.bus.read_all(RAW_EVENTS))}
    assert stored == {"m-good": [], "m-bad": [PRICE_NOT_A_NUMBER]}
    rows = tracking_plans.violations(runtime, today(), today())
    assert [(r.source, r.event, r.day, r.count, r.action, r.last_message) for r in rows] == [
        ("web", "Order Completed", today(), 1, "flag", PRICE_NOT_A_NUMBER)
    ]


def test_a_dlq_plan_sends_a_violating_event_to_the_dead_letter_topic(client, runtime, clock):
    tracking_plans.save_plan(runtime, "web", "Order Completed", ORDER_SCHEMA, "dlq", ACTOR)
    missing_price = {**order("m-none", 1), "properties": {}}

    answer = post_batch(client, [order("m-bad", "abc"), order("m-good", 3), missing_price])

    assert (answer["accepted"], answer["rejected"]) == (1, 2)
    assert answer["errors"] == [
        {
            "index": 0,
            "messageId": "m-bad",
            "code": "tracking_plan_violation",
            "message": PRICE_NOT_A_NUMBER,
        },
        {
            "index": 2,
            "messageId": "m-none",
            "code": "tracking_plan_violation",
            "message": "tracking_plan: 'Order Completed' v1: properties: "
            "'price' is a required property",
        },
    ]
    assert [e.message_id for e in map(decode_event, runtime.bus.read_all(RAW_EVENTS))] == ["m-good"]
    dead = sorted(map(decode_any, runtime.bus.read_all(DLQ)), key=lambda d: d["messageId"])
    assert [(d["messageId"], d["code"], d["source"]) for d in dead] == [
        ("m-bad", "tracking_plan_violation", "web"),
        ("m-none", "tracking_plan_violation", "web"),
    ]
    assert decode_any(dead[0]["payload"].encode())["properties"] == {"price": "abc"}
    [row] = tracking_plans.violations(runtime, today(), today())
    assert (row.count, row.action) == (2, "dlq")
    samples = tracking_plans.violation_samples(runtime, "web", "Order Completed")
    assert [s["messageId"] for s in samples] == ["m-none", "m-bad"]


def test_a_plan_binds_only_its_own_source_and_event(client, runtime, clock):
    tracking_plans.save_plan(runtime, "web", "Order Completed", ORDER_SCHEMA, "dlq", ACTOR)
    other_event = {**order("m-other", "abc"), "event": "Cart Viewed"}

    answer_web = post_batch(client, [other_event])
    answer_ios = post_batch(client, [order("m-ios", "abc")], key=OTHER_WRITE_KEY)

    assert answer_web["accepted"] == answer_ios["accepted"] == 1
    assert answer_web["warnings"] == answer_ios["warnings"] == []
    assert tracking_plans.violations(runtime, today(), today()) == []


def test_an_identify_plan_checks_traits(client, runtime, clock):
    schema = {"type": "object", "properties": {"email": {"type": "string", "format": "email"}}}
    tracking_plans.save_plan(runtime, "web", "identify", schema, "flag", ACTOR)
    events = [
        {"type": "identify", "userId": "u-1", "messageId": "m-1", "traits": {"email": "a@b.vn"}},
        {"type": "identify", "userId": "u-2", "messageId": "m-2", "traits": {"email": "nope"}},
    ]

    answer = post_batch(client, events)

    assert [w["index"] for w in answer["warnings"]] == [1]
    assert answer["warnings"][0]["message"] == (
        "tracking_plan: 'identify' v1: traits.email: 'nope' is not a 'email'"
    )


def test_a_single_event_endpoint_answers_400_for_a_dlq_violation(client, runtime, clock):
    tracking_plans.save_plan(runtime, "web", "Order Completed", ORDER_SCHEMA, "dlq", ACTOR)
    body = {k: v for k, v in order("m-1", "abc").items() if k != "type"}

    response = client.post("/v1/track", json=body, headers=basic(WRITE_KEY))

    assert response.status_code == 400
    assert response.json() == {"code": "tracking_plan_violation", "message": PRICE_NOT_A_NUMBER}


def test_a_relaxed_plan_takes_effect_within_the_version_check_interval(client, runtime, clock):
    tracking_plans.save_plan(runtime, "web", "Order Completed", ORDER_SCHEMA, "dlq", ACTOR)
    assert post_batch(client, [order("m-1", "abc")])["rejected"] == 1

    tracking_plans.save_plan(runtime, "web", "Order Completed", {"type": "object"}, "dlq", ACTOR)
    clock.now += VERSION_CHECK_S

    assert post_batch(client, [order("m-2", "abc")])["accepted"] == 1


def test_each_change_is_a_new_version_and_audited(runtime):
    first = tracking_plans.save_plan(runtime, "web", "Signed Up", {"type": "object"}, "flag", ACTOR)
    second = tracking_plans.save_plan(runtime, "web", "Signed Up", ORDER_SCHEMA, "dlq", "user:minh")
    off = tracking_plans.save_plan(runtime, "web", "Signed Up", ORDER_SCHEMA, "dlq", ACTOR, False)

    history = tracking_plans.plan_history(runtime, "web", "Signed Up")
    assert [(p.version, p.action, p.active) for p in history] == [
        (3, "dlq", False),
        (2, "dlq", False),
        (1, "flag", False),
    ]
    assert (first.version, second.version, off.version) == (1, 2, 3)
    assert tracking_plans.list_plans(runtime) == []
    with runtime.pool.connection() as conn:
        entries = list(reversed(audit.entries(conn, action_prefix="tracking_plan.")))
    assert [(e.actor, e.target) for e in entries] == [
        (ACTOR, "tracking_plan:web/Signed Up"),
        ("user:minh", "tracking_plan:web/Signed Up"),
        (ACTOR, "tracking_plan:web/Signed Up"),
    ]
    assert entries[0].before is None
    assert entries[1].before["version"] == 1 and entries[1].after["schema"] == ORDER_SCHEMA
    assert entries[2].after["active"] is False


@pytest.mark.parametrize(
    "schema, action, code, words",
    [
        ({"type": "objekt"}, "flag", "invalid_schema", "'objekt' is not valid"),
        ({"required": "price"}, "flag", "invalid_schema", "'price' is not of type 'array'"),
        ([1, 2], "flag", "invalid_schema", "got list"),
        ({"type": "object"}, "drop", "invalid_action", "`flag` or `dlq`"),
    ],
)
def test_a_bad_plan_is_refused_with_a_message_naming_the_problem(
    runtime, schema, action, code, words
):
    with pytest.raises(InputError) as caught:
        tracking_plans.save_plan(runtime, "web", "Order Completed", schema, action, ACTOR)

    assert caught.value.code == code
    assert words in caught.value.message
    with pytest.raises(InputError):
        tracking_plans.plan_history(runtime, "web", "Order Completed")


def test_a_violation_window_must_be_ordered(runtime):
    with pytest.raises(InputError) as backwards:
        tracking_plans.violations(runtime, today(), today() - timedelta(days=1))

    assert backwards.value.code == "invalid_window" and backwards.value.message


def test_a_long_violation_window_reads_the_days_kept(client, runtime, clock):
    tracking_plans.save_plan(runtime, "web", "Order Completed", ORDER_SCHEMA, "flag", ACTOR)
    post_batch(client, [order("m-bad", "abc")])

    rows = tracking_plans.violations(
        runtime, today() - timedelta(days=5000), today() + timedelta(days=5000)
    )

    assert [(r.day, r.count) for r in rows] == [(today(), 1)]


@pytest.fixture
def api(runtime):
    """The app with this part's endpoints, a scoped token allowed to use them."""
    from litestar.testing import TestClient

    from c360 import tokens
    from c360.api.app import create_app

    scopes = ["governance:read", "governance:write"]
    with runtime.pool.connection() as conn:
        token, _record = tokens.create_token(conn, "user:root", "ops", scopes)
    with TestClient(app=create_app(runtime.settings)) as test_client:
        test_client.headers["Authorization"] = f"Bearer {token}"
        yield test_client


def test_the_plan_endpoints_save_read_and_count(api, runtime):
    saved = api.put(
        "/v1/admin/tracking-plans/web/Order Completed",
        json={"schema": ORDER_SCHEMA, "action": "flag"},
    )
    assert saved.status_code == 200, saved.text
    assert saved.json()["version"] == 1

    post_batch(api, [order("m-bad", "abc")])

    listed = api.get("/v1/admin/tracking-plans").json()["plans"]
    assert [(p["source"], p["event"], p["version"]) for p in listed] == [
        ("web", "Order Completed", 1)
    ]
    one = api.get("/v1/admin/tracking-plans/web/Order Completed").json()
    assert one["plan"]["schema"] == ORDER_SCHEMA
    assert [s["messageId"] for s in one["recent_violations"]] == ["m-bad"]
    counted = api.get("/v1/admin/violations").json()["violations"]
    assert [(v["source"], v["event"], v["day"], v["count"]) for v in counted] == [
        ("web", "Order Completed", today().isoformat(), 1)
    ]
    with runtime.pool.connection() as conn:
        assert [e.actor for e in audit.entries(conn, action_prefix="tracking_plan.")] == [
            "token:ops"
        ]


@pytest.mark.parametrize(
    "method, path, body, status, code",
    [
        ("put", "/v1/admin/tracking-plans/web/E", {"schema": {"type": 5}}, 400, "invalid_schema"),
        ("put", "/v1/admin/tracking-plans/web/E", {"action": "flag"}, 400, "missing_schema"),
        ("put", "/v1/admin/tracking-plans/web/E", {"schema": {}, "x": 1}, 400, "unknown_field"),
        (
            "put",
            "/v1/admin/tracking-plans/web/E",
            {"schema": {}, "active": 1},
            400,
            "invalid_active",
        ),
        ("get", "/v1/admin/tracking-plans/web/None", None, 404, "unknown_plan"),
        ("get", "/v1/admin/violations?since=yesterday", None, 400, "invalid_since"),
    ],
)
def test_a_bad_plan_request_is_answered_with_its_code(api, method, path, body, status, code):
    kwargs = {"json": body} if body is not None else {}

    response = getattr(api, method)(path, **kwargs)

    assert response.status_code == status, response.text
    assert response.json()["code"] == code


def test_a_violation_window_may_be_given_as_utc_datetimes(client, runtime, clock):
    tracking_plans.save_plan(runtime, "web", "Order Completed", ORDER_SCHEMA, "flag", ACTOR)
    post_batch(client, [order("m-bad", "abc")])
    start = datetime.combine(today(), datetime.min.time(), UTC)

    rows = tracking_plans.violations(runtime, start, start + timedelta(hours=23))
    before = tracking_plans.violations(
        runtime, start - timedelta(days=3), start - timedelta(hours=1)
    )

    assert [(r.day, r.count) for r in rows] == [(today(), 1)]
    assert before == []


def test_the_plan_cache_of_the_f1_actor_applies_plans_by_the_same_rule(runtime):
    from c360.events.f1 import IngestContext, ParsedRequest, ingest
    from c360.events.model import encode
    from c360.governance.keyring import PlanCache

    clock = FakeClock()
    cache = PlanCache(runtime, clock=clock)
    ctx = IngestContext(source="crm", received_at=datetime.now(UTC))
    parsed = ParsedRequest(events=[encode(order("m-1", "abc"))])
    assert cache.checker("crm") is None

    tracking_plans.save_plan(runtime, "crm", "Order Completed", ORDER_SCHEMA, "dlq", ACTOR)
    unchanged = cache.checker("crm")
    clock.now += VERSION_CHECK_S
    check = cache.checker("crm")
    result = ingest(parsed, ctx, runtime.settings, runtime.hooks, check)

    assert unchanged is None
    assert [(r.code, r.reason) for r in result.rejected] == [
        ("tracking_plan_violation", PRICE_NOT_A_NUMBER)
    ]
    assert [(h.source, h.event, h.action) for h in check.hits] == [
        ("crm", "Order Completed", "dlq")
    ]
