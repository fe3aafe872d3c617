"""The operator's pages: the escalation queue, a conversation with the customer's context, and
take / answer / hand back, each with its permission and CSRF token; an operator's answer
reaches the customer's open web-chat socket. Conversations are set up with the agent's own
dialogue and escalation functions (the agent's answers are tested in test_agent_*)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

import psycopg
from litestar.testing import TestClient

from c360.agents import dialogue, escalation
from c360.runtime import Runtime

from .conftest import csrf_of

WRITE_KEY = "test-write-key-1"

#: The customer's snapshot as the agent keeps it on the conversation.
CONTEXT = {
    "profile_id": None,
    "name": "Lan",
    "language": "vi",
    "ltv_tier": "top",
    "order_count": 2,
    "revenue": "58000",
    "recent_orders": [
        {
            "order_id": "o-77",
            "date": "2026-05-02",
            "total": "29000",
            "currency": "VND",
            "products": [{"name": "Cà phê sữa đá", "quantity": "1"}],
        }
    ],
    "segments": ["Coffee lovers"],
}


def escalated(runtime: Runtime, address: str, text: str = "Cho tôi gặp nhân viên") -> str:
    """A web-chat conversation at `address` whose customer asked for a person; its id."""
    with runtime.pool.connection() as conn, conn.transaction():
        conversation = dialogue.open_for(conn, "default", None, "webchat", address, "vi")
        conversation_id = conversation.conversation_id
        dialogue.add_turn(conn, conversation_id, "customer", text, "webchat", address=address)
        dialogue.save_state(conn, conversation_id, context=CONTEXT)
        escalation.open_escalation(conn, conversation_id, escalation.HUMAN_REQUEST)
    return str(conversation_id)


@contextlib.contextmanager
def widget(client: TestClient) -> Iterator[Any]:
    """An open web-chat socket (as the widget opens it), its history frame read; its
    conversation id (the address replies go to) in `.address`."""
    with client.websocket_connect(f"/v1/chat/ws?writeKey={WRITE_KEY}&userId=u-lan") as socket:
        socket.address = socket.receive_json(timeout=15)["conversation_id"]
        yield socket


def post_form(client: TestClient, page_html: str, path: str, **fields: str) -> Any:
    return client.post(path, data={**fields, "_csrf": csrf_of(page_html)}, follow_redirects=False)


def test_the_queue_lists_escalations_with_why_and_links_to_each(browser, runtime) -> None:
    analyst = browser("analyst")  # agents:read
    conversation_id = escalated(runtime, "wc_" + "a" * 22)

    answer = analyst.get("/agents")

    assert answer.status_code == 200
    assert answer.headers["content-security-policy"].startswith("default-src 'self'")
    assert 'id="nav-agents"' in answer.text
    assert f'href="/agents/conversations/{conversation_id}"' in answer.text
    assert "asked for a person" in answer.text and "queued" in answer.text
    polled = analyst.get("/agents/queue", headers={"HX-Request": "true"})
    assert "<header" not in polled.text and conversation_id in polled.text


def test_a_conversation_shows_the_customer_and_its_turns_and_the_read_is_audited(
    browser, runtime
) -> None:
    marketer = browser("marketer")
    conversation_id = escalated(runtime, "wc_" + "b" * 22, text="Tôi muốn gặp <b>người</b>")

    answer = marketer.get(f"/agents/conversations/{conversation_id}")

    assert answer.status_code == 200
    # a marketer has no pii:read: the customer's name is masked, as on every page
    assert re.search(r'id="customer-name">L\.<', answer.text)
    assert "o-77" in answer.text and "Cà phê sữa đá × 1" in answer.text
    assert "Tôi muốn gặp &lt;b&gt;người&lt;/b&gt;" in answer.text  # text, never markup
    assert 'id="take"' in answer.text and 'id="reply-send"' in answer.text
    with psycopg.connect(runtime.settings.postgres_dsn) as conn:
        reads = conn.execute(
            "SELECT actor FROM governance.audit_log WHERE action = 'pii.read' AND target = %s",
            (f"ui:/agents/conversations/{conversation_id}",),
        ).fetchall()
    assert reads == [("user:marketer",)]


def test_a_reader_without_agents_operate_sees_no_actions_and_cannot_answer(
    browser, runtime
) -> None:
    analyst = browser("analyst")
    conversation_id = escalated(runtime, "wc_" + "c" * 22)

    page = analyst.get(f"/agents/conversations/{conversation_id}")
    refused = post_form(
        analyst, page.text, f"/agents/conversations/{conversation_id}/reply", text="hello"
    )

    assert page.status_code == 200 and 'id="reply-send"' not in page.text
    assert refused.status_code == 403
    assert browser("viewer").get("/agents").status_code == 403


def test_an_operator_takes_answers_and_hands_back_and_the_customer_sees_the_answer(
    browser, runtime
) -> None:
    marketer = browser("marketer")
    with widget(marketer) as customer:
        conversation_id = escalated(runtime, customer.address)
        page = marketer.get(f"/agents/conversations/{conversation_id}")
        taking = re.search(r'action="(/agents/escalations/\d+/take)"', page.text).group(1)

        taken = post_form(marketer, page.text, taking, conversation_id=conversation_id)
        assert taken.status_code == 303
        page = marketer.get(taken.headers["location"])
        assert "You have taken this conversation" in page.text and 'id="take"' not in page.text

        answer = "Chào Lan, mình là Hoa. Mình kiểm tra đơn o-77 ngay nhé."
        replying = f"/agents/conversations/{conversation_id}/reply"
        sent = post_form(marketer, page.text, replying, text=answer)
        assert sent.status_code == 303
        frame = customer.receive_json(timeout=15)
    assert frame["role"] == "operator" and frame["text"] == answer
    page = marketer.get(sent.headers["location"])
    assert "Your answer was sent" in page.text and "Operator" in page.text

    back = post_form(marketer, page.text, f"/agents/conversations/{conversation_id}/handback")
    assert back.status_code == 303 and back.headers["location"] == "/agents?handed_back=1"
    with runtime.pool.connection() as conn:
        assert dialogue.get(conn, conversation_id).status == "open"
        assert escalation.queue(conn) == []


def test_an_empty_answer_is_refused_with_what_to_change(browser, runtime) -> None:
    marketer = browser("marketer")
    conversation_id = escalated(runtime, "wc_" + "d" * 22)
    page = marketer.get(f"/agents/conversations/{conversation_id}")

    refused = post_form(
        marketer, page.text, f"/agents/conversations/{conversation_id}/reply", text="   "
    )

    assert refused.status_code == 400
    assert re.search(r'role="alert"[^>]*>text must be a non-empty answer', refused.text)


def test_an_escalation_another_operator_holds_cannot_be_taken(browser, runtime) -> None:
    marketer = browser("marketer")
    conversation_id = escalated(runtime, "wc_" + "e" * 22)
    with runtime.pool.connection() as conn:
        (row,) = escalation.queue(conn)
        escalation.take(conn, row["escalation_id"], "user:someone-else")
    page = marketer.get(f"/agents/conversations/{conversation_id}")

    refused = post_form(
        marketer,
        page.text,
        f"/agents/escalations/{row['escalation_id']}/take",
        conversation_id=conversation_id,
    )

    assert refused.status_code == 409
    assert "taken by user:someone-else" in refused.text and "hand" in refused.text


def test_an_unknown_conversation_is_a_not_found_page(browser) -> None:
    answer = browser("marketer").get("/agents/conversations/not-a-conversation")
    assert answer.status_code == 404 and "no conversation has id" in answer.text
