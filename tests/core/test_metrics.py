"""`/metrics` reports what every process shares: counts per source, stage backlogs, the DLQ."""

from __future__ import annotations

import base64

from prometheus_client.parser import text_string_to_metric_families

from c360.adapters.bus import RAW_EVENTS

WRITE_KEY = "test-write-key-1"


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_metrics_count_accepted_and_rejected_events_and_show_backlogs(client, runtime):
    auth = {"Authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()}
    batch = {
        "batch": [
            {"type": "track", "event": "A", "userId": "u1", "messageId": "m1"},
            {"type": "track", "event": "B", "userId": "u2", "messageId": "m2"},
            {"type": "track", "event": "C", "messageId": "m3"},  # no identity: rejected
        ]
    }
    assert client.post("/v1/batch", json=batch, headers=auth).status_code == 200

    response = client.get("/metrics")

    assert response.status_code == 200
    samples = _samples(response.text)
    assert samples[("c360_events_accepted_total", (("source", "web"),))] == 2
    assert samples[("c360_events_rejected_total", (("source", "web"),))] == 1
    entries = runtime.valkey.xlen(f"{RAW_EVENTS}:0") + runtime.valkey.xlen(f"{RAW_EVENTS}:1")
    entries += runtime.valkey.xlen(f"{RAW_EVENTS}:2") + runtime.valkey.xlen(f"{RAW_EVENTS}:3")
    backlog = (("group", "f2"), ("topic", RAW_EVENTS))
    assert samples[("c360_stage_backlog", backlog)] == entries
    assert samples[("c360_dlq_entries", ())] == 1
