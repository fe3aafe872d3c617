"""A bad event fails alone: a failing batch is split until the bad event is isolated."""

from __future__ import annotations

from collections import deque
from datetime import date

import psycopg
import pytest

from c360.stages import actors


@pytest.fixture
def bound(runtime):
    actors.bind(runtime)
    return runtime


def _run_queue(stage, first_batch):
    """Process messages as a broker would: halves are queued and run in turn."""
    queue = deque([first_batch])
    failed = []

    while queue:
        batch = queue.popleft()
        try:
            actors.isolate_failures(stage, queue.append, batch)
        except ValueError:
            failed.append(batch)
    return failed


def test_one_bad_event_ends_alone_and_the_rest_are_processed_once(bound):
    processed = []

    def stage(runtime, payloads):
        if b"bad" in payloads:
            raise ValueError("cannot store this event")
        processed.extend(payloads)

    batch = [f"e{n}" for n in range(10)]
    batch.insert(6, "bad")

    failed = _run_queue(stage, batch)

    assert failed == [["bad"]]
    assert sorted(processed) == sorted(f"e{n}".encode() for n in range(10))


def test_a_server_that_is_away_fails_the_whole_batch_for_a_later_retry(bound):
    halves = []

    def stage(runtime, payloads):
        raise psycopg.OperationalError("connection refused")

    with pytest.raises(psycopg.OperationalError):
        actors.isolate_failures(stage, halves.append, ["a", "b", "c"])
    assert halves == []


def test_events_from_a_connector_go_through_the_same_f1_as_http(bound):
    import json

    from c360.adapters.bus import DLQ, RAW_EVENTS
    from c360.events.model import decode_event

    good = json.dumps(
        {
            "type": "identify",
            "userId": "crm-42",
            "messageId": "c-1",
            "traits": {"email": "lan@example.vn"},
        }
    )
    bad = json.dumps({"type": "identify", "messageId": "c-2", "traits": {}})

    actors.ingest_events.fn("hubspot", "2026-12-01T08:00:00+00:00", [good, bad])

    accepted = [decode_event(p) for p in bound.bus.read_all(RAW_EVENTS)]
    assert [(e.source, e.message_id, e.user_id) for e in accepted] == [("hubspot", "c-1", "crm-42")]
    rejected = [json.loads(p) for p in bound.bus.read_all(DLQ)]
    assert [(r["source"], r["code"]) for r in rejected] == [("hubspot", "missing_identity")]
    assert json.loads(rejected[0]["payload"])["messageId"] == "c-2"


def test_events_from_a_connector_follow_the_sources_tracking_plan(bound):
    import json

    from c360.adapters.bus import DLQ, RAW_EVENTS
    from c360.events.model import decode_event
    from c360.governance import tracking_plans

    schema = {"type": "object", "required": ["plan"], "properties": {"plan": {"type": "string"}}}
    tracking_plans.save_plan(bound, "hubspot", "identify", schema, "dlq", "user:test")
    actors.bind(bound)  # a fresh plan cache, as a worker process starting now would have
    good = {"type": "identify", "userId": "crm-1", "messageId": "c-1", "traits": {"plan": "gold"}}
    bad = {"type": "identify", "userId": "crm-2", "messageId": "c-2", "traits": {"plan": 7}}

    actors.ingest_events.fn(
        "hubspot", "2026-12-01T08:00:00+00:00", [json.dumps(good), json.dumps(bad)]
    )

    accepted = [decode_event(p).message_id for p in bound.bus.read_all(RAW_EVENTS)]
    rejected = [json.loads(p) for p in bound.bus.read_all(DLQ)]
    assert accepted == ["c-1"]
    assert [(r["code"], json.loads(r["payload"])["messageId"]) for r in rejected] == [
        ("tracking_plan_violation", "c-2")
    ]
    received = date(2026, 12, 1)  # violations count under the day the events arrived
    day = tracking_plans.violations(bound, received, received)
    assert [(v.source, v.event, v.count) for v in day] == [("hubspot", "identify", 1)]
