"""Escalation to a person, for each trigger (an explicit request, two unsure turns in a row,
an upset customer, a complaint from a high-value customer), and the operator's side: the
queue, taking a conversation, an answer delivered to the customer by SMS through a local
Twilio (tests/peers/twilio_peer.py), the agent silent meanwhile, and the hand-back."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from agent_world import identify, inbound, load_catalogue, make_lan, order, send_events
from litestar.testing import TestClient
from peers.twilio_peer import TwilioPeer

from c360 import tokens
from c360.agents import escalation, service
from c360.api.app import create_app
from c360.runtime import Runtime

PUBLIC_URL = "http://testserver.local"
INBOUND_PATH = "/v1/channels/sms/twilio"
LAN_PHONE = "+84901234567"


@pytest.fixture
def world(runtime, monkeypatch):
    load_catalogue(runtime)
    return {"lan": make_lan(runtime)}


@pytest.fixture
def twilio() -> Iterator[TwilioPeer]:
    with TwilioPeer() as peer:
        peer.inbound_url = PUBLIC_URL + INBOUND_PATH
        yield peer


@pytest.fixture
def app(runtime: Runtime, world, twilio: TwilioPeer) -> Iterator[TestClient]:
    runtime.settings = dataclasses.replace(
        runtime.settings,
        public_url=PUBLIC_URL,
        twilio_api_url=twilio.url,
        twilio_account_sid=twilio.account_sid,
        twilio_auth_token=twilio.auth_token,
        twilio_from=twilio.number,
    )
    with TestClient(app=create_app(runtime.settings)) as client:
        twilio.client = client

        def bearer(scopes: list[str]) -> dict[str, str]:
            with runtime.pool.connection() as conn:
                token, _ = tokens.create_token(conn, "user:root", "ops", scopes)
            return {"Authorization": f"Bearer {token}"}

        client.bearer = bearer
        yield client


def _queue(runtime):
    with runtime.pool.connection() as conn:
        return escalation.queue(conn)


def _say(runtime, text, **options):
    return service.converse(runtime, inbound(text, **options))


def test_an_sms_asking_for_a_person_is_queued_answered_by_an_operator_and_handed_back(
    runtime, app, twilio
):
    assert twilio.send_inbound("Cho tôi gặp nhân viên", LAN_PHONE).status_code == 200

    # the customer is told, by SMS, that a person will take over
    [told] = twilio.received
    assert told.to == LAN_PHONE
    assert "chuyển cuộc trò chuyện cho nhân viên" in told.body
    [queued] = _queue(runtime)
    assert (queued["reason"], queued["status"], queued["channel"]) == (
        "human_request",
        "queued",
        "sms",
    )
    conversation_id = str(queued["conversation_id"])

    # while an operator has it, the agent stays quiet
    twilio.send_inbound("Alo, còn đó không?", LAN_PHONE)
    assert len(twilio.received) == 1

    operator = app.bearer(["agents:read", "agents:operate"])
    taken = app.post(f"/v1/agents/escalations/{queued['escalation_id']}/take", headers=operator)
    assert taken.status_code == 200 and taken.json()["status"] == "taken"
    answer = app.post(
        f"/v1/agents/conversations/{conversation_id}/reply",
        json={"text": "Chào chị Lan, em là Hoa. Đơn ORD-1001 sẽ giao chiều nay ạ."},
        headers=operator,
    )
    assert answer.status_code == 201, answer.text
    assert twilio.received[-1].to == LAN_PHONE
    operator_text = "Chào chị Lan, em là Hoa. Đơn ORD-1001 sẽ giao chiều nay ạ."
    assert twilio.received[-1].body == operator_text
    assert _queue(runtime)[0]["status"] == "answered"

    back = app.post(f"/v1/agents/conversations/{conversation_id}/handback", headers=operator)
    assert back.status_code == 200 and back.json()["escalation_id"] == queued["escalation_id"]
    assert _queue(runtime) == []
    twilio.send_inbound("Cảm ơn nhé", LAN_PHONE)
    assert len(twilio.received) == 3 and "Lan" in twilio.received[-1].body

    roles = [t["role"] for t in service.history(runtime, conversation_id)]
    assert roles == ["customer", "agent", "customer", "operator", "customer", "agent"]


def test_a_second_operator_cannot_take_a_taken_escalation(runtime, app):
    _say(runtime, "Cho tôi gặp nhân viên")
    [queued] = _queue(runtime)

    def as_operator(name: str) -> dict[str, str]:
        with runtime.pool.connection() as conn:
            token, _ = tokens.create_token(conn, "user:root", name, ["agents:operate"])
        return {"Authorization": f"Bearer {token}"}

    first = app.post(
        f"/v1/agents/escalations/{queued['escalation_id']}/take", headers=as_operator("hoa")
    )
    second = app.post(
        f"/v1/agents/escalations/{queued['escalation_id']}/take", headers=as_operator("minh")
    )

    assert first.status_code == 200
    assert second.status_code == 409
    assert "hand the conversation back" in second.json()["message"]


def test_two_unsure_turns_in_a_row_go_to_a_person(runtime, world):
    first = _say(runtime, "What is the capital of Mongolia?")
    second = _say(runtime, "Can you repair the engine of my motorbike?")

    assert first[0].text.startswith("Sorry, I can't help with that.")
    assert "colleague" in second[0].text
    [queued] = _queue(runtime)
    assert queued["reason"] == "low_confidence"


def test_an_unsure_turn_between_sure_ones_does_not_escalate(runtime, world):
    _say(runtime, "What is the capital of Mongolia?")
    _say(runtime, "Where is my order?")
    _say(runtime, "Can you repair the engine of my motorbike?")

    assert _queue(runtime) == []


@pytest.mark.parametrize(
    "text",
    [
        "This is terrible, I am very disappointed with you",
        "Dịch vụ quá tệ, tôi rất thất vọng",
    ],
)
def test_an_upset_customer_goes_to_a_person(runtime, world, text):
    [reply] = _say(runtime, text)

    [queued] = _queue(runtime)
    assert queued["reason"] == "negative_sentiment"
    assert "colleague" in reply.text or "nhân viên" in reply.text


@pytest.mark.parametrize(
    ("text", "negative"),
    [
        ("The service was awful", True),
        ("Not bad at all, thanks", False),
        ("Thật là lừa đảo", True),
        ("that la lua dao", True),  # typed without diacritics
        ("Không tệ đâu", False),
        ("Where is my order?", False),
        ("I hate waiting", True),
    ],
)
def test_the_sentiment_lexicon_reads_both_languages_and_negation(text, negative):
    assert escalation.is_negative(text) is negative


def test_a_complaint_from_a_high_value_customer_goes_to_a_person_at_once(runtime, world):
    # nine more customers with smaller orders (1,000 to 9,000 VND): Lan's 58,000 VND is the
    # largest of ten, so she is the top 10% by revenue, inside the "next 15%" tier; the
    # 1,000 VND customer is last, in the bottom half
    for n in range(9):
        small = [("CF-002", "Cà phê muối", "coffee", 1, (n + 1) * 1000)]
        send_events(
            runtime, identify(f"u-small-{n}"), order(f"u-small-{n}", f"S{n}", "2026-05-01", small)
        )

    [reply] = _say(runtime, "I want to complain, my coffee was wrong")
    [small] = _say(
        runtime,
        "I want to complain, my coffee was wrong",
        sender="chat-small",
        identifiers=(("user_id", "u-small-0"),),
    )

    [queued] = _queue(runtime)
    assert queued["reason"] == "high_value_complaint"
    assert queued["ltv_tier"] == "next 15%"
    assert "colleague" in reply.text
    # a customer in the bottom half is answered by the agent
    assert small.text.startswith("I'm sorry to hear that")


def test_an_operator_reply_to_an_unknown_conversation_is_a_404_naming_it(runtime, app):
    operator = app.bearer(["agents:operate"])

    answer = app.post(
        "/v1/agents/conversations/00000000-0000-0000-0000-000000000000/reply",
        json={"text": "Hello"},
        headers=operator,
    )
    empty = app.post(
        "/v1/agents/conversations/00000000-0000-0000-0000-000000000000/reply",
        json={"text": "  "},
        headers=operator,
    )

    assert answer.status_code == 404
    assert "no conversation has id" in answer.json()["message"]
    assert empty.status_code == 400 and "non-empty" in empty.json()["message"]
