"""The Zalo OA channel against a local Zalo (tests/peers/zalo_peer.py) that checks access
tokens, honours each refresh token once and signs its webhook events as Zalo does, on the real
PostgreSQL and Valkey: sends, a refused token refreshed once and the send made again, two
processes that meet an expired token at once spending one refresh token, a refresh ahead of
expiry, tokens that cannot be refreshed failing with what to set, inbound texts answered once,
forged events refused, and delivery and seen receipts."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from litestar.testing import TestClient
from peers.zalo_peer import ZaloPeer, zevent_signature

from c360.api.app import create_app
from c360.channels import delivery, inbox
from c360.channels.base import InboundMessage, OutboundMessage
from c360.plugins.channel_zalo import WEBHOOK_PATH, ZaloOA, signature
from c360.runtime import Runtime

PUBLIC_URL = "http://testserver.local"
CUSTOMER = "8412345678901"


@pytest.fixture
def peer() -> Iterator[ZaloPeer]:
    with ZaloPeer() as started:
        started.webhook_url = PUBLIC_URL + WEBHOOK_PATH
        yield started


@pytest.fixture
def zalo(runtime: Runtime, peer: ZaloPeer) -> Runtime:
    runtime.settings = dataclasses.replace(
        runtime.settings,
        public_url=PUBLIC_URL,
        zalo_api_url=peer.url,
        zalo_oauth_url=peer.url,
        zalo_app_id=peer.app_id,
        zalo_app_secret=peer.app_secret,
        zalo_oa_secret=peer.oa_secret,
        zalo_access_token=peer.access_token,
        zalo_refresh_token=peer.refresh_token,
    )
    return runtime


@pytest.fixture
def app(zalo: Runtime, peer: ZaloPeer) -> Iterator[TestClient]:
    with TestClient(app=create_app(zalo.settings)) as client:
        peer.client = client
        yield client


class Responder:
    def __init__(self) -> None:
        self.seen: list[InboundMessage] = []

    def __call__(self, runtime: Runtime, message: InboundMessage) -> list[OutboundMessage]:
        self.seen.append(message)
        return [
            OutboundMessage(
                channel="zalo",
                to=message.sender,
                text="Dạ, cửa hàng mở cửa đến 21:00 ạ.",
                idempotency_key=inbox.reply_key(message),
            )
        ]


@pytest.fixture
def responder(monkeypatch: pytest.MonkeyPatch) -> Responder:
    answer = Responder()
    monkeypatch.setattr(inbox, "default_responder", answer)
    return answer


def text(key: str = "z-1", to: str = CUSTOMER) -> OutboundMessage:
    return OutboundMessage(channel="zalo", to=to, text="Xin chào Lan!", idempotency_key=key)


def stored_tokens(runtime: Runtime) -> tuple[str, str, datetime | None]:
    with psycopg.connect(runtime.settings.postgres_dsn) as conn:
        return conn.execute(
            "SELECT access_token, refresh_token, expires_at FROM channels.tokens"
        ).fetchone()


def test_the_signature_is_zalos_mac(peer: ZaloPeer):
    body = b'{"app_id":"1","event_name":"user_send_text"}'
    expected = zevent_signature("1", body, "1700000000000", "oa-secret")  # the peer's own
    assert signature("1", body, "1700000000000", "oa-secret") == expected
    assert expected.startswith("mac=") and len(expected) == 4 + 64


def test_a_send_reaches_the_customer_with_the_current_token(zalo: Runtime, peer: ZaloPeer):
    sent = delivery.send_now(zalo, text())

    assert sent.status == "sent"
    [got] = peer.received
    assert (got.user_id, got.text) == (CUSTOMER, "Xin chào Lan!")
    assert got.access_token == zalo.settings.zalo_access_token
    assert sent.provider_id == got.message_id
    assert peer.refreshes == 0


def test_a_refused_token_is_refreshed_stored_and_the_send_made_again(zalo: Runtime, peer: ZaloPeer):
    first_refresh_token = zalo.settings.zalo_refresh_token
    peer.expire_access_token()
    before = datetime.now(UTC)

    sent = delivery.send_now(zalo, text())

    assert sent.status == "sent" and sent.attempts == 1
    assert peer.refreshes == 1 and peer.used_refresh_tokens == [first_refresh_token]
    access, refresh, expires_at = stored_tokens(zalo)
    assert (access, refresh) == (peer.access_token, peer.refresh_token)  # the new pair
    assert expires_at >= before + timedelta(seconds=peer.expires_in)
    assert peer.received[0].access_token == peer.access_token

    # a second expiry spends the new refresh token, never the first one again
    peer.expire_access_token()
    assert delivery.send_now(zalo, text("z-2")).status == "sent"
    assert peer.refreshes == 2
    assert len(set(peer.used_refresh_tokens)) == 2


def test_two_processes_meeting_an_expired_token_spend_one_refresh_token(
    zalo: Runtime, peer: ZaloPeer
):
    # two processes' channels: each keeps its own token in memory
    first, second = ZaloOA(zalo.settings), ZaloOA(zalo.settings)
    assert first.send(text("a")).status == second.send(text("b")).status == "sent"
    peer.expire_access_token()

    assert first.send(text("c")).status == "sent"  # refreshes
    assert second.send(text("d")).status == "sent"  # finds the stored token, no refresh

    assert peer.refreshes == 1
    assert [m.access_token for m in peer.received[2:]] == [peer.access_token] * 2


def test_a_token_about_to_expire_is_refreshed_before_the_send(zalo: Runtime, peer: ZaloPeer):
    delivery.send_now(zalo, text("z-1"))
    with psycopg.connect(zalo.settings.postgres_dsn, autocommit=True) as conn:
        conn.execute("UPDATE channels.tokens SET expires_at = now() + interval '5 minutes'")
    zalo.settings = dataclasses.replace(zalo.settings)  # a process starting now: new channels

    sent = delivery.send_now(zalo, text("z-2"))

    assert sent.status == "sent" and peer.refreshes == 1
    # the second message went out with the new token at the first try: no -216 on the way
    assert [r.access_token for r in peer.received] == [
        zalo.settings.zalo_access_token,
        peer.access_token,
    ]
    assert len(peer.requests) == 3  # send, refresh, send


def test_a_refresh_token_zalo_refuses_fails_the_send_naming_the_setting(
    zalo: Runtime, peer: ZaloPeer
):
    peer.refresh_token = "rotated-elsewhere"  # another app spent it
    peer.expire_access_token()

    row = delivery.send_now(zalo, text())

    assert row.status == "failed"
    assert "Invalid refresh token" in row.last_error
    assert "C360_ZALO_REFRESH_TOKEN" in row.last_error
    assert peer.received == []


def test_a_token_service_out_of_reach_is_retried(zalo: Runtime, peer: ZaloPeer):
    peer.expire_access_token()
    zalo.settings = dataclasses.replace(zalo.settings, zalo_oauth_url="http://127.0.0.1:9")

    row = delivery.send_now(zalo, text())

    assert row.status == "pending" and "could not be reached" in row.last_error


def test_new_tokens_in_the_settings_start_a_new_chain(zalo: Runtime, peer: ZaloPeer):
    peer.expire_access_token()
    delivery.send_now(zalo, text("z-1"))  # the stored chain moves on
    peer.refresh_token = "re-authorized-refresh"
    peer.expire_access_token()
    zalo.settings = dataclasses.replace(zalo.settings, zalo_refresh_token="re-authorized-refresh")

    assert delivery.send_now(zalo, text("z-2")).status == "sent"
    assert peer.used_refresh_tokens[-1] == "re-authorized-refresh"


def test_zalos_other_errors_fail_and_its_outages_are_retried(zalo: Runtime, peer: ZaloPeer):
    refused = delivery.send_now(zalo, text("z-1", to="not-a-follower"))
    peer.fail_next(1, 502, retry_after=None)
    outage = delivery.send_now(zalo, text("z-2"))

    assert refused.status == "failed" and refused.last_error.startswith("Zalo error -213")
    assert outage.status == "pending" and "answered 502" in outage.last_error


def test_an_inbound_text_is_answered_once(
    app: TestClient, zalo: Runtime, peer: ZaloPeer, responder: Responder
):
    first = peer.send_inbound("Mấy giờ cửa hàng đóng cửa?", CUSTOMER, msg_id="m" * 32)
    again = peer.send_inbound("Mấy giờ cửa hàng đóng cửa?", CUSTOMER, msg_id="m" * 32)

    assert first.status_code == again.status_code == 200
    assert first.json() == {"error": 0, "message": "Success"}
    [seen] = responder.seen
    assert (seen.channel, seen.sender, seen.text) == (
        "zalo",
        CUSTOMER,
        "Mấy giờ cửa hàng đóng cửa?",
    )
    assert seen.identifiers == (("zalo_id", CUSTOMER),) and seen.external_id == "m" * 32
    [reply] = peer.received
    answer = "Dạ, cửa hàng mở cửa đến 21:00 ạ."
    assert (reply.user_id, reply.text) == (CUSTOMER, answer)


def test_a_forged_event_or_one_for_another_app_is_refused_and_nothing_recorded(
    app: TestClient, zalo: Runtime, peer: ZaloPeer, responder: Responder
):
    forged = peer.send_inbound("hi", CUSTOMER, signature="mac=" + "0" * 64)
    other_app = peer.post_event(
        {
            "app_id": "999",
            "event_name": "user_send_text",
            "timestamp": "1700000000000",
            "sender": {"id": CUSTOMER},
            "message": {"text": "hi", "msg_id": "x"},
        }
    )

    assert forged.status_code == other_app.status_code == 403
    assert "C360_ZALO_OA_SECRET" in forged.json()["message"]
    assert responder.seen == []
    with psycopg.connect(zalo.settings.postgres_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM channels.inbound").fetchone()[0] == 0


def test_receipts_mark_messages_delivered_then_read(app: TestClient, zalo: Runtime, peer: ZaloPeer):
    sent = delivery.send_now(zalo, text())

    assert peer.send_receipt([sent.provider_id]).status_code == 200
    assert delivery.get(zalo, sent.delivery_id).status == "delivered"
    assert peer.send_receipt([sent.provider_id], seen=True).status_code == 200
    assert delivery.get(zalo, sent.delivery_id).status == "read"


def test_other_events_are_acknowledged_and_ignored(
    app: TestClient, zalo: Runtime, peer: ZaloPeer, responder: Responder
):
    answer = peer.post_event(
        {
            "app_id": peer.app_id,
            "event_name": "follow",
            "timestamp": "1700000000000",
            "follower": {"id": CUSTOMER},
        }
    )
    assert answer.status_code == 200 and responder.seen == []
