"""The web-chat socket through Litestar's test client, on the real PostgreSQL and Valkey: refused
connections say why, bad frames are answered and the socket stays open, a resent message is
received once, history comes back on reconnect and only to the visitor it belongs to, replies
sent through the channel (agent or operator) reach every open socket, and the demo page.

A plain responder answers (through the real c360.channels.inbox and delivery), so these tests
check the socket and the channel; the agent's answers are tested in test_agent_* and in the
browser test.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import socket
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import redis
from litestar.exceptions import WebSocketDisconnect
from litestar.testing import TestClient

from c360.agents.escalation import queue as escalation_queue
from c360.api import webchat
from c360.api.app import create_app
from c360.channels.base import InboundMessage, OutboundMessage
from c360.channels.inbox import reply_key
from c360.plugins.channel_webchat import HISTORY_SHOWN, WebChatChannel, stream_position
from c360.runtime import Runtime

WRITE_KEY = "test-write-key-1"  # tests/conftest.py: source "web"
OTHER_WRITE_KEY = "test-write-key-2"  # source "ios"

#: Letters only Vietnamese writes: a reply holding none is not in Vietnamese.
VIETNAMESE = re.compile("[ăâđêôơưạảấầẩẫậắằẳẵặẹẻẽếềểễệỉịọỏốồổỗộớờởỡợụủứừửữựỳỵỷỹ]", re.I)

#: Seconds a test waits for a frame before it fails.
WAIT_S = 15


def echo(runtime: Runtime, message: InboundMessage) -> list[OutboundMessage]:
    """Answer every message with its words, as an agent's reply would go out."""
    return [
        OutboundMessage(
            channel=message.channel,
            to=message.sender,
            text=f"You said: {message.text}",
            idempotency_key=reply_key(message),
        )
    ]


@pytest.fixture
def answered(monkeypatch: pytest.MonkeyPatch) -> list[InboundMessage]:
    """The echo responder in place of the agent; the messages it was asked to answer."""
    seen: list[InboundMessage] = []

    def respond(runtime: Runtime, message: InboundMessage) -> list[OutboundMessage]:
        seen.append(message)
        return echo(runtime, message)

    monkeypatch.setattr(webchat, "responder", respond)
    return seen


def address(**params: str) -> str:
    query = "&".join(f"{key}={value}" for key, value in params.items())
    return f"/v1/chat/ws?{query}"


def frames_until(socket: Any, wanted: Any) -> list[dict[str, Any]]:
    """Frames read until one for which `wanted(frame)` is true (that one last)."""
    seen = []
    while True:
        frame = socket.receive_json(timeout=WAIT_S)
        seen.append(frame)
        if wanted(frame):
            return seen


def reply_to(text: str) -> Any:
    return lambda frame: frame["type"] == "message" and frame["text"] == f"You said: {text}"


@pytest.fixture
def chat(client: TestClient, answered: list[InboundMessage]) -> Iterator[Any]:
    """A socket of visitor u-1 on the web source, its history frame read."""
    with client.websocket_connect(address(writeKey=WRITE_KEY, userId="u-1")) as socket:
        first = socket.receive_json(timeout=WAIT_S)
        assert first["type"] == "history" and first["messages"] == []
        socket.conversation_id = first["conversation_id"]
        yield socket


# -- refused connections ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "code", "words"),
    [
        ({"userId": "u-1"}, "missing_write_key", "writeKey"),
        ({"writeKey": "not-a-key", "userId": "u-1"}, "unknown_write_key", "write key"),
        ({"writeKey": WRITE_KEY}, "missing_visitor", "anonymousId"),
        ({"writeKey": WRITE_KEY, "userId": "x" * 500}, "invalid_visitor", "shorter"),
    ],
)
def test_a_refused_socket_is_told_why_before_it_closes(
    client: TestClient, params: dict[str, str], code: str, words: str
) -> None:
    with client.websocket_connect(address(**params)) as socket:
        frame = socket.receive_json(timeout=WAIT_S)
        with pytest.raises(WebSocketDisconnect) as closed:
            socket.receive_json(timeout=WAIT_S)
    assert frame["type"] == "error" and frame["code"] == code
    assert words in frame["message"]
    assert closed.value.code == webchat.CLOSE_REFUSED


def test_a_socket_with_valkey_out_of_reach_is_told_to_come_back(runtime: Runtime) -> None:
    with redis_port_closed() as url:
        settings = dataclasses.replace(runtime.settings, valkey_url=url)
        with TestClient(app=create_app(settings)) as client:
            with client.websocket_connect(address(writeKey=WRITE_KEY, userId="u-1")) as socket:
                frame = socket.receive_json(timeout=WAIT_S)
                with pytest.raises(WebSocketDisconnect) as closed:
                    socket.receive_json(timeout=WAIT_S)
    assert frame["type"] == "error" and frame["code"] == "unavailable"
    assert "reconnects" in frame["message"]
    assert closed.value.code == webchat.CLOSE_UNAVAILABLE


# -- frames -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("hello", "invalid_frame"),
        ("[1, 2]", "invalid_frame"),
        ('{"type": "shout", "text": "hi", "client_id": "m-1"}', "unknown_type"),
        ('{"type": "message", "client_id": "m-1"}', "missing_text"),
        ('{"type": "message", "text": "   ", "client_id": "m-1"}', "missing_text"),
        ('{"type": "message", "text": 42, "client_id": "m-1"}', "missing_text"),
        ('{"type": "message", "text": "hi"}', "invalid_client_id"),
        ('{"type": "message", "text": "hi", "client_id": "has space"}', "invalid_client_id"),
        (json.dumps({"type": "message", "text": "x" * 2001, "client_id": "m"}), "text_too_long"),
        ("[" * 20_000, "frame_too_large"),
    ],
)
def test_a_bad_frame_is_answered_with_an_error_and_the_socket_stays_open(
    chat: Any, answered: list[InboundMessage], raw: str, code: str
) -> None:
    chat.send_text(raw)
    error = chat.receive_json(timeout=WAIT_S)
    assert error["type"] == "error" and error["code"] == code and error["message"]

    chat.send_json({"type": "message", "text": "still there?", "client_id": "m-ok"})
    frames = frames_until(chat, reply_to("still there?"))
    assert [m.text for m in answered] == ["still there?"]
    (customer,) = [frame for frame in frames if frame.get("role") == "customer"]
    assert customer["client_id"] == "m-ok"


def test_a_binary_frame_is_refused_with_a_message(chat: Any) -> None:
    chat.send_bytes(b'{"type": "message"}')
    error = chat.receive_json(timeout=WAIT_S)
    assert error["code"] == "invalid_frame" and "JSON object" in error["message"]


def test_a_message_is_echoed_then_answered_with_typing_around_the_answer(
    chat: Any, answered: list[InboundMessage]
) -> None:
    chat.send_json({"type": "message", "text": "  Xin chào  ", "client_id": "m-1"})
    frames = frames_until(chat, reply_to("Xin chào"))

    (customer,) = [frame for frame in frames if frame.get("role") == "customer"]
    assert customer["text"] == "Xin chào"
    assert customer["client_id"] == "m-1" and customer["at"].endswith("+00:00")
    assert {"type": "typing", "active": True} in frames
    assert frames[-1]["role"] == "agent"
    assert stream_position(customer["id"]) < stream_position(frames[-1]["id"])
    (message,) = answered
    assert message.channel == "webchat" and message.sender == chat.conversation_id
    assert message.external_id == f"{chat.conversation_id}:m-1"
    assert message.identifiers == (("user_id", "u-1"),)
    assert message.raw["source"] == "web"


def test_a_resent_message_is_received_once(
    chat: Any, answered: list[InboundMessage], runtime: Runtime
) -> None:
    chat.send_json({"type": "message", "text": "where is my order", "client_id": "m-7"})
    first = frames_until(chat, reply_to("where is my order"))
    chat.send_json({"type": "message", "text": "where is my order", "client_id": "m-7"})
    repeat = frames_until(chat, lambda frame: frame["type"] == "message")[-1]

    (customer,) = [frame for frame in first if frame.get("role") == "customer"]
    assert repeat["repeat"] is True and repeat["id"] == customer["id"]
    assert len(answered) == 1
    assert inbound_rows(runtime) == [(f"{chat.conversation_id}:m-7",)]


def test_too_many_messages_a_minute_are_refused(chat: Any) -> None:
    for number in range(webchat.MESSAGES_PER_MINUTE):
        chat.send_json({"type": "message", "text": f"n{number}", "client_id": f"m-{number}"})
        frames_until(chat, reply_to(f"n{number}"))
    chat.send_json({"type": "message", "text": "one more", "client_id": "m-x"})
    error = frames_until(chat, lambda frame: frame["type"] == "error")[-1]
    assert error["code"] == "too_many_messages" and "wait" in error["message"]


# -- history ------------------------------------------------------------------------------


def test_a_reconnect_shows_the_history_in_order(
    client: TestClient, chat: Any, answered: list[InboundMessage]
) -> None:
    for number, text in enumerate(["hello", "price of tea?", "thanks"]):
        chat.send_json({"type": "message", "text": text, "client_id": f"m-{number}"})
        frames_until(chat, reply_to(text))
    chat.close()

    again = address(writeKey=WRITE_KEY, userId="u-1", conversationId=chat.conversation_id)
    with client.websocket_connect(again) as socket:
        history = socket.receive_json(timeout=WAIT_S)
    assert history["conversation_id"] == chat.conversation_id
    assert [(m["role"], m["text"]) for m in history["messages"]] == [
        ("customer", "hello"),
        ("agent", "You said: hello"),
        ("customer", "price of tea?"),
        ("agent", "You said: price of tea?"),
        ("customer", "thanks"),
        ("agent", "You said: thanks"),
    ]
    assert [m.get("client_id") for m in history["messages"][::2]] == ["m-0", "m-1", "m-2"]


def test_history_shows_the_last_messages_only(client: TestClient, chat: Any) -> None:
    channel = WebChatChannel(client.app.state.settings)
    for number in range(HISTORY_SHOWN + 5):
        sent = channel.send(operator_message(chat.conversation_id, f"note {number}"))
        assert sent.status == "sent"
    again = address(writeKey=WRITE_KEY, userId="u-1", conversationId=chat.conversation_id)
    with client.websocket_connect(again) as socket:
        history = socket.receive_json(timeout=WAIT_S)
    texts = [m["text"] for m in history["messages"]]
    assert texts == [f"note {n}" for n in range(5, HISTORY_SHOWN + 5)]


@pytest.mark.parametrize(
    "params",
    [
        {"writeKey": WRITE_KEY, "userId": "u-2"},  # another customer on the same browser
        {"writeKey": WRITE_KEY, "anonymousId": "a-1"},  # signed out
        {"writeKey": OTHER_WRITE_KEY, "userId": "u-1"},  # another source's site
        {"writeKey": WRITE_KEY, "userId": "u-1", "conversationId": "wc_" + "A" * 22},  # made up
    ],
)
def test_a_conversation_is_not_resumed_by_anyone_else(
    client: TestClient, chat: Any, params: dict[str, str]
) -> None:
    chat.send_json({"type": "message", "text": "my secret order", "client_id": "m-1"})
    frames_until(chat, reply_to("my secret order"))

    params = {"conversationId": chat.conversation_id, **params}
    with client.websocket_connect(address(**params)) as socket:
        history = socket.receive_json(timeout=WAIT_S)
    assert history["conversation_id"] != chat.conversation_id
    assert history["messages"] == []


def test_a_visitor_who_signs_in_keeps_the_conversation(
    client: TestClient, answered: list[InboundMessage]
) -> None:
    with client.websocket_connect(address(writeKey=WRITE_KEY, anonymousId="a-9")) as socket:
        conversation_id = socket.receive_json(timeout=WAIT_S)["conversation_id"]
        socket.send_json({"type": "message", "text": "hi", "client_id": "m-1"})
        frames_until(socket, reply_to("hi"))
    signed_in = address(
        writeKey=WRITE_KEY, userId="u-5", anonymousId="a-9", conversationId=conversation_id
    )
    with client.websocket_connect(signed_in) as socket:
        history = socket.receive_json(timeout=WAIT_S)
        socket.send_json({"type": "message", "text": "it's me", "client_id": "m-2"})
        frames_until(socket, reply_to("it's me"))
    assert history["conversation_id"] == conversation_id and len(history["messages"]) == 2
    assert answered[-1].identifiers == (("user_id", "u-5"), ("anonymous_id", "a-9"))


# -- the channel ----------------------------------------------------------------------------


def operator_message(conversation_id: str, text: str, key: str | None = None) -> OutboundMessage:
    return OutboundMessage(
        channel="webchat",
        to=conversation_id,
        text=text,
        idempotency_key=key or f"test:{text}",
        metadata={"role": "operator"},
    )


def test_an_operator_reply_reaches_every_open_socket_of_the_conversation(
    client: TestClient, chat: Any
) -> None:
    again = address(writeKey=WRITE_KEY, userId="u-1", conversationId=chat.conversation_id)
    with client.websocket_connect(again) as second_tab:
        second_tab.receive_json(timeout=WAIT_S)
        sent = WebChatChannel(client.app.state.settings).send(
            operator_message(chat.conversation_id, "Hi, I'm Lan from the shop.")
        )
        got = [socket.receive_json(timeout=WAIT_S) for socket in (chat, second_tab)]
    assert sent.status == "sent"
    for frame in got:
        assert frame["role"] == "operator" and frame["text"] == "Hi, I'm Lan from the shop."
        assert frame["id"] == sent.provider_id


def test_the_same_idempotency_key_is_stored_once(client: TestClient, chat: Any) -> None:
    channel = WebChatChannel(client.app.state.settings)
    first = channel.send(operator_message(chat.conversation_id, "once", key="k-1"))
    second = channel.send(operator_message(chat.conversation_id, "once", key="k-1"))
    assert first.status == second.status == "sent" and first.provider_id == second.provider_id
    valkey = redis.Redis.from_url(client.app.state.settings.valkey_url)
    try:
        entries = valkey.xrange(f"c360:webchat:{{{chat.conversation_id}}}:history")
    finally:
        valkey.close()
    assert [fields[b"text"] for _, fields in entries] == [b"once"]


def test_a_send_to_an_unknown_conversation_fails_and_says_so(runtime: Runtime) -> None:
    result = WebChatChannel(runtime.settings).send(operator_message("wc_" + "B" * 22, "hello?"))
    assert result.status == "failed" and "ended or expired" in (result.error or "")


def test_a_send_with_an_unknown_role_fails(runtime: Runtime) -> None:
    message = OutboundMessage(
        channel="webchat", to="wc_x", text="hi", idempotency_key="k", metadata={"role": "boss"}
    )
    result = WebChatChannel(runtime.settings).send(message)
    assert result.status == "failed" and "boss" in (result.error or "")


def test_a_send_with_valkey_out_of_reach_is_worth_a_retry(runtime: Runtime) -> None:
    with redis_port_closed() as url:
        settings = dataclasses.replace(runtime.settings, valkey_url=url)
        result = WebChatChannel(settings).send(operator_message("wc_" + "C" * 22, "hi"))
    assert result.status == "retry" and "Valkey" in (result.error or "")


# -- with the agent ------------------------------------------------------------------------


def test_the_agent_answers_on_the_socket_and_an_operator_takes_over(
    client: TestClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real path: socket -> inbox -> the agent (templates) -> outbox -> web-chat channel ->
    socket; then an escalation answered by an operator through the same channel."""
    from agent_world import load_catalogue, make_lan

    from c360.agents import service

    load_catalogue(runtime)
    make_lan(runtime)  # Nguyễn Thị Lan, language vi, user id u-lan

    with client.websocket_connect(address(writeKey=WRITE_KEY, userId="u-lan")) as socket:
        socket.receive_json(timeout=WAIT_S)
        socket.send_json({"type": "message", "text": "Xin chào", "client_id": "m-1"})
        hello = frames_until(socket, lambda frame: frame.get("role") == "agent")[-1]
        socket.send_json({"type": "message", "text": "Cho tôi gặp nhân viên", "client_id": "m-2"})
        handed = frames_until(socket, lambda frame: frame.get("role") == "agent")[-1]
        with runtime.pool.connection() as conn:
            (waiting,) = escalation_queue(conn)
        service.operator_reply(runtime, str(waiting["conversation_id"]), "Chào Lan!", "user:hoa")
        operator = frames_until(socket, lambda frame: frame.get("role") == "operator")[-1]

    assert "Lan" in hello["text"] and VIETNAMESE.search(hello["text"]), hello
    assert handed["text"] != hello["text"] and VIETNAMESE.search(handed["text"]), handed
    assert operator["text"] == "Chào Lan!"


# -- the demo page ------------------------------------------------------------------------


def test_the_demo_page_embeds_the_widget_with_a_strict_policy(client: TestClient) -> None:
    answer = client.get("/chat/demo", params={"key": WRITE_KEY, "userId": 'u"1<', "lang": "vi"})
    assert answer.status_code == 200
    assert answer.headers["content-security-policy"].startswith("default-src 'self'")
    assert '<script src="/static/chat-widget.js" defer' in answer.text
    assert f'data-write-key="{WRITE_KEY}"' in answer.text
    assert 'data-user-id="u&quot;1&lt;"' in answer.text and 'data-lang="vi"' in answer.text
    assert "<script>" not in answer.text  # nothing inline


def test_the_demo_page_uses_the_trials_own_source_when_no_key_is_given(runtime: Runtime) -> None:
    from c360.appliance.trial import MY_SOURCE

    assert webchat.DEMO_SOURCE == MY_SOURCE
    keys = {"trial-own-key": MY_SOURCE, "k2": "web"}
    settings = dataclasses.replace(runtime.settings, write_keys=keys)
    with TestClient(app=create_app(settings)) as client:
        with_key = client.get("/chat/demo").text
    with TestClient(app=create_app(runtime.settings)) as client:
        without = client.get("/chat/demo").text
    assert 'data-write-key="trial-own-key"' in with_key
    assert "chat-widget.js" not in without and "?key=" in without


# -- helpers --------------------------------------------------------------------------------


def inbound_rows(runtime: Runtime) -> list[tuple[str]]:
    with psycopg.connect(runtime.settings.postgres_dsn) as conn:
        return conn.execute(
            "SELECT external_id FROM channels.inbound WHERE channel = 'webchat'"
        ).fetchall()


@contextlib.contextmanager
def redis_port_closed() -> Iterator[str]:
    """A redis:// URL of a port on 127.0.0.1 that is bound but not listening: refused."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield f"redis://127.0.0.1:{held.getsockname()[1]}/0"
