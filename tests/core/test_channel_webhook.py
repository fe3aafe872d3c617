"""The generic webhook channel's wire format, checked by a receiver written apart from c360
(tests/peers/webhook_peer.py): the signature covers the timestamp and the exact body, the
Idempotency-Key is the message's key on every attempt, and a receiver that hangs past the
timeout is retried. Retries, leases and idempotency in general are in test_channel_delivery."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
from collections.abc import Iterator

import pytest
from peers.webhook_peer import WebhookPeer

from c360.channels import delivery, http
from c360.channels.base import OutboundMessage
from c360.plugins.channel_webhook import signature
from c360.runtime import Runtime


@pytest.fixture
def peer() -> Iterator[WebhookPeer]:
    with WebhookPeer() as started:
        yield started


@pytest.fixture
def hooked(runtime: Runtime, peer: WebhookPeer) -> Runtime:
    runtime.settings = dataclasses.replace(
        runtime.settings, webhook_url=peer.url + "/hooks/c360", webhook_secret=peer.secret
    )
    return runtime


def message(key: str = "w-1") -> OutboundMessage:
    return OutboundMessage(channel="webhook", to="crm-7", text="Chào Lan", idempotency_key=key)


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body():
    body = b'{"id":"w-1"}'
    expected = hmac.new(b"s3cret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert signature("s3cret", "1700000000", body) == f"sha256={expected}"


def test_each_post_is_signed_over_its_exact_bytes_and_keyed(hooked: Runtime, peer: WebhookPeer):
    delivery.send_now(hooked, message())

    [request] = peer.requests
    timestamp = request.headers["x-c360-timestamp"]
    mac = hmac.new(peer.secret.encode(), f"{timestamp}.".encode() + request.body, hashlib.sha256)
    assert request.headers["x-c360-signature"] == "sha256=" + mac.hexdigest()
    assert request.headers["idempotency-key"] == "w-1"
    assert request.headers["content-type"] == "application/json"
    assert request.json()["text"] == "Chào Lan"  # UTF-8 JSON


def test_a_retried_post_carries_the_same_idempotency_key(hooked: Runtime, peer: WebhookPeer):
    peer.fail_next(1, 502, retry_after=None)
    first = delivery.send_now(hooked, message())
    delivery.run_due(hooked, now=first.next_attempt_at)

    assert [r.headers["idempotency-key"] for r in peer.requests] == ["w-1", "w-1"]
    assert len(peer.received) == 1


def test_a_receiver_that_hangs_past_the_timeout_is_retried(
    hooked: Runtime, peer: WebhookPeer, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(http, "SEND_TIMEOUT_S", 0.5)
    hooked.settings = dataclasses.replace(hooked.settings)  # a channel built with that timeout
    release = peer.stall_next()
    try:
        row = delivery.send_now(hooked, message())
    finally:
        release.set()

    assert row.status == "pending" and "could not be reached" in row.last_error
