"""A profile update reaches an open conversation within a second: an identify event through
the HTTP gateway, F2 and F3 (their real pumps and stages, in threads), then the agents stage
on c360-updated-profiles refreshes the conversation's context snapshot and announces it on
Valkey pub/sub, where a web chat would hear it. Timing is measured by polling and reported;
the assertions are on what arrives."""

from __future__ import annotations

import base64
import json
import threading
import time

import pytest
from agent_world import inbound, load_catalogue, make_lan

from c360.adapters.bus import ID_RESOLUTION, RAW_EVENTS, UPDATED_PROFILES
from c360.agents import dialogue, service
from c360.stages import F2_GROUP, F3_GROUP, agents_stage, f2_persist, f3_resolve
from c360.stages.pump import Pump

WRITE_KEY = "test-write-key-1"  # tests/conftest.py's web source

#: The issue's promise for a profile update to reach an open conversation.
WITHIN_S = 1.0


@pytest.fixture
def pipeline(runtime):
    """F2, F3 and the agents stage fed by their pumps, as a worker runs them (without
    Dramatiq's queues in between: each pump calls its stage directly)."""
    stop = threading.Event()

    def stage(fn):
        return lambda name, payloads: fn(runtime, [p.encode() for p in payloads])

    pumps = [
        Pump(
            runtime.bus,
            RAW_EVENTS,
            F2_GROUP,
            "f2-t",
            stage(f2_persist.persist),
            lambda: 0,
            100,
            stop,
        ),
        Pump(
            runtime.bus,
            ID_RESOLUTION,
            F3_GROUP,
            "f3-t",
            stage(f3_resolve.resolve),
            lambda: 0,
            100,
            stop,
        ),
        Pump(
            runtime.bus,
            UPDATED_PROFILES,
            agents_stage.AGENTS_GROUP,
            "agents-t",
            stage(agents_stage.refresh),
            lambda: 0,
            100,
            stop,
        ),
    ]
    threads = [threading.Thread(target=pump.run, daemon=True) for pump in pumps]
    for thread in threads:
        thread.start()
    yield
    stop.set()
    for thread in threads:
        thread.join(5)


def test_a_profile_update_reaches_the_open_conversation_within_a_second(
    runtime, client, monkeypatch, pipeline
):
    load_catalogue(runtime)
    lan = make_lan(runtime)
    [reply] = service.converse(runtime, inbound("Xin chào"))
    conversation_id = reply.metadata["conversation_id"]
    listener = runtime.valkey.pubsub()
    listener.subscribe(agents_stage.channel_of(lan["profile_id"]))
    listener.get_message(timeout=1.0)  # the subscription's confirmation

    started = time.monotonic()
    sent = client.post(
        "/v1/identify",
        json={"userId": "u-lan", "traits": {"first_name": "Lanh", "region": "ha-noi"}},
        headers={"Authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()},
    )
    assert sent.status_code == 200, sent.text
    heard = _wait_for_message(listener, timeout_s=10)
    heard_after = time.monotonic() - started
    stored = _wait_for_context(runtime, conversation_id, "Lanh", timeout_s=10)
    listener.close()

    print(f"\nprofile update heard by the conversation after {heard_after * 1000:.0f} ms")
    announcement = json.loads(heard["data"])
    assert announcement["type"] == "profile"
    assert announcement["conversation_ids"] == [conversation_id]
    assert announcement["context"]["name"] == "Lanh"
    assert announcement["context"]["region"] == "ha-noi"
    # the customer's addresses and consent stay on the server
    assert not {"emails", "phones", "consent"} & set(announcement["context"])
    assert stored["name"] == "Lanh" and stored["emails"] == ["lan@example.vn"]
    assert heard_after < WITHIN_S
    # and the next reply uses it
    [after] = service.converse(runtime, inbound("Xin chào"))
    assert after.text.startswith("Xin chào Lanh!")


def test_updates_of_profiles_without_an_open_conversation_change_nothing(runtime, monkeypatch):
    lan = make_lan(runtime)

    payload = json.dumps({**_jsonable(lan), "traits": {"first_name": "X"}}).encode()
    assert agents_stage.refresh(runtime, [payload]) == 0


def _jsonable(doc):
    return json.loads(json.dumps(doc, default=str))


def _wait_for_message(listener, timeout_s):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        message = listener.get_message(timeout=0.01)
        if message and message["type"] == "message":
            return message
    raise AssertionError(f"no announcement within {timeout_s} s")


def _wait_for_context(runtime, conversation_id, name, timeout_s):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with runtime.pool.connection() as conn:
            context = dialogue.get(conn, conversation_id).context
        if context.get("name") == name:
            return context
        time.sleep(0.01)
    raise AssertionError(f"the conversation's context did not change within {timeout_s} s")
