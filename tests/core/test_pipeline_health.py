"""Pipeline health against the session's real Valkey and PostgreSQL: each stage's backlog, and
the dead-letter topic inspected and replayed through F1 (accepted once, never twice)."""

from __future__ import annotations

import base64
import json
import zlib
from datetime import UTC, datetime, timedelta

import pytest

from c360 import audit, counters
from c360.adapters.bus import DLQ, ID_RESOLUTION, RAW_EVENTS
from c360.errors import InputError
from c360.events.model import decode_event
from c360.governance import pipeline, tracking_plans
from c360.stages import F2_GROUP, LAKE_GROUP

WRITE_KEY = "test-write-key-1"  # source "web"
ACTOR = "user:lan"
STRICT = {"type": "object", "properties": {"price": {"type": "number"}}}


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def order(message_id: str, price: object, user: str = "u-1") -> dict:
    return {
        "type": "track",
        "userId": user,
        "event": "Order Completed",
        "messageId": message_id,
        "properties": {"price": price},
    }


def post_batch(client, events: list[dict]) -> dict:
    response = client.post("/v1/batch", json={"batch": events}, headers=basic(WRITE_KEY))
    assert response.status_code == 200, response.text
    return response.json()


def raw_ids(runtime) -> list[str]:
    return sorted(e.message_id for e in map(decode_event, runtime.bus.read_all(RAW_EVENTS)))


def lag_of(runtime, **kwargs) -> dict[str, tuple[int, float | None]]:
    return {lag.stage: (lag.waiting, lag.age_s) for lag in pipeline.stage_lag(runtime, **kwargs)}


def test_stage_lag_counts_what_each_stage_has_not_acknowledged(runtime):
    users = [f"u-{n}" for n in range(40)]
    runtime.bus.publish(RAW_EVENTS, [(user, b"{}") for user in users])
    # the Valkey bus writes one entry per partition a publish touches (4 in the test settings)
    entries = len({zlib.crc32(user.encode()) % 4 for user in users})
    later = datetime.now(UTC) + timedelta(seconds=60)

    before = lag_of(runtime, now=later)
    taken = runtime.bus.consume(RAW_EVENTS, F2_GROUP, "test", count=100, block_ms=10)
    runtime.bus.ack(F2_GROUP, taken)
    after = lag_of(runtime, now=later)

    # ages: the entries were published just before `later - 60 s`, so they wait about 60 s
    waiting = {
        stage: (count, age is not None and 59 <= age <= 90)
        for stage, (count, age) in before.items()
    }
    assert waiting == {
        "F2 persist": (entries, True),
        "lake sink": (entries, True),
        "F3 resolve": (0, False),
    }
    assert sum(len(d.payloads) for d in taken) == 40
    assert after["F2 persist"] == (0, None)
    assert after["F3 resolve"] == (0, None)
    assert after["lake sink"][0] == entries


def test_stage_lag_gives_the_age_of_the_oldest_entry_where_the_bus_tells_it(runtime):
    published = datetime(2026, 12, 5, 1, 0, tzinfo=UTC)

    class BusWithAges:
        """The runtime's bus, with the adapter method stage_lag asks for."""

        def __init__(self, bus) -> None:
            self.bus = bus

        def backlog(self, topic: str, group: str) -> int:
            return self.bus.backlog(topic, group)

        def oldest_waiting(self, topic: str, group: str) -> datetime | None:
            return published if group == LAKE_GROUP else None

    runtime.bus.publish(RAW_EVENTS, [("u-1", b"{}")])
    runtime.bus.publish(ID_RESOLUTION, [("u-1", b"{}")])
    runtime.__dict__["bus"] = BusWithAges(runtime.bus)

    lags = lag_of(runtime, now=published + timedelta(seconds=90))

    assert lags == {"F2 persist": (1, None), "lake sink": (1, 90.0), "F3 resolve": (1, None)}


@pytest.fixture
def dead_letters(client, runtime) -> dict[str, pipeline.DlqEntry]:
    """Three events refused by the gateway: two by a `dlq` plan, one for having no identity;
    the entries by messageId."""
    tracking_plans.save_plan(runtime, "web", "Order Completed", STRICT, "dlq", ACTOR)
    nobody = {"type": "track", "event": "Order Completed", "messageId": "m-nobody"}
    answer = post_batch(client, [order("m-bad", "abc"), order("m-ok", 5), nobody])
    assert answer["rejected"] == 2
    single = {k: v for k, v in order("m-single", "x", "u-2").items() if k != "type"}
    assert client.post("/v1/track", json=single, headers=basic(WRITE_KEY)).status_code == 400
    entries = pipeline.dlq_entries(runtime, 0, 10).entries
    return {entry.message_id: entry for entry in entries}


def test_dead_letters_show_reason_code_source_time_and_payload(runtime, dead_letters):
    bad = dead_letters["m-bad"]

    assert sorted(dead_letters) == ["m-bad", "m-nobody", "m-single"]
    assert (bad.code, bad.source) == ("tracking_plan_violation", "web")
    assert bad.reason == (
        "tracking_plan: 'Order Completed' v1: properties.price: 'abc' is not of type 'number'"
    )
    assert json.loads(bad.payload) == order("m-bad", "abc")
    assert abs(bad.received_at - datetime.now(UTC)) < timedelta(minutes=5)
    assert dead_letters["m-nobody"].code == "missing_identity"
    assert pipeline.dlq_size(runtime) == 3
    assert pipeline.dlq_entry(runtime, bad.entry_id) == bad
    page = pipeline.dlq_entries(runtime, 1, 1)
    assert (page.total, len(page.entries)) == (3, 1)


def test_a_replay_before_the_plan_is_relaxed_is_rejected_again(runtime, dead_letters):
    bad = dead_letters["m-bad"]

    [outcome] = pipeline.replay(runtime, [bad.entry_id], ACTOR)

    assert (outcome.outcome, outcome.code, outcome.message) == (
        "rejected",
        "tracking_plan_violation",
        bad.reason,
    )
    assert raw_ids(runtime) == ["m-ok"]
    assert pipeline.dlq_size(runtime) == 3  # the entry stays, nothing new is dead-lettered


def test_an_event_replayed_after_the_plan_is_relaxed_is_accepted_once(runtime, dead_letters):
    bad, single = dead_letters["m-bad"], dead_letters["m-single"]
    tracking_plans.save_plan(runtime, "web", "Order Completed", {"type": "object"}, "dlq", ACTOR)

    first = pipeline.replay(runtime, [bad.entry_id, single.entry_id, bad.entry_id], ACTOR)
    again = pipeline.replay(runtime, [bad.entry_id], "user:minh")

    assert [(o.entry_id, o.outcome, o.message_ids) for o in first] == [
        (bad.entry_id, "accepted", ["m-bad"]),
        (single.entry_id, "accepted", ["m-single"]),
    ]
    assert [o.outcome for o in again] == ["already_replayed"]
    assert raw_ids(runtime) == ["m-bad", "m-ok", "m-single"]
    replayed = [
        e for e in map(decode_event, runtime.bus.read_all(RAW_EVENTS)) if e.message_id == "m-bad"
    ]
    assert replayed[0].source == "web" and replayed[0].received_at == bad.received_at
    assert replayed[0].warnings == [f"replayed from c360-dlq entry {bad.entry_id} by {ACTOR}"]
    assert counters.read(runtime.valkey, "web") == (3, 3)  # 1 + 2 replayed; 3 refused at first
    assert pipeline.dlq_entry(runtime, bad.entry_id).as_dict()["replayable"] is False
    with runtime.pool.connection() as conn:
        entries = list(reversed(audit.entries(conn, action_prefix="dlq.")))
    assert [(e.actor, e.target, e.after["outcome"]) for e in entries] == [
        (ACTOR, f"dlq:{bad.entry_id}", "accepted"),
        (ACTOR, f"dlq:{single.entry_id}", "accepted"),
    ]


def test_an_event_still_invalid_is_rejected_again_with_its_reason(runtime, dead_letters):
    nobody = dead_letters["m-nobody"]

    [outcome] = pipeline.replay(runtime, [nobody.entry_id], ACTOR)

    assert (outcome.outcome, outcome.code) == ("rejected", "missing_identity")
    assert outcome.message == nobody.reason


def test_unknown_and_stage_failure_entries_are_not_replayed(runtime):
    stage_failure = {
        "reason": "stage 'f2' failed after all retries: boom",
        "code": "stage_failed",
        "source": "f2",
        "receivedAt": "2026-12-05T01:00:00+00:00",
        "payload": "[]",
    }
    runtime.bus.publish(DLQ, [("f2", json.dumps(stage_failure).encode())])
    [entry] = pipeline.dlq_entries(runtime).entries

    outcomes = pipeline.replay(runtime, [entry.entry_id, "0" * 24], ACTOR)

    assert [o.outcome for o in outcomes] == ["not_replayable", "not_found"]
    assert raw_ids(runtime) == []


@pytest.mark.parametrize(
    "call, code",
    [
        (lambda rt: pipeline.dlq_entry(rt, "0" * 24), "unknown_entry"),
        (lambda rt: pipeline.dlq_entries(rt, -1, 10), "invalid_page"),
        (lambda rt: pipeline.dlq_entries(rt, 0, 0), "invalid_page"),
        (lambda rt: pipeline.replay(rt, [], ACTOR), "invalid_replay"),
        (lambda rt: pipeline.replay(rt, ["x"] * 501, ACTOR), "invalid_replay"),
    ],
)
def test_a_bad_dlq_request_is_an_input_error(runtime, call, code):
    with pytest.raises(InputError) as caught:
        call(runtime)

    assert caught.value.code == code and caught.value.message


@pytest.fixture
def api(client, runtime):
    """A second app with this part's endpoints and a scoped token for pipeline work."""
    from litestar.testing import TestClient

    from c360 import tokens
    from c360.api.app import create_app

    with runtime.pool.connection() as conn:
        token, _record = tokens.create_token(
            conn, "user:root", "ops", ["pipeline:read", "pipeline:write"]
        )
    with TestClient(app=create_app(runtime.settings)) as test_client:
        test_client.headers["Authorization"] = f"Bearer {token}"
        yield test_client


def test_the_pipeline_endpoints_list_show_and_replay(api, runtime, dead_letters):
    bad = dead_letters["m-bad"]
    tracking_plans.save_plan(runtime, "web", "Order Completed", {"type": "object"}, "dlq", ACTOR)

    lag = api.get("/v1/pipeline/lag").json()
    listed = api.get("/v1/pipeline/dlq?limit=2").json()
    one = api.get(f"/v1/pipeline/dlq/{bad.entry_id}").json()
    replayed = api.post("/v1/pipeline/dlq/replay", json={"entry_ids": [bad.entry_id]})
    again = api.post("/v1/pipeline/dlq/replay", json={"entry_ids": [bad.entry_id]})

    assert lag["dlq_size"] == 3
    assert [s["stage"] for s in lag["stages"]] == ["F2 persist", "lake sink", "F3 resolve"]
    assert (listed["total"], len(listed["entries"])) == (3, 2)
    assert (one["code"], one["payload"], one["replayable"]) == (
        "tracking_plan_violation",
        bad.payload,
        True,
    )
    assert replayed.status_code == 200, replayed.text
    assert replayed.json()["outcomes"][0]["outcome"] == "accepted"
    assert again.json()["outcomes"][0]["outcome"] == "already_replayed"
    with runtime.pool.connection() as conn:
        assert {e.actor for e in audit.entries(conn, action_prefix="dlq.")} == {"token:ops"}


@pytest.mark.parametrize(
    "method, path, body, status, code",
    [
        ("get", "/v1/pipeline/dlq/nope", None, 404, "unknown_entry"),
        ("get", "/v1/pipeline/dlq?limit=many", None, 400, "invalid_page"),
        ("post", "/v1/pipeline/dlq/replay", {"entry_ids": "abc"}, 400, "invalid_replay"),
        ("post", "/v1/pipeline/dlq/replay", {"ids": []}, 400, "unknown_field"),
    ],
)
def test_a_bad_pipeline_request_is_answered_with_its_code(api, method, path, body, status, code):
    kwargs = {"json": body} if body is not None else {}

    response = getattr(api, method)(path, **kwargs)

    assert response.status_code == status, response.text
    assert response.json()["code"] == code
