"""The SMS channel against a local Twilio (tests/peers/twilio_peer.py) that checks credentials
and fields as Twilio does and signs its webhooks as Twilio does, on the real PostgreSQL and
Valkey: a send carries To, From, Body and the status callback; Twilio's refusals fail with its
code and its overloads are retried; an inbound SMS is answered once through the REST API; a
forged or wrongly addressed webhook is refused with a 403 that says what to check and records
nothing; status callbacks move deliveries on; STOP and START change the number's opt-out."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from litestar.testing import TestClient
from peers.twilio_peer import TwilioPeer, twilio_signature

from c360.api.app import create_app
from c360.channels import delivery, inbox
from c360.channels.base import DeliveryUpdate, InboundMessage, OutboundMessage
from c360.notifications import preferences
from c360.plugins.channel_sms_twilio import INBOUND_PATH, STATUS_PATH, signature
from c360.runtime import Runtime

PUBLIC_URL = "http://testserver.local"  # where the test client's requests arrive
CUSTOMER = "+84901234567"


@pytest.fixture
def twilio() -> Iterator[TwilioPeer]:
    with TwilioPeer() as peer:
        peer.inbound_url = PUBLIC_URL + INBOUND_PATH
        yield peer


@pytest.fixture
def sms(runtime: Runtime, twilio: TwilioPeer) -> Runtime:
    runtime.settings = dataclasses.replace(
        runtime.settings,
        public_url=PUBLIC_URL,
        twilio_api_url=twilio.url,
        twilio_account_sid=twilio.account_sid,
        twilio_auth_token=twilio.auth_token,
        twilio_from=twilio.number,
    )
    return runtime


@pytest.fixture
def app(sms: Runtime, twilio: TwilioPeer) -> Iterator[TestClient]:
    with TestClient(app=create_app(sms.settings)) as client:
        twilio.client = client
        yield client


class Responder:
    def __init__(self) -> None:
        self.seen: list[InboundMessage] = []

    def __call__(self, runtime: Runtime, message: InboundMessage) -> list[OutboundMessage]:
        self.seen.append(message)
        return [
            OutboundMessage(
                channel="sms",
                to=message.sender,
                text="Chào bạn! Đơn hàng A-17 sẽ giao hôm nay.",
                idempotency_key=inbox.reply_key(message),
            )
        ]


@pytest.fixture
def responder(monkeypatch: pytest.MonkeyPatch) -> Responder:
    answer = Responder()
    monkeypatch.setattr(inbox, "default_responder", answer)
    return answer


def text(key: str = "n-1") -> OutboundMessage:
    return OutboundMessage(
        channel="sms", to=CUSTOMER, text="Your order A-17 ships today", idempotency_key=key
    )


def test_the_signature_is_twilios_published_example():
    params = [
        ("CallSid", "CA1234567890ABCDE"),
        ("Caller", "+12349013030"),
        ("Digits", "1234"),
        ("From", "+12349013030"),
        ("To", "+18005551212"),
    ]
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    # Twilio's documented example; the peer's signer is written apart from c360's
    assert signature("12345", url, params) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
    assert twilio_signature("12345", url, params) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


def test_a_send_carries_to_from_body_and_the_status_callback(sms: Runtime, twilio: TwilioPeer):
    sent = delivery.send_now(sms, text())

    assert sent.status == "sent"
    [got] = twilio.received
    assert (got.to, got.from_, got.body) == (CUSTOMER, twilio.number, "Your order A-17 ships today")
    assert got.status_callback == PUBLIC_URL + STATUS_PATH
    assert sent.provider_id == got.sid


def test_twilios_refusal_fails_with_its_code_and_message(sms: Runtime, twilio: TwilioPeer):
    bad = dataclasses.replace(text(), to="0901234567")

    row = delivery.send_now(sms, bad)

    assert row.status == "failed" and twilio.received == []
    assert "error 21211" in row.last_error and "not a valid phone number" in row.last_error


def test_wrong_credentials_fail_naming_twilios_error(sms: Runtime, twilio: TwilioPeer):
    sms.settings = dataclasses.replace(sms.settings, twilio_auth_token="wrong")

    row = delivery.send_now(sms, text())

    assert row.status == "failed" and "answered 401" in row.last_error
    assert "error 20003" in row.last_error


@pytest.mark.parametrize("status", [429, 500, 503])
def test_an_overloaded_twilio_is_retried_then_sends(sms: Runtime, twilio: TwilioPeer, status):
    twilio.fail_next(1, status, retry_after=120)
    now = datetime.now(UTC)

    first = delivery.send_now(sms, text(), now=now)
    assert first.status == "pending" and (first.next_attempt_at - now).total_seconds() >= 120

    delivery.run_due(sms, now=first.next_attempt_at)
    assert delivery.get(sms, first.delivery_id).status == "sent"
    assert len(twilio.received) == 1


def test_an_inbound_sms_is_answered_once_through_the_rest_api(
    app: TestClient, sms: Runtime, twilio: TwilioPeer, responder: Responder
):
    answer = twilio.send_inbound("Đơn hàng của tôi đâu?", CUSTOMER, sid="SM" + "1" * 32)
    again = twilio.send_inbound("Đơn hàng của tôi đâu?", CUSTOMER, sid="SM" + "1" * 32)

    assert answer.status_code == again.status_code == 200
    assert answer.headers["content-type"].startswith("text/xml")
    assert answer.text.endswith("<Response/>")
    [seen] = responder.seen
    question = "Đơn hàng của tôi đâu?"
    assert (seen.channel, seen.sender, seen.text) == ("sms", CUSTOMER, question)
    assert seen.external_id == "SM" + "1" * 32
    assert seen.identifiers == (("phone", CUSTOMER),)
    [reply] = twilio.received
    assert (reply.to, reply.body) == (CUSTOMER, "Chào bạn! Đơn hàng A-17 sẽ giao hôm nay.")


def test_a_forged_webhook_is_refused_and_nothing_is_recorded(
    app: TestClient, sms: Runtime, twilio: TwilioPeer, responder: Responder
):
    params = [("MessageSid", "SM" + "2" * 32), ("From", CUSTOMER), ("Body", "hi")]
    forged = twilio_signature("not-the-token", PUBLIC_URL + INBOUND_PATH, params)

    refused = twilio.post_signed(PUBLIC_URL + INBOUND_PATH, params, signature=forged)
    unsigned = app.post(INBOUND_PATH, content=b"MessageSid=SM1&From=%2B1&Body=hi")

    assert refused.status_code == unsigned.status_code == 403
    assert refused.json()["code"] == "bad_signature"
    assert "C360_TWILIO_AUTH_TOKEN" in refused.json()["message"]
    assert "C360_PUBLIC_URL" in refused.json()["message"]
    assert responder.seen == []
    assert _count(sms, "channels.inbound") == 0


def test_a_webhook_signed_for_another_address_is_refused(
    app: TestClient, sms: Runtime, twilio: TwilioPeer, responder: Responder
):
    signed_elsewhere = twilio_signature(
        twilio.auth_token, "https://elsewhere.example" + INBOUND_PATH, [("Body", "hi")]
    )
    moved = twilio.post_signed(PUBLIC_URL + INBOUND_PATH, [("Body", "hi")], signed_elsewhere)

    assert moved.status_code == 403
    assert _count(sms, "channels.inbound") == 0


def test_status_callbacks_move_the_delivery_on(app: TestClient, sms: Runtime, twilio: TwilioPeer):
    delivered = delivery.send_now(sms, text("n-1"))
    lost = delivery.send_now(sms, text("n-2"))

    assert twilio.send_status(delivered.provider_id, "sent").status_code == 204
    assert twilio.send_status(delivered.provider_id, "delivered").status_code == 204
    assert twilio.send_status(lost.provider_id, "undelivered", "30003").status_code == 204

    assert delivery.get(sms, delivered.delivery_id).status == "delivered"
    after = delivery.get(sms, lost.delivery_id)
    assert (after.status, after.last_error) == ("failed", "Twilio error 30003")


def test_a_status_callback_that_overtakes_the_sends_answer_is_applied_when_it_is_recorded(
    app: TestClient, sms: Runtime, twilio: TwilioPeer
):
    early: list[int] = []

    def deliver_first(sent) -> None:  # Twilio's callbacks: before its 201 reached c360
        early.append(twilio.send_status(sent.sid, "sent").status_code)
        early.append(twilio.send_status(sent.sid, "delivered").status_code)

    twilio.before_answer = deliver_first

    row = delivery.send_now(sms, text())

    assert early == [204, 204]
    assert row.status == "delivered"
    kinds = [kind for kind, _, _ in delivery.events(sms, row.delivery_id)]
    assert kinds == ["pending", "sent", "sent", "delivered"]
    assert _count(sms, "channels.early_updates") == 0


def test_an_update_for_a_message_never_sent_is_kept_a_day_then_dropped(sms: Runtime):
    now = datetime.now(UTC)
    stray = DeliveryUpdate(channel="sms", provider_id="SMnever", state="delivered", at=now)

    assert delivery.apply_update(sms, stray) is None
    with sms.pool.connection() as conn:
        conn.execute(
            "UPDATE channels.early_updates SET received_at = received_at - %s",
            (delivery.EARLY_UPDATE_TTL + timedelta(minutes=1),),
        )
    assert delivery.apply_update(sms, dataclasses.replace(stray, provider_id="SMother")) is None

    with sms.pool.connection() as conn:
        kept = conn.execute("SELECT provider_id FROM channels.early_updates").fetchall()
    assert kept == [("SMother",)]


def test_a_forged_status_callback_changes_nothing(
    app: TestClient, sms: Runtime, twilio: TwilioPeer
):
    sent = delivery.send_now(sms, text())
    params = [("MessageSid", sent.provider_id), ("MessageStatus", "failed")]

    answer = twilio.post_signed(PUBLIC_URL + STATUS_PATH, params, signature="bm90IGl0")

    assert answer.status_code == 403
    assert delivery.get(sms, sent.delivery_id).status == "sent"


@pytest.mark.parametrize("keyword", ["STOP", "stop", " Unsubscribe ", "QUIT"])
def test_stop_opts_the_number_out_without_asking_the_agent(
    app: TestClient, sms: Runtime, twilio: TwilioPeer, responder: Responder, keyword: str
):
    answer = twilio.send_inbound(keyword, CUSTOMER)

    assert answer.status_code == 200 and answer.text.endswith("<Response/>")
    assert responder.seen == [] and twilio.received == []
    assert not _allows(sms, CUSTOMER)
    assert _allows(sms, "+84909999999")  # only that number


def test_start_opts_the_number_back_in(
    app: TestClient, sms: Runtime, twilio: TwilioPeer, responder: Responder
):
    twilio.send_inbound("STOP", CUSTOMER)
    twilio.send_inbound("START", CUSTOMER)

    assert _allows(sms, CUSTOMER)
    assert responder.seen == []


def test_stop_inside_a_sentence_is_an_ordinary_message(
    app: TestClient, sms: Runtime, twilio: TwilioPeer, responder: Responder
):
    twilio.send_inbound("please don't stop the delivery", CUSTOMER)

    assert len(responder.seen) == 1 and _allows(sms, CUSTOMER)


def _allows(runtime: Runtime, number: str) -> bool:
    with psycopg.connect(runtime.settings.postgres_dsn) as conn:
        return preferences.allows(
            conn, channel="sms", purpose="marketing", profile_id=None, address=number
        )


def _count(runtime: Runtime, table: str) -> int:
    with psycopg.connect(runtime.settings.postgres_dsn) as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
