"""The web-chat socket through Litestar's test client, on the real PostgreSQL and Valkey: refused
connections say why, bad frames are answered and the socket stays open, text PostgreSQL cannot
hold is refused before it is acknowledged, a user id counts only with its hash (identity
verification), a resent message is received once, history comes back on reconnect and only to
the visitor it belongs to, replies sent through the channel (agent or operator) reach every
open socket, and the demo page signs a user id only for a signed-in user who may read profiles.

A plain responder answers (through the real c360.channels.inbox and delivery), so these tests
check the socket and the channel; the agent's answers are tested in test_agent_* and in the
browser test.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import hmac
import json
import logging
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from litestar.exceptions import WebSocketDisconnect
from litestar.testing import TestClient

from c360 import accounts
from c360.agents.escalation import queue as escalation_queue
from c360.api import webchat
from c360.api.app import create_app
from c360.channels.base import InboundMessage, OutboundMessage
from c360.channels.inbox import reply_key
from c360.plugins.channel_webchat import HISTORY_SHOWN, WebChatChannel, stream_position
from c360.runtime import Runtime
from c360.settings import Settings

WRITE_KEY = "test-write-key-1"  # tests/conftest.py: source "web"
OTHER_WRITE_KEY = "test-write-key-2"  # source "ios"

#: Letters only Vietnamese writes: a reply holding none is not in Vietnamese.
VIETNAMESE_LETTERS = "".join(
    (
        "ăâđêôơưạảấầẩẫậắằẳẵặ",
        "ẹẻẽếềểễệỉịọỏốồổỗộ",
        "ớờởỡợụủứừửữựỳỵỷỹ",
    )
)
VIETNAMESE = re.compile(f"[{VIETNAMESE_LETTERS}]", re.I)

#: Seconds a test waits for a frame before it fails.
WAIT_S = 15
#: ... and for the agent's first answer, which loads its models.
FIRST_ANSWER_S = 180

#: The engage secret of these tests: user hashes are computed from it here, independently.
ENGAGE_SECRET = "test-engage-secret-for-webchat"

PASSWORD = "correct horse battery"
CSRF = "double-submit-token-for-tests"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The shared settings with a known engage secret."""
    return dataclasses.replace(settings, engage_secret=ENGAGE_SECRET)


def signed(user_id: str, key: bytes = ENGAGE_SECRET.encode()) -> dict[str, str]:
    """userId and its userHash as a site's server computes it (Intercom's user_hash)."""
    digest = hmac.new(key, user_id.encode(), hashlib.sha256).hexdigest()
    return {"userId": user_id, "userHash": digest}


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


def frames_until(socket: Any, wanted: Any, wait_s: float = WAIT_S) -> list[dict[str, Any]]:
    """Frames read until one for which `wanted(frame)` is true (that one last)."""
    seen = []
    while True:
        frame = socket.receive_json(timeout=wait_s)
        seen.append(frame)
        if wanted(frame):
            return seen


def reply_to(text: str) -> Any:
    return lambda frame: frame["type"] == "message" and frame["text"] == f"You said: {text}"


@pytest.fixture
def chat(client: TestClient, answered: list[InboundMessage]) -> Iterator[Any]:
    """A socket of visitor u-1 on the web source, its history frame read."""
    with client.websocket_connect(address(writeKey=WRITE_KEY, **signed("u-1"))) as socket:
        first = socket.receive_json(timeout=WAIT_S)
        assert first["type"] == "history" and first["messages"] == []
        assert first["identity"] == "verified"
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
        ({"writeKey": WRITE_KEY, "userId": "u%00-1"}, "invalid_text", "NUL"),
        ({"writeKey": WRITE_KEY, "anonymousId": "a%00"}, "invalid_text", "NUL"),
        ({"writeKey": "test-write-key-1%00", "userId": "u-1"}, "invalid_text", "NUL"),
        ({"writeKey": WRITE_KEY, "userId": "u-1", "userHash": "%00"}, "invalid_text", "NUL"),
        ({"writeKey": WRITE_KEY, "userId": "u-1", "lang": "vi%00"}, "invalid_text", "remove"),
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
        ('{"type": "message", "text": "\\u200b\\u200d", "client_id": "m-1"}', "missing_text"),
        ('{"type": "message", "text": 42, "client_id": "m-1"}', "missing_text"),
        ('{"type": "message", "text": "hi"}', "invalid_client_id"),
        ('{"type": "message", "text": "hi", "client_id": "has space"}', "invalid_client_id"),
        (json.dumps({"type": "message", "text": "x" * 2001, "client_id": "m"}), "text_too_long"),
        ("[" * 20_000, "frame_too_large"),
        ("[" * 10_000, "invalid_frame"),  # deeper than the JSON parser goes
        ('{"":' * 3_000 + "1" + "}" * 3_000, "invalid_frame"),
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


@pytest.mark.parametrize(
    ("frame", "words"),
    [
        ({"type": "message", "client_id": "u1", "text": "hi \u0000 there"}, "NUL"),
        ({"type": "message", "client_id": "u1", "text": "hi \ud800 there"}, "surrogate"),
        ({"type": "message", "client_id": "u1", "text": "hi \udfff"}, "surrogate"),
        ({"type": "message", "client_id": "u1\u0000", "text": "hi"}, "NUL"),
        ({"type": "message\u0000", "client_id": "u1", "text": "hi"}, "NUL"),
        ({"type": "message", "client_id": "u1", "text": "hi", "note": ["\ud800"]}, "surrogate"),
        ({"type": "message", "client_id": "u1", "text": "hi", "\u0000": 1}, "NUL"),
    ],
)
def test_text_postgresql_cannot_hold_is_refused_before_it_is_acknowledged(
    chat: Any, answered: list[InboundMessage], runtime: Runtime, frame: dict[str, Any], words: str
) -> None:
    # NUL and lone surrogates go as \u escapes, as a browser's JSON.stringify writes them
    chat.send_text(json.dumps(frame, ensure_ascii=True))
    error = chat.receive_json(timeout=WAIT_S)  # first: nothing was echoed as kept
    assert error["type"] == "error" and error["code"] == "invalid_text", error
    assert words in error["message"]
    assert "remove it" in error["message"] or "send whole characters" in error["message"]

    chat.send_json({"type": "message", "text": "hi there", "client_id": "u2"})
    frames = frames_until(chat, reply_to("hi there"))
    assert [f["text"] for f in frames if f.get("role") == "customer"] == ["hi there"]
    assert [m.text for m in answered] == ["hi there"]
    assert inbound_rows(runtime) == [(f"{chat.conversation_id}:u2",)]


def test_an_unexpected_fault_is_logged_and_the_socket_stays_open(
    chat: Any,
    answered: list[InboundMessage],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A fault nobody foresaw while storing a message (a surrogate reaching the Valkey client
    was one) answers an error frame and is logged, rather than closing the socket with 4500."""
    real = webchat._append
    failed: list[bool] = []

    def fails(**_: Any) -> Any:
        failed.append(True)
        raise UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed")

    monkeypatch.setattr(webchat, "_append", lambda state: real(state) if failed else fails)
    with caplog.at_level(logging.ERROR, logger=webchat.__name__):
        chat.send_json({"type": "message", "text": "first", "client_id": "m-1"})
        error = chat.receive_json(timeout=WAIT_S)
        chat.send_json({"type": "message", "text": "second", "client_id": "m-2"})
        frames_until(chat, reply_to("second"))
    assert error["type"] == "error" and error["code"] == "internal_error", error
    assert "try again" in error["message"]
    assert [m.text for m in answered] == ["second"]
    logged = [r for r in caplog.records if "Could not take a message" in r.getMessage()]
    assert logged and logged[0].exc_info is not None


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

    again = address(writeKey=WRITE_KEY, **signed("u-1"), conversationId=chat.conversation_id)
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
    again = address(writeKey=WRITE_KEY, **signed("u-1"), conversationId=chat.conversation_id)
    with client.websocket_connect(again) as socket:
        history = socket.receive_json(timeout=WAIT_S)
    texts = [m["text"] for m in history["messages"]]
    assert texts == [f"note {n}" for n in range(5, HISTORY_SHOWN + 5)]


@pytest.mark.parametrize(
    "params",
    [
        {"writeKey": WRITE_KEY, **signed("u-2")},  # another customer on the same browser
        {"writeKey": WRITE_KEY, "anonymousId": "a-1"},  # signed out
        {"writeKey": WRITE_KEY, "userId": "u-1"},  # claims the user id, without its hash
        {"writeKey": WRITE_KEY, "userId": "u-1", "userHash": signed("u-2")["userHash"]},
        {"writeKey": OTHER_WRITE_KEY, **signed("u-1")},  # another source's site
        {"writeKey": WRITE_KEY, **signed("u-1"), "conversationId": "wc_" + "A" * 22},  # made up
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
        writeKey=WRITE_KEY, **signed("u-5"), anonymousId="a-9", conversationId=conversation_id
    )
    with client.websocket_connect(signed_in) as socket:
        history = socket.receive_json(timeout=WAIT_S)
        socket.send_json({"type": "message", "text": "it's me", "client_id": "m-2"})
        frames_until(socket, reply_to("it's me"))
    assert history["conversation_id"] == conversation_id and len(history["messages"]) == 2
    assert answered[-1].identifiers == (("user_id", "u-5"), ("anonymous_id", "a-9"))


# -- identity verification ------------------------------------------------------------------


@pytest.mark.parametrize(
    "claim",
    [
        {"userId": "u-1"},  # no hash
        {"userId": "u-1", "userHash": ""},
        {"userId": "u-1", "userHash": "0" * 64},
        {"userId": "u-1", "userHash": signed("u-2")["userHash"]},  # another user's
        {"userId": "u-1", "userHash": signed("u-1", b"another c360's key")["userHash"]},
    ],
)
@pytest.mark.parametrize("anonymous_id", ["a-7", None])
def test_a_user_id_without_its_hash_chats_as_an_unverified_visitor(
    client: TestClient,
    answered: list[InboundMessage],
    claim: dict[str, str],
    anonymous_id: str | None,
) -> None:
    params = {"writeKey": WRITE_KEY, **claim}
    if anonymous_id:
        params["anonymousId"] = anonymous_id
    with client.websocket_connect(address(**params)) as socket:
        history = socket.receive_json(timeout=WAIT_S)
        socket.send_json({"type": "message", "text": "where is my last order?", "client_id": "m"})
        frames_until(socket, reply_to("where is my last order?"))
    assert history["identity"] == "unverified"
    assert "userHash" in history["notice"] and "HMAC-SHA256" in history["notice"]
    ((kind, value),) = answered[0].identifiers  # the user id never reaches the agent
    assert kind == "anonymous_id" and value != "u-1"
    if anonymous_id:
        assert value == anonymous_id
    else:
        assert value.startswith("anon-")


def test_a_user_id_with_its_hash_is_verified(
    client: TestClient, answered: list[InboundMessage]
) -> None:
    claim = signed("u-1")
    upper = {**claim, "userHash": claim["userHash"].upper()}
    with client.websocket_connect(address(writeKey=WRITE_KEY, anonymousId="a-1", **upper)) as ws:
        history = ws.receive_json(timeout=WAIT_S)
        ws.send_json({"type": "message", "text": "hi", "client_id": "m"})
        frames_until(ws, reply_to("hi"))
    assert history["identity"] == "verified" and "notice" not in history
    assert answered[0].identifiers == (("user_id", "u-1"), ("anonymous_id", "a-1"))


def test_an_anonymous_visitor_is_told_so(client: TestClient) -> None:
    with client.websocket_connect(address(writeKey=WRITE_KEY, anonymousId="a-1")) as socket:
        history = socket.receive_json(timeout=WAIT_S)
    assert history["identity"] == "anonymous" and "notice" not in history


def test_user_hash_is_the_hmac_of_the_user_id_under_the_engage_secret(
    settings: Settings, tmp_path: Path
) -> None:
    assert webchat.user_hash(settings, "cdnow-00499") == signed("cdnow-00499")["userHash"]
    # with no secret set, the key made once in the data folder (as links are signed)
    unset = dataclasses.replace(settings, engage_secret="", data_dir=tmp_path / "data")
    first = webchat.user_hash(unset, "cdnow-00499")
    key = (tmp_path / "data" / "engage.secret").read_bytes().strip()
    assert first == signed("cdnow-00499", key)["userHash"]
    assert webchat.user_hash(unset, "cdnow-00499") == first


def test_a_user_hash_made_for_a_crafted_id_signs_no_link(settings: Settings) -> None:
    """The demo page makes a userHash for any id a signed-in user names; one crafted to read
    like a link's signed text must not unsubscribe anybody."""
    from c360.notifications import preferences

    crafted = webchat.user_hash(settings, f"c360-notify:{preferences.UNSUBSCRIBE}:42")
    mac = base64.urlsafe_b64encode(bytes.fromhex(crafted)[:16]).decode().rstrip("=")
    with pytest.raises(preferences.InvalidLink):
        preferences.read_link_token(settings, preferences.UNSUBSCRIBE, f"42.{mac}")
    real = preferences.make_link_token(settings, preferences.UNSUBSCRIBE, 42)
    assert preferences.read_link_token(settings, preferences.UNSUBSCRIBE, real) == 42


def test_an_unverified_visitor_learns_nothing_about_the_customer(
    client: TestClient, runtime: Runtime
) -> None:
    """The break test: the public write key and someone else's user id, asking for the last
    order. The real agent answers without that customer's name or order."""
    from agent_world import load_catalogue, make_lan

    load_catalogue(runtime)
    make_lan(runtime)  # Nguyễn Thị Lan, user id u-lan, order ORD-1001 of Cà phê sữa đá

    claim = address(writeKey=WRITE_KEY, userId="u-lan", lang="vi")
    with client.websocket_connect(claim) as socket:
        socket.receive_json(timeout=WAIT_S)
        socket.send_json({"type": "message", "text": "Xin chào", "client_id": "m-1"})
        hello = frames_until(socket, lambda f: f.get("role") == "agent", FIRST_ANSWER_S)[-1]
        socket.send_json(
            {"type": "message", "text": "Đơn hàng gần nhất của tôi?", "client_id": "m-2"}
        )
        order = frames_until(socket, lambda frame: frame.get("role") == "agent")[-1]
    for reply in (hello["text"], order["text"]):
        assert "Lan" not in reply and "ORD-1001" not in reply and "Cà phê sữa đá" not in reply


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
    again = address(writeKey=WRITE_KEY, **signed("u-1"), conversationId=chat.conversation_id)
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

    with client.websocket_connect(address(writeKey=WRITE_KEY, **signed("u-lan"))) as socket:
        socket.receive_json(timeout=WAIT_S)
        socket.send_json({"type": "message", "text": "Xin chào", "client_id": "m-1"})
        hello = frames_until(socket, lambda frame: frame.get("role") == "agent")[-1]
        ask_for_person = "Cho tôi gặp nhân viên"
        socket.send_json({"type": "message", "text": ask_for_person, "client_id": "m-2"})
        handed = frames_until(socket, lambda frame: frame.get("role") == "agent")[-1]
        with runtime.pool.connection() as conn:
            (waiting,) = escalation_queue(conn)
        service.operator_reply(runtime, str(waiting["conversation_id"]), "Chào Lan!", "user:hoa")
        operator = frames_until(socket, lambda frame: frame.get("role") == "operator")[-1]

    assert "Lan" in hello["text"] and VIETNAMESE.search(hello["text"]), hello
    assert handed["text"] != hello["text"] and VIETNAMESE.search(handed["text"]), handed
    assert operator["text"] == "Chào Lan!"


# -- the demo page ------------------------------------------------------------------------


def sign_in_as(runtime: Runtime, client: TestClient, role: str) -> None:
    """A user of `role` made and signed in through the API (the session cookie kept)."""
    with runtime.pool.connection() as conn:
        accounts.ensure_built_in_roles(conn)
        accounts.create_user(conn, "test", f"demo-{role}", role, PASSWORD)
    client.cookies.set("c360_csrf", CSRF)
    answer = client.post(
        "/v1/session",
        json={"name": f"demo-{role}", "password": PASSWORD},
        headers={"X-CSRF-Token": CSRF},
    )
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize("role", ["admin", "analyst"])
def test_the_demo_page_signs_the_user_id_for_a_user_who_may_read_profiles(
    client: TestClient, runtime: Runtime, role: str
) -> None:
    sign_in_as(runtime, client, role)
    answer = client.get("/chat/demo", params={"key": WRITE_KEY, "userId": 'u"1<', "lang": "vi"})
    assert answer.status_code == 200
    assert answer.headers["content-security-policy"].startswith("default-src 'self'")
    assert answer.headers["cache-control"] == "no-store"
    assert '<script src="/static/chat-widget.js" defer' in answer.text
    assert f'data-write-key="{WRITE_KEY}"' in answer.text
    assert 'data-user-id="u&quot;1&lt;"' in answer.text and 'data-lang="vi"' in answer.text
    digest = signed('u"1<')["userHash"]
    assert f'data-user-hash="{digest}"' in answer.text
    assert "<script>" not in answer.text  # nothing inline


@pytest.mark.parametrize("role", [None, "viewer"])
def test_the_demo_page_chats_anonymously_for_anyone_else(
    client: TestClient, runtime: Runtime, role: str | None
) -> None:
    if role:
        sign_in_as(runtime, client, role)
    answer = client.get("/chat/demo", params={"key": WRITE_KEY, "userId": "cdnow-00499"})
    assert answer.status_code == 200
    assert '<script src="/static/chat-widget.js" defer' in answer.text
    assert "data-user-id" not in answer.text and "data-user-hash" not in answer.text
    assert "anonymous visitor, not as cdnow-00499" in answer.text
    assert "may read profiles" in answer.text


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
