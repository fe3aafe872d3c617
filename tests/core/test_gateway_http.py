"""The Segment-compatible gateway over HTTP, against the session's real Valkey."""

from __future__ import annotations

import base64
import gzip
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from litestar.testing import TestClient

from c360.adapters.bus import DLQ, ID_RESOLUTION, RAW_EVENTS, UPDATED_PROFILES
from c360.api.app import create_app
from c360.events.model import decode_any, decode_event

WRITE_KEY = "test-write-key-1"
OTHER_WRITE_KEY = "test-write-key-2"


def basic(key: str) -> dict[str, str]:
    """Segment's auth: the write key as the Basic-auth user, password empty."""
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def raw_events(runtime) -> list:
    return [decode_event(p) for p in runtime.bus.read_all(RAW_EVENTS)]


def dead_letters(runtime) -> list[dict]:
    return [decode_any(p) for p in runtime.bus.read_all(DLQ)]


def nothing_published(runtime) -> bool:
    topics = (RAW_EVENTS, DLQ, ID_RESOLUTION, UPDATED_PROFILES)
    return all(runtime.bus.read_all(topic) == [] for topic in topics)


SINGLE_BODIES = {
    "track": {"userId": "u-1", "event": "Product Viewed", "properties": {"sku": "A1"}},
    "identify": {"userId": "u-1", "traits": {"email": "lan@example.vn"}},
    "page": {"anonymousId": "a-1", "name": "Home", "properties": {"path": "/"}},
    "screen": {"anonymousId": "a-1", "name": "Cart"},
    "group": {"userId": "u-1", "groupId": "g-1", "traits": {"name": "Acme"}},
    "alias": {"userId": "u-1", "previousId": "a-1"},
}


@pytest.mark.parametrize("endpoint", sorted(SINGLE_BODIES))
def test_each_single_event_endpoint_publishes_one_event_of_its_type(client, runtime, endpoint):
    body = {**SINGLE_BODIES[endpoint], "messageId": f"m-{endpoint}"}

    response = client.post(f"/v1/{endpoint}", json=body, headers=basic(WRITE_KEY))

    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 1
    events = raw_events(runtime)
    assert [(e.type, e.message_id, e.source) for e in events] == [
        (endpoint, f"m-{endpoint}", "web")
    ]


def test_a_batch_publishes_every_event_with_its_own_type(client, runtime):
    batch = [
        {**SINGLE_BODIES[kind], "type": kind, "messageId": f"m-{kind}"}
        for kind in sorted(SINGLE_BODIES)
    ]

    response = client.post("/v1/batch", json={"batch": batch}, headers=basic(WRITE_KEY))

    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 6
    assert sorted((e.type, e.message_id) for e in raw_events(runtime)) == sorted(
        (kind, f"m-{kind}") for kind in SINGLE_BODIES
    )


def test_the_write_key_may_come_in_the_body_instead_of_basic_auth(client, runtime):
    body = {"writeKey": OTHER_WRITE_KEY, "batch": [{"type": "track", "userId": "u", "event": "E"}]}

    response = client.post("/v1/batch", json=body)

    assert response.status_code == 200, response.text
    assert [e.source for e in raw_events(runtime)] == ["ios"]


def test_a_single_event_may_carry_its_write_key_in_the_body(client, runtime):
    response = client.post("/v1/track", json={**SINGLE_BODIES["track"], "writeKey": WRITE_KEY})

    assert response.status_code == 200, response.text
    assert [e.source for e in raw_events(runtime)] == ["web"]


@pytest.mark.parametrize(
    "headers, body_key",
    [
        ({}, None),
        (basic("no-such-key"), None),
        ({}, "no-such-key"),
        ({"Authorization": "Basic %%%not-base64"}, None),
    ],
    ids=["missing", "unknown-in-header", "unknown-in-body", "garbled-header"],
)
def test_a_request_without_a_known_write_key_gets_401_json_and_publishes_nothing(
    client, runtime, headers, body_key
):
    body: dict = {"batch": [{"type": "track", "userId": "u-1", "event": "E"}]}
    if body_key:
        body["writeKey"] = body_key

    response = client.post("/v1/batch", json=body, headers=headers)

    assert response.status_code == 401
    payload = response.json()
    assert set(payload) == {"code", "message"}
    assert payload["message"]
    assert nothing_published(runtime)


def test_a_gzip_body_is_inflated_before_parsing(client, runtime):
    body = json.dumps({"batch": [{"type": "track", "userId": "u-1", "event": "Zipped"}]})

    response = client.post(
        "/v1/batch",
        content=gzip.compress(body.encode()),
        headers={
            **basic(WRITE_KEY),
            "Content-Encoding": "gzip",
            "Content-Type": "application/json",
        },
    )

    assert response.status_code == 200, response.text
    assert [e.event for e in raw_events(runtime)] == ["Zipped"]


def test_a_body_sent_as_text_plain_is_read_as_json(client, runtime):
    body = json.dumps({"userId": "u-1", "event": "Beacon", "writeKey": WRITE_KEY})

    response = client.post("/v1/track", content=body, headers={"Content-Type": "text/plain"})

    assert response.status_code == 200, response.text
    assert [e.event for e in raw_events(runtime)] == ["Beacon"]


def test_a_cors_preflight_from_a_browser_is_allowed(client):
    response = client.options(
        "/v1/batch",
        headers={
            "Origin": "https://shop.example.vn",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, authorization",
        },
    )

    assert response.status_code in (200, 204)
    assert response.headers["access-control-allow-origin"] in ("*", "https://shop.example.vn")
    assert "POST" in response.headers["access-control-allow-methods"]


def test_a_batch_with_good_and_malformed_events_splits_them_between_bus_and_dlq(client, runtime):
    good = [
        {"type": "track", "userId": f"u-{n}", "event": "Viewed", "messageId": f"good-{n}"}
        for n in range(3)
    ]
    no_ids = {"type": "track", "event": "Viewed", "messageId": "bad-no-ids"}
    object_id = {"type": "track", "userId": {"id": 7}, "event": "Viewed", "messageId": "bad-obj"}
    batch = [good[0], no_ids, good[1], object_id, good[2]]

    response = client.post("/v1/batch", json={"batch": batch}, headers=basic(WRITE_KEY))

    assert response.status_code == 200, response.text
    assert (response.json()["accepted"], response.json()["rejected"]) == (3, 2)
    assert sorted(e.message_id for e in raw_events(runtime)) == ["good-0", "good-1", "good-2"]
    letters = {letter["messageId"]: letter for letter in dead_letters(runtime)}
    assert sorted(letters) == ["bad-no-ids", "bad-obj"]
    for sent in (no_ids, object_id):
        letter = letters[sent["messageId"]]
        assert letter["reason"] and letter["code"]
        assert json.loads(letter["payload"]) == sent
    assert "userId" in letters["bad-obj"]["reason"]


def test_lone_surrogate_escapes_are_accepted_as_replacement_characters(client, runtime):
    body = (
        '{"batch": [{"type": "track", "userId": "u-\\ud800", "event": "Name \\udc00 here",'
        ' "properties": {"note": "x\\ud83dy"}}]}'
    )

    response = client.post(
        "/v1/batch", content=body, headers={**basic(WRITE_KEY), "Content-Type": "application/json"}
    )

    assert response.status_code == 200, response.text
    (event,) = raw_events(runtime)
    assert event.user_id == "u-\ufffd"
    assert event.event == "Name \ufffd here"
    assert event.properties["note"] == "x\ufffdy"


def test_invalid_utf8_bytes_are_accepted_as_replacement_characters(client, runtime):
    body = b'{"batch": [{"type": "track", "userId": "u-\xff\xfe", "event": "Caf\xc3"}]}'

    response = client.post(
        "/v1/batch", content=body, headers={**basic(WRITE_KEY), "Content-Type": "application/json"}
    )

    assert response.status_code == 200, response.text
    (event,) = raw_events(runtime)
    assert event.user_id == "u-\ufffd\ufffd"
    assert event.event.startswith("Caf") and "\ufffd" in event.event


def test_vietnamese_text_is_stored_in_nfc(client, runtime):
    decomposed = "Nguye\u0302\u0303n"  # e + combining circumflex + combining tilde
    body = {"type": "identify", "userId": "u-vn", "traits": {"name": decomposed}}

    response = client.post("/v1/identify", json=body, headers=basic(WRITE_KEY))

    assert response.status_code == 200, response.text
    (event,) = raw_events(runtime)
    assert event.traits["name"] == "Nguy\u1ec5n"


@pytest.mark.parametrize("endpoint", ["track", "batch"])
def test_a_bare_nan_is_not_json_and_gets_400(client, runtime, endpoint):
    event = '{"type": "track", "userId": "u-1", "event": "E", "properties": {"price": NaN}}'
    body = event if endpoint == "track" else '{"batch": [' + event + "]}"

    response = client.post(
        f"/v1/{endpoint}",
        content=body,
        headers={**basic(WRITE_KEY), "Content-Type": "application/json"},
    )

    assert response.status_code == 400
    assert set(response.json()) == {"code", "message"}
    assert runtime.bus.read_all(RAW_EVENTS) == []


def test_a_response_lists_each_rejection_with_its_message_id(client):
    batch = [{"type": "track", "userId": "u-1", "messageId": "no-event-name"}]

    response = client.post("/v1/batch", json={"batch": batch}, headers=basic(WRITE_KEY))

    (error,) = response.json()["errors"]
    assert error["messageId"] == "no-event-name"
    assert error["code"] == "missing_event"


def test_accepted_and_rejected_counts_are_kept_per_source(client, runtime):
    from c360 import counters

    batch = [
        {"type": "track", "userId": "u-1", "event": "E"},
        {"type": "track", "userId": "u-2", "event": "E"},
        {"type": "track", "event": "E"},
    ]
    client.post("/v1/batch", json={"batch": batch}, headers=basic(WRITE_KEY))
    client.post("/v1/batch", json={"batch": batch[:1]}, headers=basic(OTHER_WRITE_KEY))

    assert counters.read(runtime.valkey, "web") == (2, 1)
    assert counters.read(runtime.valkey, "ios") == (1, 0)


def test_the_health_endpoint_answers_when_the_bus_is_up(client):
    response = client.get("/health")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


# --- Valkey unreachable -------------------------------------------------------------------


@pytest.fixture
def unreachable_client(runtime, tmp_path: Path) -> Iterator[TestClient]:
    closed = tmp_path / "closed.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(closed))
    listener.close()  # the path exists, but nothing listens on it
    settings = _with(runtime.settings, valkey_url=f"unix://{closed}")
    with TestClient(app=create_app(settings)) as test_client:
        yield test_client


def test_the_gateway_answers_503_with_retry_after_when_valkey_is_unreachable(unreachable_client):
    body = {"batch": [{"type": "track", "userId": "u-1", "event": "E"}]}

    response = unreachable_client.post("/v1/batch", json=body, headers=basic(WRITE_KEY))

    assert response.status_code == 503
    assert int(response.headers["retry-after"]) > 0
    assert response.json()["code"] == "bus_unavailable"


def test_a_batch_of_only_rejected_events_also_gets_503_when_valkey_is_unreachable(
    unreachable_client,
):
    body = {"batch": [{"type": "track", "event": "no ids"}]}

    response = unreachable_client.post("/v1/batch", json=body, headers=basic(WRITE_KEY))

    assert response.status_code == 503
    assert "retry-after" in response.headers


def test_health_reports_503_not_500_when_valkey_is_unreachable(unreachable_client):
    response = unreachable_client.get("/health")

    assert response.status_code == 503
    assert response.json()["code"] == "bus_unavailable"


def test_health_reports_503_when_the_kafka_brokers_are_unreachable(runtime):
    from c360.appliance.engines import free_port

    settings = _with(runtime.settings, kafka_bootstrap=f"127.0.0.1:{free_port()}")
    with TestClient(app=create_app(settings)) as test_client:
        response = test_client.get("/health")

    assert response.status_code == 503
    assert response.json()["code"] == "bus_unavailable"
    assert "retry-after" in response.headers


def _with(settings, **changes):
    import dataclasses

    return dataclasses.replace(settings, **changes)


# --- the Segment Python client against a real server ---------------------------------------


@pytest.fixture
def live_server(runtime) -> Iterator[str]:
    """The app under uvicorn on 127.0.0.1, on a free port, in a thread."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(
        create_app(runtime.settings),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(500):
        if server.started:
            break
        time.sleep(0.01)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_the_segment_python_client_works_unchanged_against_a_real_server(live_server, runtime):
    from segment.analytics import Client

    errors: list[Exception] = []
    client = Client(
        WRITE_KEY,
        host=live_server,
        gzip=True,
        sync_mode=True,
        on_error=lambda error, _batch: errors.append(error),
        max_retries=1,
    )
    order_id = str(uuid.uuid4())
    client.identify("u-segment", {"email": "Seg@Example.VN", "name": "Tr\u1ea7n"})
    client.track("u-segment", "Order Completed", {"order_id": order_id, "revenue": 12.5})
    client.page(anonymous_id="anon-seg", name="Home")
    # sync_mode posts each call before returning (its shutdown() fails in sync mode: no consumers)

    assert errors == []
    events = {e.type: e for e in raw_events(runtime)}
    assert sorted(events) == ["identify", "page", "track"]
    assert {e.source for e in events.values()} == {"web"}
    assert events["identify"].traits["name"] == "Tr\u1ea7n"
    assert events["track"].properties["order_id"] == order_id
    assert events["page"].user_id is None and events["page"].anonymous_id == "anon-seg"
    assert events["track"].context["library"]["name"] == "analytics-python"


def test_a_single_event_endpoint_answers_400_for_its_rejected_event_and_dead_letters_it(
    client, runtime
):
    response = client.post("/v1/alias", json={"userId": "u-1"}, headers=basic(WRITE_KEY))

    assert response.status_code == 400
    assert response.json() == {
        "code": "missing_previousId",
        "message": "an alias event needs a non-empty `previousId`",
    }
    assert [letter["code"] for letter in dead_letters(runtime)] == ["missing_previousId"]


def test_batch_errors_and_warnings_name_each_event_by_index(client):
    batch = [
        {"type": "track", "userId": "u-1", "event": "Order", "properties": {"revenue": "abc"}},
        {"type": "track", "event": "E"},
        {"type": "track", "userId": "u-1", "event": "E", "messageId": "m-3"},
    ]

    response = client.post("/v1/batch", json={"batch": batch}, headers=basic(WRITE_KEY))

    body = response.json()
    assert response.status_code == 200
    assert [(e["index"], e["code"]) for e in body["errors"]] == [(1, "missing_identity")]
    money = [w for w in body["warnings"] if "revenue" in w["message"]]
    assert [(w["index"], w["messageId"][:5]) for w in money] == [(0, "c360-")]
    assert "'abc' is not a plain number" in money[0]["message"]
    assert all(w["index"] != 2 for w in body["warnings"])


def test_a_deep_event_is_rejected_alone_over_http(client, runtime):
    deep = '{"type": "track", "userId": "u", "event": "E", "p": ' + "[" * 2000 + "]" * 2000 + "}"
    good = '{"type": "track", "userId": "u", "event": "E", "messageId": "ok"}'

    response = client.post(
        "/v1/batch",
        content='{"batch": [' + good + "," + deep + "]}",
        headers={**basic(WRITE_KEY), "Content-Type": "application/json"},
    )

    assert response.status_code == 200, response.text
    assert (response.json()["accepted"], response.json()["rejected"]) == (1, 1)
    assert response.json()["errors"][0]["code"] == "too_deeply_nested"


def test_a_write_key_that_is_not_a_string_gets_a_400_saying_so(client):
    response = client.post("/v1/track", json={"writeKey": 5, "userId": "u", "event": "E"})

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_writeKey"
