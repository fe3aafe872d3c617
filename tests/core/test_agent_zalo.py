"""A conversation on Zalo, end to end: a customer known to c360 by her Zalo id (an
`externalIds` entry on her identify event) writes to the Official Account; the local Zalo
(tests/peers/zalo_peer.py) signs the webhook events as Zalo does and checks the access token
on every send; the real agent answers her by name, about her last order, in Vietnamese, and
the conversation is the one she already has on other channels."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from agent_world import identify, inbound, load_catalogue, order, send_events
from litestar.testing import TestClient
from peers.zalo_peer import ZaloPeer

from c360.agents import service
from c360.api.app import create_app
from c360.plugins.channel_zalo import WEBHOOK_PATH
from c360.runtime import Runtime

PUBLIC_URL = "http://testserver.local"
LAN_ZALO = "5831250971234567890"


@pytest.fixture
def peer() -> Iterator[ZaloPeer]:
    with ZaloPeer() as started:
        started.webhook_url = PUBLIC_URL + WEBHOOK_PATH
        yield started


@pytest.fixture
def app(runtime: Runtime, peer: ZaloPeer) -> Iterator[TestClient]:
    load_catalogue(runtime)
    lan = identify("u-lan-z", name="Trần Thị Mai", language="vi", email="mai@example.vn")
    lan["context"] = {"externalIds": [{"id": LAN_ZALO, "type": "zalo_id"}]}
    send_events(
        runtime,
        lan,
        order(
            "u-lan-z",
            "ORD-3003",
            "2026-06-02",
            [("CF-001", "Cà phê sữa đá", "coffee", 3, 29000)],
        ),
    )
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
    with TestClient(app=create_app(runtime.settings)) as client:
        peer.client = client
        yield client


def test_a_customer_known_by_her_zalo_id_is_answered_by_name_about_her_order(runtime, app, peer):
    assert peer.send_inbound("Xin chào", LAN_ZALO).status_code == 200
    assert peer.send_inbound("Đơn hàng của tôi đâu rồi?", LAN_ZALO).status_code == 200

    hello, status = peer.received
    assert hello.user_id == LAN_ZALO and status.user_id == LAN_ZALO
    # her given name is the last word of "Trần Thị Mai"; she wrote in Vietnamese
    assert hello.text.startswith("Xin chào Mai!")
    # three iced coffees at 29,000 VND, ordered on 2 June 2026
    assert "ORD-3003" in status.text
    assert "02/06/2026" in status.text
    assert "87.000 ₫" in status.text


def test_a_redelivered_zalo_event_is_answered_once(runtime, app, peer):
    peer.send_inbound("Xin chào", LAN_ZALO, msg_id="zmsg-1")
    peer.send_inbound("Xin chào", LAN_ZALO, msg_id="zmsg-1")

    assert len(peer.received) == 1


def test_zalo_and_web_chat_share_the_customers_conversation(runtime, app, peer):
    peer.send_inbound("Xin chào", LAN_ZALO)
    on_chat = service.converse(
        runtime,
        inbound(
            "Đơn hàng của tôi đâu rồi?",
            channel="webchat",
            sender="chat-mai",
            identifiers=(("user_id", "u-lan-z"),),
        ),
    )[0]

    turns = service.history(runtime, on_chat.metadata["conversation_id"])
    assert [t["channel"] for t in turns] == ["zalo", "zalo", "webchat", "webchat"]
    assert "ORD-3003" in on_chat.text
