"""A tracking plan cannot hurt the gateway: patterns run on RE2, references never leave the
schema, a schema's size and depth are bounded, and a plan that fails on an event is that
event's violation, never a 500."""

from __future__ import annotations

import base64
import json
import logging
import urllib.request
from datetime import UTC, datetime

import pytest
from psycopg.types.json import Jsonb

from c360.errors import InputError
from c360.events.model import Event
from c360.governance import sources, tracking_plans
from c360.governance.keyring import Keyring

WRITE_KEY = "test-write-key-1"  # source "web"
ACTOR = "user:lan"

#: The breaker's inputs, verbatim: a pattern Python's `re` takes exponential time on...
REDOS_SCHEMA = {"type": "object", "properties": {"s": {"type": "string", "pattern": "^(a+)+$"}}}
#: ...and the value that froze the gateway.
REDOS_VALUE = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!"

#: A local address nothing listens on: a fetch would be refused, but none must be tried.
NOWHERE = "http://127.0.0.1:9/evil.json"


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


@pytest.fixture
def no_fetch(monkeypatch):
    """Fail the test if anything opens a URL."""

    def refuse(*args, **kwargs):
        pytest.fail(f"a tracking plan fetched {args[0] if args else kwargs!r}")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


@pytest.fixture
def api(runtime):
    """The app with a token allowed to manage plans, and a fake clock under its keyring."""
    from litestar.testing import TestClient

    from c360 import tokens
    from c360.api.app import create_app

    scopes = ["governance:read", "governance:write", "sources:write"]
    with runtime.pool.connection() as conn:
        token, _record = tokens.create_token(conn, "user:root", "ops", scopes)
    app = create_app(runtime.settings)
    with TestClient(app=app) as test_client:
        state = app.state
        state["keyring"] = Keyring(state.runtime, state.valkey, clock=FakeClock())
        test_client.headers["Authorization"] = f"Bearer {token}"
        yield test_client


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def track(client, event: str, properties: dict, message_id: str = "m-1"):
    body = {"userId": "pu", "event": event, "properties": properties, "messageId": message_id}
    return client.post("/v1/track", json=body, headers=basic(WRITE_KEY))


def batch(client, event: str, documents: list[dict]) -> dict:
    events = [
        {"type": "track", "userId": "pu", "event": event, "messageId": f"m-{i}", "properties": p}
        for i, p in enumerate(documents)
    ]
    response = client.post("/v1/batch", json={"batch": events}, headers=basic(WRITE_KEY))
    assert response.status_code == 200, response.text
    return response.json()


def store_unchecked(runtime, event: str, schema: object, action: str = "dlq") -> None:
    """Store a plan as an older release could have, past today's checks."""
    with runtime.pool.connection() as conn:
        conn.execute(
            "INSERT INTO governance.tracking_plans"
            " (source, event, version, schema, action, active, created_by)"
            " VALUES ('web', %s, 1, %s, %s, true, %s)",
            (event, Jsonb(schema), action, ACTOR),
        )
    sources.bump_version(runtime.valkey)


def test_the_breakers_redos_pattern_is_a_quick_violation(api, no_fetch):
    saved = api.put(
        "/v1/admin/tracking-plans/web/PT%20redos", json={"schema": REDOS_SCHEMA, "action": "dlq"}
    )
    assert saved.status_code == 200, saved.text

    refused = track(api, "PT redos", {"s": REDOS_VALUE})
    kept = track(api, "PT redos", {"s": "aaaa"}, message_id="m-2")

    assert refused.status_code == 400, refused.text
    assert refused.json() == {
        "code": "tracking_plan_violation",
        "message": "tracking_plan: 'PT redos' v1: properties.s: "
        f"'{REDOS_VALUE}' does not match '^(a+)+$'",
    }
    assert kept.status_code == 200, kept.text


@pytest.mark.parametrize("pattern", ["^(a+)+$", "^(a|aa)+$"])
def test_backtracking_patterns_in_pattern_properties_run_in_linear_time(
    client, runtime, clock, pattern
):
    schema = {"type": "object", "patternProperties": {pattern: {"type": "integer"}}}
    schema["additionalProperties"] = False
    tracking_plans.save_plan(runtime, "web", "E", schema, "flag", ACTOR)
    name = "a" * 60 + "!"

    answer = batch(client, "E", [{name: 1}, {"aaa": "x"}, {"aa": 2}])

    assert [w["messageId"] for w in answer["warnings"]] == ["m-0", "m-1"]
    assert answer["warnings"][0]["message"].endswith(
        f"'{name}' does not match any of the regexes: '{pattern}'"
    )
    assert answer["warnings"][1]["message"].endswith("properties.aaa: 'x' is not of type 'integer'")


def test_a_regex_format_is_checked_by_re2_not_python(client, runtime, clock):
    schema = {"type": "object", "properties": {"r": {"type": "string", "format": "regex"}}}
    tracking_plans.save_plan(runtime, "web", "E", schema, "flag", ACTOR)

    backreference = "(a)\\1"
    answer = batch(client, "E", [{"r": backreference}, {"r": "^(a+)+$"}])

    # a backreference is a valid Python regex but not an RE2 one: no Python regex runs here
    assert [(w["messageId"], w["message"]) for w in answer["warnings"]] == [
        ("m-0", f"tracking_plan: 'E' v1: properties.r: {backreference!r} is not a 'regex'")
    ]


@pytest.mark.parametrize(
    "schema, code, words",
    [
        (
            {"type": "object", "properties": {"s": {"type": "string", "pattern": "(a)\\1"}}},
            "unsupported_pattern",
            "the pattern '(a)\\\\1' is not valid RE2 syntax",
        ),
        (
            {"type": "object", "patternProperties": {"^(?=x)": {}}},
            "unsupported_pattern",
            "'^(?=x)' is not valid RE2 syntax",
        ),
        (
            {"allOf": [{"patternProperties": {"^x": {}}}], "unevaluatedProperties": False},
            "unsupported_schema",
            "use `additionalProperties`",
        ),
        ({"$ref": NOWHERE}, "unresolvable_reference", f"the reference {NOWHERE!r}"),
        (
            {"type": "object", "properties": {"x": {"$ref": "https://example.com/s.json"}}},
            "unresolvable_reference",
            "'https://example.com/s.json' does not point inside the schema",
        ),
        (
            {"$id": "http://127.0.0.1:9/", "$ref": "other.json"},
            "unresolvable_reference",
            "the reference 'other.json'",
        ),
        ({"$ref": "#/$defs/missing"}, "unresolvable_reference", "'#/$defs/missing'"),
        (
            {"properties": {"a": {"type": "string"}, "b": {"$ref": "#/properties/a/type"}}},
            "unresolvable_reference",
            "points at a value that is not a schema",
        ),
        (
            {"$ref": "#/$defs/a", "$defs": {"a": {"$ref": "#/$defs/a"}}},
            "cyclic_reference",
            "loop back",
        ),
        (
            {"$defs": {"a": {"allOf": [{"$ref": "#/$defs/b"}]}, "b": {"$ref": "#/$defs/a"}}},
            "cyclic_reference",
            "loop back",
        ),
        ({"type": "object", "$ref": "#"}, "cyclic_reference", "loop back"),
    ],
)
def test_a_schema_that_could_hang_or_fetch_is_refused_when_saved(
    runtime, no_fetch, schema, code, words
):
    with pytest.raises(InputError) as caught:
        tracking_plans.save_plan(runtime, "web", "E", schema, "dlq", ACTOR)

    assert caught.value.code == code
    assert words in caught.value.message
    with pytest.raises(InputError):
        tracking_plans.plan_history(runtime, "web", "E")


def test_properties_named_like_keywords_are_not_read_as_keywords(runtime):
    schema = {
        "type": "object",
        "properties": {"pattern": {"type": "string"}, "$ref": {"type": "integer"}},
        "enum": [{"pattern": "(a)\\1", "$ref": NOWHERE}],
    }

    saved = tracking_plans.save_plan(runtime, "web", "E", schema, "flag", ACTOR)

    assert saved.version == 1


def test_references_inside_the_schema_work_even_recursively(client, runtime, clock, no_fetch):
    schema = {
        "$id": "http://127.0.0.1:9/tree.json",
        "type": "object",
        "properties": {"label": {"$ref": "#/$defs/label"}, "child": {"$ref": "#"}},
        "$defs": {"label": {"type": "string"}},
    }
    tracking_plans.save_plan(runtime, "web", "E", schema, "flag", ACTOR)

    answer = batch(client, "E", [{"label": "a", "child": {"label": "b"}}, {"child": {"label": 3}}])

    assert [(w["messageId"], w["message"]) for w in answer["warnings"]] == [
        ("m-1", "tracking_plan: 'E' v1: properties.child.label: 3 is not of type 'string'")
    ]


def test_the_breakers_remote_reference_is_refused_through_the_api(api, no_fetch):
    for schema in ({"$ref": NOWHERE}, {"$id": "http://127.0.0.1:9/", "$ref": "other.json"}):
        response = api.put(
            "/v1/admin/tracking-plans/web/PT%20ref", json={"schema": schema, "action": "dlq"}
        )

        assert response.status_code == 400, response.text
        assert response.json()["code"] == "unresolvable_reference"


@pytest.mark.parametrize(
    "schema",
    [
        {"$ref": NOWHERE},
        {"$id": "http://127.0.0.1:9/", "$ref": "other.json"},
        {"$ref": "#/$defs/a", "$defs": {"a": {"$ref": "#/$defs/a"}}},
        {"type": "object", "properties": {"s": {"pattern": "(a)\\1"}}},
    ],
)
def test_a_stored_plan_that_fails_on_an_event_is_a_violation_not_a_500(
    client, runtime, clock, no_fetch, caplog, monkeypatch, schema
):
    monkeypatch.setattr(tracking_plans, "_FAILED_LOGGED", set())
    store_unchecked(runtime, "E", schema)

    with caplog.at_level(logging.WARNING, logger="c360.governance.tracking_plans"):
        first = track(client, "E", {"s": "x"})
        second = track(client, "E", {"s": "y"}, message_id="m-2")

    for response in (first, second):
        assert response.status_code == 400, response.text
        assert response.json()["code"] == "tracking_plan_violation"
        assert "the plan could not be evaluated" in response.json()["message"]
    logged = [r for r in caplog.records if "could not be evaluated" in r.getMessage()]
    assert len(logged) == 1
    other = {"userId": "pu", "event": "Other"}
    assert client.post("/v1/track", json=other, headers=basic(WRITE_KEY)).status_code == 200


def test_a_large_schema_is_refused_before_its_meta_schema_check():
    properties = {f"p{i}": {"type": "string", "maxLength": i} for i in range(20000)}
    schema = {"type": "object", "properties": properties}
    size = len(json.dumps(schema, separators=(",", ":")).encode())

    with pytest.raises(InputError) as caught:
        tracking_plans._checked_schema(schema)

    assert caught.value.code == "schema_too_large"
    assert f"the schema is {size} bytes" in caught.value.message
    assert f"at most {64 * 1024} bytes" in caught.value.message


def test_a_deep_schema_is_refused():
    schema: dict = {"type": "object"}
    for _ in range(60):
        schema = {"type": "object", "properties": {"x": schema}}

    with pytest.raises(InputError) as caught:
        tracking_plans._checked_schema(schema)

    # each level adds a schema object and its `properties` object: 2 * 60 + 1
    assert caught.value.code == "schema_too_deep"
    assert "nests 121 levels deep" in caught.value.message


def test_the_action_is_checked_before_the_schema(runtime):
    huge = {"properties": {f"p{i}": {} for i in range(20000)}}

    with pytest.raises(InputError) as caught:
        tracking_plans.save_plan(runtime, "web", "E", huge, "drop", ACTOR)

    assert caught.value.code == "invalid_action"


def doubling_schema(levels: int) -> dict:
    """A few hundred bytes whose references apply its last schema 2 ** levels times."""
    defs = {
        f"d{i}": {"anyOf": [{"$ref": f"#/$defs/d{i + 1}"}, {"$ref": f"#/$defs/d{i + 1}"}]}
        for i in range(levels)
    }
    defs[f"d{levels}"] = {"type": "string"}
    return {"type": "object", "properties": {"n": {"$ref": "#/$defs/d0"}}, "$defs": defs}


def test_a_plan_that_would_cost_exponential_time_is_cut_short_as_a_violation(
    client, runtime, clock
):
    tracking_plans.save_plan(runtime, "web", "E", doubling_schema(40), "dlq", ACTOR)

    answer = batch(client, "E", [{"n": 5}, {"n": 6}, {}])

    # a string is matched on the first path; a number would try all 2 ** 40 of them
    assert answer["accepted"] == 1
    assert [(e["messageId"], e["code"]) for e in answer["errors"]] == [
        ("m-0", "tracking_plan_violation"),
        ("m-1", "tracking_plan_violation"),
    ]
    assert all("could not be evaluated" in e["message"] for e in answer["errors"])


def test_a_request_shares_one_budget_across_its_events():
    plan = tracking_plans.Plan("web", "E", 1, doubling_schema(40), "flag", True, None, ACTOR)
    compiled = tracking_plans.compile_plan(plan)
    budget = [tracking_plans.MAX_REQUEST_STEPS]
    checks_allowed = tracking_plans.MAX_REQUEST_STEPS // tracking_plans.MAX_STEPS

    spent = [compiled.verdict(_event({"n": 1}), budget) for _ in range(checks_allowed)]

    assert budget == [0]
    assert all("could not be evaluated" in v.message for v in spent)
    # the request's budget is gone: even a cheap valid event is not checked any more
    assert "could not be evaluated" in compiled.verdict(_event({"n": "s"}), budget).message


@pytest.mark.parametrize(
    "items, unique",
    [
        ([{"a": i} for i in range(3000)], True),
        ([{"a": 1, "b": [1, 2]}, {"b": [1, 2], "a": 1}], False),
        ([1, 1.0], False),
        ([1, True], True),
        ([0, False, None, ""], True),
        ([[1, {"x": None}], [1, {"x": None}]], False),
    ],
)
def test_unique_items_is_checked_by_json_equality_in_linear_time(items, unique):
    plan = tracking_plans.Plan(
        "web", "E", 1, {"properties": {"x": {"uniqueItems": True}}}, "flag", True, None, ACTOR
    )

    verdict = tracking_plans.compile_plan(plan).verdict(_event({"x": items}))

    assert (verdict is None) == unique
    if not unique:
        assert verdict.message.endswith("has non-unique elements")


def _event(properties: dict) -> Event:
    now = datetime.now(UTC)
    return Event(
        type="track",
        source="web",
        message_id="m-x",
        customer_key="user:pu",
        user_id="pu",
        event="E",
        properties=properties,
        received_at=now,
        timestamp=now,
    )
