"""The gateway's size limits (32 KB per event, 500 KB per batch) and its guard against gzip
bombs, against the session's real Valkey."""

from __future__ import annotations

import base64
import gzip
import json

from c360.adapters.bus import DLQ, RAW_EVENTS
from c360.events.model import decode_any

WRITE_KEY = "test-write-key-1"
KB = 1024


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def json_headers(**extra: str) -> dict[str, str]:
    return {**basic(WRITE_KEY), "Content-Type": "application/json", **extra}


def track_of_size(size: int) -> bytes:
    """A valid track body of exactly `size` bytes."""
    head = b'{"userId": "u-1", "event": "Big", "properties": {"blob": "'
    tail = b'"}}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


def batch_of_size(size: int) -> bytes:
    """A valid batch body of about `size` bytes made of 20 KB events."""
    event = {"type": "track", "userId": "u-1", "event": "E", "properties": {"blob": "x" * 20 * KB}}
    count = size // len(json.dumps(event)) + 1
    return json.dumps({"batch": [event] * count}).encode()


def assert_400_mentions(response, text: str) -> None:
    assert response.status_code == 400, response.text
    payload = response.json()
    assert set(payload) == {"code", "message"}
    assert text in payload["message"]


def test_an_event_of_exactly_32_kb_is_accepted(client, runtime):
    body = track_of_size(32 * KB)

    response = client.post("/v1/track", content=body, headers=json_headers())

    assert response.status_code == 200, response.text
    assert len(runtime.bus.read_all(RAW_EVENTS)) == 1


def test_an_event_over_32_kb_on_track_gets_400_saying_32_kb(client, runtime):
    body = track_of_size(32 * KB + 1)

    response = client.post("/v1/track", content=body, headers=json_headers())

    assert_400_mentions(response, "32 KB")
    assert runtime.bus.read_all(RAW_EVENTS) == []


def test_an_event_over_32_kb_inside_a_batch_is_rejected_alone(client, runtime):
    small = {"type": "track", "userId": "u-1", "event": "Small", "messageId": "small"}
    big = {**small, "messageId": "big", "properties": {"blob": "x" * 33 * KB}}

    response = client.post("/v1/batch", json={"batch": [small, big]}, headers=basic(WRITE_KEY))

    assert response.status_code == 200, response.text
    assert (response.json()["accepted"], response.json()["rejected"]) == (1, 1)
    (letter,) = [decode_any(p) for p in runtime.bus.read_all(DLQ)]
    assert letter["messageId"] == "big"
    assert "32 KB" in letter["reason"]


def test_a_batch_over_500_kb_gets_400_saying_500_kb(client, runtime):
    body = batch_of_size(520 * KB)
    assert len(body) > 500 * KB

    response = client.post("/v1/batch", content=body, headers=json_headers())

    assert_400_mentions(response, "500 KB")
    assert runtime.bus.read_all(RAW_EVENTS) == []


def test_a_rejected_oversized_batch_is_dead_lettered_with_its_reason(client, runtime):
    body = batch_of_size(520 * KB)

    client.post("/v1/batch", content=body, headers=json_headers())

    (letter,) = [decode_any(p) for p in runtime.bus.read_all(DLQ)]
    assert "500 KB" in letter["reason"]
    assert letter["payload"].startswith('{"batch"')


def test_a_far_larger_batch_gets_400_saying_500_kb_too(client, runtime):
    body = batch_of_size(3 * 1024 * KB)

    response = client.post("/v1/batch", content=body, headers=json_headers())

    assert_400_mentions(response, "500 KB")
    assert runtime.bus.read_all(RAW_EVENTS) == []


def test_a_gzip_batch_over_500_kb_once_inflated_gets_400_saying_500_kb(client, runtime):
    body = gzip.compress(batch_of_size(520 * KB))
    assert len(body) < 500 * KB

    response = client.post(
        "/v1/batch", content=body, headers=json_headers(**{"Content-Encoding": "gzip"})
    )

    assert_400_mentions(response, "500 KB")
    assert runtime.bus.read_all(RAW_EVENTS) == []


def test_a_gzip_bomb_gets_400_not_a_server_error(client, runtime):
    inflated = b'{"batch": [{"type": "track", "userId": "u", "event": "' + b"A" * (20 * 1024 * KB)
    bomb = gzip.compress(inflated, compresslevel=9)
    assert len(bomb) < 64 * KB < 1024 * KB < len(inflated)

    response = client.post(
        "/v1/batch", content=bomb, headers=json_headers(**{"Content-Encoding": "gzip"})
    )

    assert_400_mentions(response, "500 KB")
    assert runtime.bus.read_all(RAW_EVENTS) == []


def test_a_corrupt_gzip_body_gets_400(client, runtime):
    body = gzip.compress(b'{"batch": []}')[:-6] + b"garbage"

    response = client.post(
        "/v1/batch", content=body, headers=json_headers(**{"Content-Encoding": "gzip"})
    )

    assert response.status_code == 400
    assert set(response.json()) == {"code", "message"}


def test_a_truncated_gzip_body_gets_400(client, runtime):
    body = gzip.compress(json.dumps({"batch": [{"type": "track", "userId": "u"}]}).encode())[:-10]

    response = client.post(
        "/v1/batch", content=body, headers=json_headers(**{"Content-Encoding": "gzip"})
    )

    assert response.status_code == 400
    assert runtime.bus.read_all(RAW_EVENTS) == []
