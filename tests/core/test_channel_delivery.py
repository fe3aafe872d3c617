"""The outbox (c360.channels.delivery) and the inbox (c360.channels.inbox) on the real
PostgreSQL and Valkey, sending through the real webhook channel to a local receiver that
checks every post (tests/peers/webhook_peer.py): a key is sent once, a failing receiver is
retried with back-off until it takes the message, a row whose worker was killed mid-send is
sent again once its lease runs out, providers' updates only move a delivery forward, counts
reach /metrics, and an inbound message is answered once, even after its process died."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from peers.webhook_peer import WebhookPeer

from c360.channels import delivery, inbox
from c360.channels.base import DeliveryUpdate, InboundMessage, OutboundMessage
from c360.channels.delivery import DeliverySender, UnknownChannel
from c360.errors import InputError
from c360.runtime import Runtime
from c360.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def peer() -> Iterator[WebhookPeer]:
    with WebhookPeer() as started:
        yield started


@pytest.fixture
def outbox(runtime: Runtime, peer: WebhookPeer) -> Runtime:
    """The runtime with the webhook channel pointed at the peer."""
    runtime.settings = _with(
        runtime, webhook_url=peer.url + "/hooks/c360", webhook_secret=peer.secret
    )
    return runtime


def _with(runtime: Runtime, **changes: object) -> Settings:
    return dataclasses.replace(runtime.settings, **changes)


def message(key: str = "k-1", text: str = "Your order has shipped") -> OutboundMessage:
    return OutboundMessage(
        channel="webhook",
        to="customer-42",
        text=text,
        idempotency_key=key,
        purpose="orders",
        profile_id="7f9d3c1e-1111-4222-8333-444455556666",
        metadata={"order": "A-17"},
    )


def test_a_message_is_posted_signed_and_recorded_as_sent(outbox: Runtime, peer: WebhookPeer):
    sent = delivery.send_now(outbox, message())

    assert sent.status == "sent" and sent.attempts == 1
    assert peer.keys == ["k-1"]  # the peer checked timestamp, signature and key
    assert peer.received == [
        {
            "id": "k-1",
            "to": "customer-42",
            "profile_id": "7f9d3c1e-1111-4222-8333-444455556666",
            "purpose": "orders",
            "subject": None,
            "text": "Your order has shipped",
            "metadata": {"order": "A-17"},
        }
    ]
    assert [kind for kind, _, _ in delivery.events(outbox, sent.delivery_id)] == [
        "pending",
        "sent",
    ]


def test_the_same_key_is_sent_once(outbox: Runtime, peer: WebhookPeer):
    first = delivery.send_now(outbox, message())
    again = delivery.send_now(outbox, message(text="a different text, same key"))
    queued = delivery.enqueue(outbox, message())

    assert first.delivery_id == again.delivery_id == queued
    assert len(peer.requests) == 1
    with psycopg.connect(outbox.settings.postgres_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM channels.deliveries").fetchone()[0] == 1


def test_a_failing_receiver_is_retried_with_back_off_until_it_takes_the_message(
    outbox: Runtime, peer: WebhookPeer
):
    peer.fail_next(2, 503, retry_after=None)
    now = datetime.now(UTC)

    first = delivery.send_now(outbox, message(), now=now)
    assert (first.status, first.attempts) == ("pending", 1)
    assert "answered 503" in first.last_error
    # the first wait is drawn between half and all of RETRY_FIRST
    wait = first.next_attempt_at - now
    assert delivery.RETRY_FIRST / 2 <= wait <= delivery.RETRY_FIRST

    assert delivery.run_due(outbox, now=now) == 0  # not due yet
    second_try = first.next_attempt_at + timedelta(seconds=1)
    assert delivery.run_due(outbox, now=second_try) == 1
    second = delivery.get(outbox, first.delivery_id)
    wait = second.next_attempt_at - second_try
    assert delivery.RETRY_FIRST <= wait <= delivery.RETRY_FIRST * 2  # doubled

    assert delivery.run_due(outbox, now=second.next_attempt_at) == 1
    done = delivery.get(outbox, first.delivery_id)
    assert (done.status, done.attempts, done.last_error) == ("sent", 3, None)
    assert len(peer.requests) == 3 and peer.keys == ["k-1"]
    kinds = [kind for kind, _, _ in delivery.events(outbox, first.delivery_id)]
    assert kinds == ["pending", "retry", "retry", "sent"]


def test_a_providers_retry_after_is_honoured(outbox: Runtime, peer: WebhookPeer):
    peer.fail_next(1, 429, retry_after=900)
    now = datetime.now(UTC)

    first = delivery.send_now(outbox, message(), now=now)

    assert first.status == "pending"
    assert first.next_attempt_at - now >= timedelta(seconds=900)


def test_retries_stop_after_the_last_attempt_and_the_message_fails(
    outbox: Runtime, peer: WebhookPeer
):
    peer.fail_next(delivery.MAX_ATTEMPTS, 500, retry_after=None)
    moment = datetime.now(UTC)
    row = delivery.send_now(outbox, message(), now=moment)
    while row.status == "pending":
        moment = row.next_attempt_at
        delivery.run_due(outbox, now=moment)
        row = delivery.get(outbox, row.delivery_id)

    assert (row.status, row.attempts) == ("failed", delivery.MAX_ATTEMPTS)
    assert row.last_error.startswith(f"gave up after {delivery.MAX_ATTEMPTS} attempts")
    assert peer.received == []


def test_a_refusal_fails_at_once_with_the_receivers_words(outbox: Runtime, peer: WebhookPeer):
    outbox.settings = _with(outbox, webhook_secret="not-the-receivers-secret")

    row = delivery.send_now(outbox, message())

    assert (row.status, row.attempts) == ("failed", 1)
    assert "answered 401" in row.last_error and "bad signature" in row.last_error


def test_a_row_whose_lease_is_live_is_left_alone_and_an_expired_one_is_sent_again(
    outbox: Runtime, peer: WebhookPeer
):
    now = datetime.now(UTC)
    delivery_id = delivery.enqueue(outbox, message(), now=now)
    # what a worker leaves when it dies after claiming the row and before recording the outcome
    with psycopg.connect(outbox.settings.postgres_dsn, autocommit=True) as conn:
        conn.execute(
            "UPDATE channels.deliveries SET status = 'sending', attempts = 1, lease_until = %s"
            " WHERE delivery_id = %s",
            (now + delivery.LEASE, delivery_id),
        )

    assert delivery.run_due(outbox, now=now) == 0
    assert delivery.run_due(outbox, now=now + delivery.LEASE + timedelta(seconds=1)) == 1

    row = delivery.get(outbox, delivery_id)
    assert (row.status, row.attempts) == ("sent", 2)
    kinds = [kind for kind, _, _ in delivery.events(outbox, delivery_id)]
    assert kinds == ["pending", "lease_expired", "sent"]


def test_a_sender_killed_mid_send_is_replaced_and_the_receiver_keeps_the_message_once(
    outbox: Runtime, peer: WebhookPeer
):
    release = peer.stall_next()  # the receiver hangs, so the sender is killed mid-send
    delivery_id = delivery.enqueue(outbox, message())
    script = textwrap.dedent(
        f"""
        from c360.channels import delivery
        from c360.runtime import Runtime
        from c360.settings import load_settings
        settings = load_settings({{
            "postgres_dsn": {outbox.settings.postgres_dsn!r},
            "valkey_url": {outbox.settings.valkey_url!r},
            "webhook_url": {outbox.settings.webhook_url!r},
            "webhook_secret": {outbox.settings.webhook_secret!r},
            "data_dir": {str(outbox.settings.data_dir)!r},
        }}, environ={{}})
        delivery.run_due(Runtime(settings))
        """
    )
    worker = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT)
    try:
        _wait_for(lambda: len(peer.requests) == 1, "the killed sender's post")
        os.kill(worker.pid, signal.SIGKILL)
    finally:
        worker.wait(10)
    release.set()  # the receiver answers into a closed connection
    assert delivery.get(outbox, delivery_id).status == "sending"

    later = datetime.now(UTC) + delivery.LEASE + timedelta(seconds=1)
    assert delivery.run_due(outbox, now=later) == 1

    row = delivery.get(outbox, delivery_id)
    assert (row.status, row.attempts) == ("sent", 2)
    assert len(peer.requests) == 2  # at least once on the wire...
    assert peer.keys == ["k-1"] and len(peer.received) == 1  # ...once for the receiver


def test_addresses_are_sent_side_by_side_and_each_address_in_order(
    outbox: Runtime, peer: WebhookPeer
):
    for number in range(3):
        for address in ("ana", "binh"):
            delivery.enqueue(
                outbox,
                dataclasses.replace(
                    message(f"{address}-{number}", text=f"{address} {number}"), to=address
                ),
            )
    release = peer.stall_next(2)
    passing = threading.Thread(target=delivery.run_due, args=(outbox,))
    passing.start()
    try:
        # both addresses' first messages are in flight at once
        _wait_for(lambda: len(peer.requests) == 2, "two posts at once")
    finally:
        release.set()
        passing.join(30)

    assert len(peer.received) == 6
    for address in ("ana", "binh"):
        texts = [body["text"] for body in peer.received if body["to"] == address]
        assert texts == [f"{address} 0", f"{address} 1", f"{address} 2"]


def test_a_claimed_row_whose_lease_runs_short_is_handed_back_unsent(
    outbox: Runtime, peer: WebhookPeer, monkeypatch: pytest.MonkeyPatch
):
    delivery_id = delivery.enqueue(outbox, message())
    monkeypatch.setattr(delivery, "LEASE_MARGIN", delivery.LEASE + timedelta(minutes=1))

    assert delivery.run_due(outbox) == 1

    row = delivery.get(outbox, delivery_id)
    assert (row.status, row.attempts) == ("pending", 0)
    assert peer.requests == []


def test_updates_move_a_delivery_forward_and_never_back(outbox: Runtime, peer: WebhookPeer):
    row = delivery.send_now(outbox, message())
    at = datetime.now(UTC)

    def update(state: str, error: str | None = None) -> str:
        update = DeliveryUpdate(
            channel="webhook", provider_id="k-1", state=state, at=at, error=error
        )
        assert delivery.apply_update(outbox, update) == row.delivery_id
        return delivery.get(outbox, row.delivery_id).status

    assert update("delivered") == "delivered"
    assert update("sent") == "delivered"  # a late callback does not move it back
    assert update("opened") == "read"
    assert update("failed", "carrier lost it") == "read"  # a late failure undoes nothing
    kinds = [kind for kind, _, _ in delivery.events(outbox, row.delivery_id)]
    assert kinds == ["pending", "sent", "delivered", "sent", "opened", "failed"]


def test_a_failure_after_sending_marks_the_delivery_failed_with_the_reason(outbox: Runtime):
    row = delivery.send_now(outbox, message())
    update = DeliveryUpdate(
        channel="webhook", provider_id="k-1", state="bounced", at=datetime.now(UTC), error="550"
    )

    delivery.apply_update(outbox, update)

    after = delivery.get(outbox, row.delivery_id)
    assert (after.status, after.last_error) == ("bounced", "550")


def test_an_update_for_a_message_c360_never_sent_changes_nothing(outbox: Runtime):
    update = DeliveryUpdate(
        channel="webhook", provider_id="nobody", state="delivered", at=datetime.now(UTC)
    )
    assert delivery.apply_update(outbox, update) is None


def test_delivery_events_cannot_be_rewritten(outbox: Runtime):
    delivery.send_now(outbox, message())
    with psycopg.connect(outbox.settings.postgres_dsn, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            conn.execute("UPDATE channels.delivery_events SET kind = 'sent'")


def test_outcomes_are_counted_by_channel_on_metrics(outbox: Runtime, peer: WebhookPeer):
    from litestar.testing import TestClient

    from c360.api.app import create_app

    peer.fail_next(1, 503, retry_after=None)
    first = delivery.send_now(outbox, message("k-1"))
    delivery.run_due(outbox, now=first.next_attempt_at)
    delivery.send_now(outbox, message("k-2"))
    delivery.record_event(outbox, first.delivery_id, "opened")

    assert delivery.counts(outbox.valkey) == {
        ("webhook", "retry"): 1,
        ("webhook", "sent"): 2,
        ("webhook", "opened"): 1,
    }
    with TestClient(app=create_app(outbox.settings)) as client:
        text = client.get("/metrics").text
    assert 'c360_deliveries_total{channel="webhook",outcome="sent"} 2.0' in text
    assert 'c360_deliveries_total{channel="webhook",outcome="retry"} 1.0' in text


def test_a_message_on_a_channel_not_configured_is_refused_naming_the_settings(runtime):
    sms = OutboundMessage(channel="sms", to="+84901234567", text="hi", idempotency_key="s-1")

    with pytest.raises(UnknownChannel, match="C360_TWILIO_ACCOUNT_SID"):
        delivery.enqueue(runtime, sms)


def test_a_message_without_a_key_or_with_a_bad_profile_id_is_refused(outbox: Runtime):
    with pytest.raises(InputError, match="idempotency key"):
        delivery.enqueue(outbox, message(key=" "))
    bad = OutboundMessage(
        channel="webhook", to="x", text="hi", idempotency_key="k", profile_id="not-a-uuid"
    )
    with pytest.raises(InputError, match="not a profile's id"):
        delivery.enqueue(outbox, bad)


def test_a_message_due_later_waits_for_its_time(outbox: Runtime, peer: WebhookPeer):
    now = datetime.now(UTC)
    delivery_id = delivery.enqueue(outbox, message(), not_before=now + timedelta(hours=2))

    assert delivery.run_due(outbox, now=now) == 0
    assert delivery.run_due(outbox, now=now + timedelta(hours=2)) == 1
    assert delivery.get(outbox, delivery_id).status == "sent"


def test_the_delivery_sender_thread_sends_what_is_queued(outbox: Runtime, peer: WebhookPeer):
    sender = DeliverySender(outbox, interval_s=0.05)
    sender.start()
    try:
        delivery.enqueue(outbox, message())
        _wait_for(lambda: peer.keys == ["k-1"], "the sender thread's post")
    finally:
        sender.stop(timeout=10)
    assert not sender.is_alive()
    assert delivery.find(outbox, "k-1").status == "sent"


# --- the inbox ------------------------------------------------------------------------------


def inbound(external_id: str = "m-1", text: str = "Where is my order?") -> InboundMessage:
    return InboundMessage(
        channel="webhook",
        sender="customer-42",
        text=text,
        external_id=external_id,
        received_at=datetime.now(UTC),
        identifiers=(("user_id", "u-42"),),
    )


class Responder:
    """Answers each message once per call, keyed so a rerun sends nothing twice."""

    def __init__(self, fail: int = 0) -> None:
        self.seen: list[InboundMessage] = []
        self.fail = fail

    def __call__(self, runtime: Runtime, message: InboundMessage) -> list[OutboundMessage]:
        self.seen.append(message)
        if self.fail:
            self.fail -= 1
            raise RuntimeError("the agent tripped")
        return [
            OutboundMessage(
                channel=message.channel,
                to=message.sender,
                text=f"About {message.text!r}: it ships today.",
                idempotency_key=inbox.reply_key(message),
            )
        ]


def test_a_message_is_answered_and_a_redelivered_one_is_not(outbox: Runtime, peer: WebhookPeer):
    responder = Responder()

    replies = inbox.receive(outbox, inbound(), responder)
    again = inbox.receive(outbox, inbound(), responder)

    assert len(replies) == 1 and again == []
    assert [m.text for m in responder.seen] == ["Where is my order?"]
    assert responder.seen[0].identifiers == (("user_id", "u-42"),)
    assert [body["text"] for body in peer.received] == [
        "About 'Where is my order?': it ships today."
    ]
    with psycopg.connect(outbox.settings.postgres_dsn) as conn:
        handled, kept = conn.execute(
            "SELECT handled_at IS NOT NULL, replies FROM channels.inbound"
        ).fetchone()
    assert handled and kept == replies


def test_a_message_whose_process_died_is_answered_by_a_worker_after_its_lease(
    outbox: Runtime, peer: WebhookPeer
):
    now = datetime.now(UTC)
    inbound_id = inbox.record(outbox, inbound(), now=now)  # ...and the process died here
    responder = Responder()

    assert inbox.handle_stale(outbox, responder, now=now) == 0
    assert inbox.handle_stale(outbox, responder, now=now + inbox.LEASE) == 1

    assert [m.external_id for m in responder.seen] == ["m-1"]
    assert len(peer.received) == 1
    assert inbox.handle_stale(outbox, responder, now=now + inbox.LEASE * 3) == 0
    assert inbound_id is not None


def test_a_failing_responder_is_tried_again_and_then_set_aside(outbox: Runtime, peer: WebhookPeer):
    now = datetime.now(UTC)
    responder = Responder(fail=10)
    assert inbox.receive(outbox, inbound(), responder) == []  # attempt 1 failed

    for attempt in range(1, inbox.MAX_ATTEMPTS + 1):
        inbox.handle_stale(outbox, responder, now=now + inbox.LEASE * 2 * attempt)

    assert len(responder.seen) == inbox.MAX_ATTEMPTS
    with psycopg.connect(outbox.settings.postgres_dsn) as conn:
        handled, error = conn.execute(
            "SELECT handled_at IS NOT NULL, last_error FROM channels.inbound"
        ).fetchone()
    assert handled and error.startswith("gave up: answering failed")
    assert "the agent tripped" in error
    assert peer.received == []


def test_a_rerun_responder_with_reply_keys_sends_each_reply_once(
    outbox: Runtime, peer: WebhookPeer
):
    message_in = inbound()
    inbound_id = inbox.record(outbox, message_in)
    responder = Responder()

    inbox.handle(outbox, inbound_id, message_in, responder)
    inbox.handle(outbox, inbound_id, message_in, responder)  # a worker's rerun

    assert len(responder.seen) == 2 and len(peer.received) == 1


def _wait_for(condition, what: str, limit_s: float = 20) -> None:
    deadline = time.monotonic() + limit_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
