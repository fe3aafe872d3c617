"""F4 notifications by SMS, end to end through a local Twilio (tests/peers/twilio_peer.py)
and the gateway's SMS webhooks: a first purchase plans a text to the number the customer
typed (read as E.164 in the default region), the scheduler renders it in her language and
the outbox posts it to Twilio's Messages API; Twilio's status callback marks it delivered;
her STOP reply opts the number out, so the next rule's text is not sent (and says why), and
START lets texts through again."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from litestar.testing import TestClient
from notify_support import Clock, cart, feed, identify, order, rule, run_scheduler, sends, template
from peers.twilio_peer import TwilioPeer

from c360.api.app import create_app
from c360.channels import delivery
from c360.runtime import Runtime

PUBLIC_URL = "http://testserver.local"
LAN_TYPED = "0901 234 567"  # as a Vietnamese customer writes her number
LAN_E164 = "+84901234567"
START = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def twilio() -> Iterator[TwilioPeer]:
    with TwilioPeer() as peer:
        peer.inbound_url = PUBLIC_URL + "/v1/channels/sms/twilio"
        yield peer


@pytest.fixture
def app(runtime: Runtime, twilio: TwilioPeer) -> Iterator[TestClient]:
    runtime.settings = dataclasses.replace(
        runtime.settings,
        public_url=PUBLIC_URL,
        engage_secret="sms-test-secret",
        quiet_hours="",
        twilio_api_url=twilio.url,
        twilio_account_sid=twilio.account_sid,
        twilio_auth_token=twilio.auth_token,
        twilio_from=twilio.number,
    )
    with TestClient(app=create_app(runtime.settings)) as client:
        twilio.client = client
        yield client


def _sms_rules(runtime: Runtime) -> None:
    for name, body in (
        ("thanks", "Cảm ơn {{ profile.traits.name }} đã mua hàng!"),
        ("cart", "{{ profile.traits.name }} ơi, giỏ hàng của bạn vẫn đang chờ."),
    ):
        template(runtime, name, channel="sms", subject=None, html=None, body=body)
    rule(runtime, "first", template="thanks", channel="sms")
    rule(runtime, "cart", trigger="cart_abandoned", template="cart", channel="sms")


def test_a_first_purchase_texts_the_customer_and_twilio_reports_it_delivered(
    runtime: Runtime, app: TestClient, twilio: TwilioPeer
):
    clock = Clock(START)
    _sms_rules(runtime)
    marketing = {"marketing": True}
    feed(runtime, clock, identify("lan", START, marketing, name="Lan", phone=LAN_TYPED))
    feed(runtime, clock, order("lan", "120000", START))

    run_scheduler(runtime, clock)

    [text] = twilio.received
    assert (text.to, text.from_) == (LAN_E164, twilio.number)
    assert text.body.startswith("Cảm ơn Lan đã mua hàng!")
    [send] = sends(runtime)
    assert send["state"] == "enqueued" and send["channel"] == "sms"
    row = delivery.find(runtime, f"notify:{send['send_id']}")
    assert (row.status, row.provider_id, row.address) == ("sent", text.sid, LAN_E164)

    assert twilio.send_status(text.sid, "delivered").status_code == 204

    assert delivery.get(runtime, row.delivery_id).status == "delivered"


def test_a_stop_reply_opts_the_number_out_and_start_lets_texts_through_again(
    runtime: Runtime, app: TestClient, twilio: TwilioPeer
):
    clock = Clock(START)
    _sms_rules(runtime)
    feed(runtime, clock, identify("lan", START, {"marketing": True}, name="Lan", phone=LAN_TYPED))
    feed(runtime, clock, order("lan", "120000", START))
    run_scheduler(runtime, clock)
    assert len(twilio.received) == 1

    assert twilio.send_inbound("Stop", LAN_E164).status_code == 200
    feed(runtime, clock, cart("lan", clock.advance(minutes=5)))
    clock.advance(hours=1, minutes=1)
    run_scheduler(runtime, clock)

    assert len(twilio.received) == 1  # STOP holds: nothing more was texted
    cart_send = sends(runtime)[-1]
    assert cart_send["state"] == "suppressed" and "unsubscribed" in cart_send["reason"]

    assert twilio.send_inbound("START", LAN_E164).status_code == 200
    feed(runtime, clock, cart("lan", clock.advance(minutes=5)))
    clock.advance(hours=1, minutes=1)
    run_scheduler(runtime, clock)

    reminder = "Lan ơi, giỏ hàng của bạn vẫn đang chờ."
    assert [t.body for t in twilio.received][1:] == [reminder]
