"""The push channel against a local FCM HTTP v1 endpoint (tests/peers/push_peer.py) that checks
the bearer token, the project and the message's shape as FCM does: a notification arrives
with its title, body and string data; an unregistered device token and a refused credential
fail with FCM's reason; quota and outage answers are retried after Retry-After."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from peers.push_peer import PushPeer

from c360.channels import delivery
from c360.channels.base import OutboundMessage
from c360.runtime import Runtime

DEVICE = "fcm-device-token-" + "a" * 40


@pytest.fixture
def peer() -> Iterator[PushPeer]:
    with PushPeer() as started:
        yield started


@pytest.fixture
def push(runtime: Runtime, peer: PushPeer) -> Runtime:
    runtime.settings = dataclasses.replace(
        runtime.settings, push_url=peer.url, push_project=peer.project, push_token=peer.token
    )
    return runtime


def notification(key: str = "p-1", to: str = DEVICE) -> OutboundMessage:
    return OutboundMessage(
        channel="push",
        to=to,
        subject="Giỏ hàng đang chờ bạn",
        text="Còn 2 sản phẩm trong giỏ hàng.",
        idempotency_key=key,
        purpose="cart",
        metadata={"cart_id": "c-9", "deep_link": "shop://cart"},
    )


def test_a_notification_arrives_with_title_body_and_data(push: Runtime, peer: PushPeer):
    sent = delivery.send_now(push, notification())

    assert sent.status == "sent"
    [got] = peer.received
    assert (got.token, got.title, got.body) == (
        DEVICE,
        "Giỏ hàng đang chờ bạn",
        "Còn 2 sản phẩm trong giỏ hàng.",
    )
    assert got.data == {"cart_id": "c-9", "deep_link": "shop://cart"}
    assert sent.provider_id == got.name and got.name.startswith(f"projects/{peer.project}/")


def test_without_a_subject_the_notification_has_only_a_body(push: Runtime, peer: PushPeer):
    delivery.send_now(push, dataclasses.replace(notification(), subject=None, metadata={}))

    [got] = peer.received
    assert (got.title, got.body, got.data) == (None, "Còn 2 sản phẩm trong giỏ hàng.", {})


def test_an_unregistered_device_fails_with_fcms_reason(push: Runtime, peer: PushPeer):
    peer.unregister(DEVICE)

    row = delivery.send_now(push, notification())

    assert row.status == "failed" and row.attempts == 1
    assert "answered 404" in row.last_error and "UNREGISTERED" in row.last_error


def test_a_refused_credential_fails_naming_fcms_status(push: Runtime, peer: PushPeer):
    push.settings = dataclasses.replace(push.settings, push_token="expired")

    row = delivery.send_now(push, notification())

    assert row.status == "failed" and "UNAUTHENTICATED" in row.last_error
    assert peer.received == []


@pytest.mark.parametrize(("status", "reason"), [(429, "QUOTA_EXCEEDED"), (503, "UNAVAILABLE")])
def test_quota_and_outages_are_retried_after_retry_after(
    push: Runtime, peer: PushPeer, status: int, reason: str
):
    peer.fail_next(1, status, retry_after=300)
    now = datetime.now(UTC)

    first = delivery.send_now(push, notification(), now=now)

    assert first.status == "pending" and reason in first.last_error
    assert (first.next_attempt_at - now).total_seconds() >= 300
    delivery.run_due(push, now=first.next_attempt_at)
    assert delivery.get(push, first.delivery_id).status == "sent"
    assert len(peer.received) == 1
