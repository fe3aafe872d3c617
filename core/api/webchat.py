"""The web-chat socket `/v1/chat/ws` the widget (ui/static/chat-widget.js) talks to, and the
demo page `/chat/demo` that embeds it.

A site identifies itself with a source's write key (`writeKey`, checked like the gateway's)
and the visitor with `userId` and/or `anonymousId`, as analytics.js does; `conversationId`
resumes a conversation this visitor opened before (else a new one is made and named in the
first frame). The write key is public, so a `userId` counts only with its `userHash`, the hex
HMAC-SHA256 of the user id under this c360's engage secret (`user_hash`), which the site's
server computes for its signed-in customer (Intercom's identity verification works the same
way). Without a valid one the visitor is unverified: chatting as their anonymous id, the
user id never reaching the agent, and the history frame says so. JSON frames:

    in:   {"type": "message", "text": "...", "client_id": "..."}
    out:  {"type": "history", "conversation_id": "...", "messages": [message, ...],
           "identity": "verified" | "anonymous" | "unverified"[, "notice": "..."]}
          {"type": "message", "id", "role", "text", "at"[, "client_id"]}
          {"type": "typing", "active": true | false}
          {"type": "error", "code", "message"}

A customer's message is stored in the conversation's history (c360.plugins.channel_webchat)
once per client id, then handed to c360.channels.inbox, whose replies come back through the
web-chat channel and its pub/sub channel to every socket of the conversation. A bad frame is
answered with an error and the socket stays open; a refused connection gets an error frame
before it is closed. Touches Valkey (history, visitor, pub/sub) and, through the inbox, the
agents.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from typing import Any

import anyio
import anyio.to_thread
import redis
import redis.asyncio as aioredis
from litestar import Request, Response, WebSocket, get, websocket
from litestar.datastructures import State
from litestar.exceptions import WebSocketDisconnect

from c360.access import Principal
from c360.api.auth import principal
from c360.api.gateway import RequestKeys
from c360.channels.base import WEBCHAT, InboundMessage, has_visible_text
from c360.errors import InputError
from c360.events.identifiers import identifier_id
from c360.governance.keyring import Keyring
from c360.notifications.preferences import engage_secret
from c360.plugins.channel_webchat import (
    CHANNEL_PATTERN,
    CONVERSATION_TTL_S,
    HISTORY_SHOWN,
    append_call,
    append_script,
    appended,
    channel_name,
    entry_frame,
    history_key,
    new_conversation_id,
    stream_position,
    visitor_key,
)
from c360.runtime import Runtime
from c360.settings import Settings

log = logging.getLogger(__name__)

PATH = "/v1/chat/ws"

#: Longest message a customer may send (characters): a chat turn, not a document.
MAX_TEXT_CHARS = 2_000

#: Longest frame read (characters of JSON): a message at its longest, quoted, and the rest.
MAX_FRAME_CHARS = 16_384

#: Messages one socket may send per minute: a person types far fewer; a script looping over
#: the socket would otherwise make the agent answer as fast as it can.
MESSAGES_PER_MINUTE = 20

#: Frames waiting for a slow socket; past this it is closed and the widget reconnects (and
#: is shown the history), rather than the process holding an ever longer queue.
QUEUE_FRAMES = 256

#: Seconds to wait for the process's Valkey subscription before refusing a socket.
SUBSCRIBE_TIMEOUT_S = 5.0

#: A client id: what the widget names a message by, so that a resend is received once.
CLIENT_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")

#: A conversation id as channel_webchat.new_conversation_id makes them.
CONVERSATION_ID = re.compile(r"wc_[A-Za-z0-9_-]{22}")

#: A language tag as browsers give them ("vi", "en-GB"); the primary subtag is kept.
LANGUAGE = re.compile(r"([a-zA-Z]{2,3})(?:[-_][a-zA-Z0-9]{1,8})*")

#: The trial's own source (c360.appliance.trial.MY_SOURCE): the demo page uses its write key
#: when the address names none.
DEMO_SOURCE = "my-events"

#: The demo page's headers: the widget's script and style and the socket, from c360 only.
DEMO_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; "
    "base-uri 'self'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

#: Close codes: refused (policy violation), c360 cannot serve chats right now, c360's fault.
CLOSE_REFUSED = 1008
CLOSE_UNAVAILABLE = 1013
CLOSE_INTERNAL = 1011

#: What answers a customer's message: None for the inbox's default, the agent
#: (c360.agents.service.converse); tests of the socket alone put a plain responder here.
responder: Any = None

#: The permission a signed-in user needs for the demo page to sign the userId it names: whoever
#: may read profiles may read what the agent would tell that customer.
DEMO_SIGNING_PERMISSION = "profiles:read"

#: How a socket's visitor is known (the history frame's "identity").
VERIFIED, ANONYMOUS, UNVERIFIED = "verified", "anonymous", "unverified"

_FRAME_EXAMPLE = '{"type": "message", "text": "Hello", "client_id": "m-1"}'

#: Query parameters of the socket whose text is checked for characters c360 cannot store.
_TEXT_PARAMS = ("writeKey", "userId", "userHash", "anonymousId", "conversationId", "lang")


@dataclass(frozen=True)
class Visitor:
    """Who is on the other end of a socket, and in which conversation."""

    conversation_id: str
    source: str
    user_id: str | None  # only when verified by its userHash
    anonymous_id: str | None
    language: str | None
    identity: str = ANONYMOUS


class Closed:
    """Put in a socket's queue to close it (its subscription was lost, or it fell behind)."""

    def __init__(self, code: str, message: str) -> None:
        self.frame = {"type": "error", "code": code, "message": message}


def route_handlers() -> list[Any]:
    """The socket and the demo page (the web-chat channel hands them to the app)."""
    return [chat_socket, demo_page]


@websocket(PATH, opt={"public": True})
async def chat_socket(socket: WebSocket[Any, Any, Any], state: State) -> None:
    """One visitor's chat: history first, then messages both ways until the socket closes."""
    await socket.accept()
    try:
        visitor = await _open(socket, state)
        queue = await _hub(state).join(visitor.conversation_id)
    except InputError as exc:
        await _close(socket, {"type": "error", "code": exc.code, "message": exc.message})
        return
    except (redis.RedisError, OSError, TimeoutError) as exc:
        log.warning("Refused a web-chat socket: Valkey is out of reach: %s", exc)
        await _close(socket, _unavailable().frame, CLOSE_UNAVAILABLE)
        return
    except Exception:  # a fault of c360's: logged, and the widget is told rather than cut off
        log.exception("Could not open a web-chat socket.")
        await _close(socket, _internal_error(), CLOSE_INTERNAL)
        return
    try:
        await _serve(socket, state, visitor, queue)
    finally:
        _hub(state).leave(visitor.conversation_id, queue)


@get("/chat/demo", opt={"public": True}, include_in_schema=False)
async def demo_page(request: Request[Any, Any, Any], state: State) -> Response[str]:
    """A page with nothing but the widget, for trying the agent: `?key=` a write key (else
    the trial's own source's), `&userId=` to chat as a known customer, `&lang=vi`.

    The page signs the userId (as a shop's server would) only for a signed-in user who may
    read profiles: anyone else chats anonymously, or the page would hand any customer's
    orders to whoever types their id into the address."""
    params = request.query_params
    key = params.get("key") or _demo_key(state.settings.write_keys)
    user_id = _visitor_id(_clean_param(params.get("userId")), "userId")
    signed = None
    if user_id is not None and _may_sign(principal(request)):
        signed = await anyio.to_thread.run_sync(user_hash, state.settings, user_id)
    body = _demo_html(key, user_id, signed, params.get("lang"))
    return Response(body, media_type="text/html", headers=DEMO_HEADERS)


def user_hash(settings: Settings, user_id: str) -> str:
    """What a site's server puts in the widget's data-user-hash for its signed-in customer:
    hex HMAC-SHA256 of the user id (as the widget sends it) under the engage secret."""
    return hmac.new(engage_secret(settings), user_id.encode(), hashlib.sha256).hexdigest()


def _may_sign(user: Principal | None) -> bool:
    return user is not None and user.can(DEMO_SIGNING_PERMISSION)


# -- opening a socket ---------------------------------------------------------------------


async def _open(socket: WebSocket[Any, Any, Any], state: State) -> Visitor:
    """Check the write key and the visitor's ids; find or start the conversation."""
    params = {name: _clean_param(socket.query_params.get(name)) for name in _TEXT_PARAMS}
    source = await _source(state, params["writeKey"])
    user_id = _visitor_id(params["userId"], "userId")
    anonymous_id = _visitor_id(params["anonymousId"], "anonymousId")
    if user_id is None and anonymous_id is None:
        raise InputError(
            "missing_visitor",
            "identify the visitor with userId and/or anonymousId in the socket's address, "
            "as analytics.js does",
        )
    identity = ANONYMOUS
    if user_id is not None:
        verified = await anyio.to_thread.run_sync(
            _verified, state.settings, params["userId"] or "", params["userHash"]
        )
        identity = VERIFIED if verified else UNVERIFIED
    if identity == UNVERIFIED:
        # anyone may claim a user id: without the site's signature it is not used at all
        user_id = None
        anonymous_id = anonymous_id or "anon-" + secrets.token_urlsafe(16)
    conversation_id = await _conversation(
        state.valkey, params["conversationId"], source, user_id, anonymous_id
    )
    language = _language(params["lang"])
    return Visitor(conversation_id, source, user_id, anonymous_id, language, identity)


def _clean_param(value: str | None) -> str | None:
    """A query parameter, refused when it holds text c360 cannot store."""
    if value is not None:
        _check_text(value, "a parameter of the socket's address")
    return value


def _verified(settings: Settings, user_id: str, sent: str | None) -> bool:
    """Whether `sent` is the user id's hash (compared in constant time)."""
    if not sent:
        return False
    return hmac.compare_digest(user_hash(settings, user_id), sent.strip().lower())


async def _source(state: State, key: str | None) -> str:
    """The source of a write key, checked as the gateway checks it (settings keys, then the
    keyring of stored keys); Unauthorized when it is unknown."""
    if not key:
        raise InputError(
            "missing_write_key", "add writeKey=<the source's write key> to the socket's address"
        )
    keyring = _keyring(state)
    keys = RequestKeys(state.settings.write_keys, await keyring.snapshot(), _now(), keyring)
    return await keys.lookup(key)


def _keyring(state: State) -> Keyring:
    """The process's keyring, shared with the gateway's routes (same state key)."""
    keyring = state.get("keyring")
    if keyring is None:
        keyring = state["keyring"] = Keyring(state.runtime, state.valkey)
    return keyring


def _visitor_id(value: str | None, name: str) -> str | None:
    if value is None or not value.strip():
        return None
    normalised = identifier_id(value)
    if normalised is None:
        raise InputError("invalid_visitor", f"{name} is too long to be an id: send a shorter one")
    return normalised


def _language(value: str | None) -> str | None:
    match = LANGUAGE.fullmatch(value or "")
    return match.group(1).lower() if match else None


async def _conversation(
    valkey: aioredis.Redis,
    requested: str | None,
    source: str,
    user_id: str | None,
    anonymous_id: str | None,
) -> str:
    """The conversation to resume, when `requested` is one this visitor may read; else a new
    one. A conversation of a known user is not shown to anyone else on the same browser."""
    if requested and CONVERSATION_ID.fullmatch(requested):
        stored = {
            key.decode(): value.decode()
            for key, value in (await valkey.hgetall(visitor_key(requested))).items()
        }
        if _may_resume(stored, source, user_id):
            await _remember(valkey, requested, source, user_id, anonymous_id, stored)
            return requested
    conversation_id = new_conversation_id()
    await _remember(valkey, conversation_id, source, user_id, anonymous_id, {})
    return conversation_id


def _may_resume(stored: dict[str, str], source: str, user_id: str | None) -> bool:
    """Same site, and the same user (a visitor who signs in keeps the conversation)."""
    if not stored or stored.get("source") != source:
        return False
    return stored.get("user_id", "") in ("", user_id or "")


async def _remember(
    valkey: aioredis.Redis,
    conversation_id: str,
    source: str,
    user_id: str | None,
    anonymous_id: str | None,
    stored: dict[str, str],
) -> None:
    """Record (or refresh) who the conversation belongs to."""
    fields = {
        "source": source,
        "user_id": user_id or stored.get("user_id", ""),
        "anonymous_id": anonymous_id or stored.get("anonymous_id", ""),
    }
    key = visitor_key(conversation_id)
    async with valkey.pipeline(transaction=True) as pipe:
        pipe.hset(key, mapping=fields)
        pipe.expire(key, CONVERSATION_TTL_S)
        await pipe.execute()


# -- serving an open socket ---------------------------------------------------------------


async def _serve(
    socket: WebSocket[Any, Any, Any], state: State, visitor: Visitor, queue: asyncio.Queue[Any]
) -> None:
    """Send the history, then forward the conversation's messages while reading the
    visitor's frames, until either side closes."""
    try:
        history = await _history(state.valkey, visitor.conversation_id)
    except (redis.RedisError, OSError) as exc:
        log.warning("Could not read web-chat history: %s", exc)
        await _close(socket, _unavailable().frame, CLOSE_UNAVAILABLE)
        return
    await _send(socket, _history_frame(visitor, history))
    shown = stream_position(history[-1]["id"]) if history else (0, 0)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(_forward, socket, queue, shown, tasks.cancel_scope)
        await _read(socket, state, visitor, queue)
        tasks.cancel_scope.cancel()


def _history_frame(visitor: Visitor, history: list[dict[str, Any]]) -> dict[str, Any]:
    """The first frame: the conversation, its last messages, and how the visitor is known."""
    frame = {
        "type": "history",
        "conversation_id": visitor.conversation_id,
        "messages": history,
        "identity": visitor.identity,
    }
    if visitor.identity == UNVERIFIED:
        frame["notice"] = (
            "userId came without a valid userHash, so this chat is anonymous and the agent "
            "uses nothing it knows about that customer: have your server compute userHash, "
            "the hex HMAC-SHA256 of the userId under c360's engage secret, and pass it as "
            "the widget's data-user-hash"
        )
    return frame


async def _history(valkey: aioredis.Redis, conversation_id: str) -> list[dict[str, Any]]:
    """The last HISTORY_SHOWN messages, oldest first."""
    entries = await valkey.xrevrange(history_key(conversation_id), count=HISTORY_SHOWN)
    return [entry_frame(entry_id, fields) for entry_id, fields in reversed(entries)]


async def _forward(
    socket: WebSocket[Any, Any, Any],
    queue: asyncio.Queue[Any],
    shown: tuple[int, int],
    scope: anyio.CancelScope,
) -> None:
    """Pass frames from the queue to the socket, skipping messages the history had."""
    try:
        while True:
            frame = await queue.get()
            if isinstance(frame, Closed):
                await _close(socket, frame.frame, CLOSE_UNAVAILABLE)
                break
            if frame.get("type") == "message" and stream_position(frame["id"]) <= shown:
                continue
            await _send(socket, frame)
    except WebSocketDisconnect:
        pass
    scope.cancel()


async def _read(
    socket: WebSocket[Any, Any, Any], state: State, visitor: Visitor, queue: asyncio.Queue[Any]
) -> None:
    """Handle the visitor's frames until the socket closes."""
    recent: deque[float] = deque()
    while True:
        try:
            raw = await socket.receive_data(mode="text")
        except WebSocketDisconnect:
            return
        try:
            text, client_id = parse_frame(raw)
            _check_rate(recent)
        except InputError as exc:
            _put(queue, {"type": "error", "code": exc.code, "message": exc.message})
            continue
        try:
            await _customer_message(state, visitor, queue, text, client_id)
        except Exception:  # a fault of c360's: logged, told, and the socket stays open
            log.exception("Could not take a message of web-chat %r.", visitor.conversation_id)
            _put(queue, _internal_error())


def parse_frame(raw: str) -> tuple[str, str]:
    """(text, client_id) of a message frame; InputError naming what to fix otherwise."""
    if len(raw) > MAX_FRAME_CHARS:
        raise InputError("frame_too_large", f"a frame may be at most {MAX_FRAME_CHARS} characters")
    try:
        frame = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: arrays nested thousands deep
        frame = None
    if not isinstance(frame, dict):
        raise InputError("invalid_frame", f"send one JSON object per frame, e.g. {_FRAME_EXAMPLE}")
    _check_frame_text(frame)
    if frame.get("type") != "message":
        raise InputError(
            "unknown_type", f'type {frame.get("type")!r} is not known: send type "message"'
        )
    text, client_id = frame.get("text"), frame.get("client_id")
    if not isinstance(text, str) or not has_visible_text(text):
        raise InputError("missing_text", "a message needs its words in `text`")
    if len(text) > MAX_TEXT_CHARS:
        raise InputError(
            "text_too_long", f"a message may be at most {MAX_TEXT_CHARS} characters: split it"
        )
    if not isinstance(client_id, str) or not CLIENT_ID.fullmatch(client_id):
        raise InputError(
            "invalid_client_id",
            "a message needs a `client_id` of 1 to 64 letters, digits or _.:- that names it "
            "(a resend with the same id is received once)",
        )
    return text.strip(), client_id


def _check_frame_text(value: Any, where: str = "the frame") -> None:
    """Refuse a frame holding text PostgreSQL cannot store, before anything is stored or
    echoed: a message acknowledged and then lost would be worse than one refused."""
    if isinstance(value, str):
        _check_text(value, where)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key, "a field name of the frame")
            _check_frame_text(item, f"`{key}`")
    elif isinstance(value, list):
        for item in value:
            _check_frame_text(item, where)


def _check_text(text: str, where: str) -> None:
    """InputError invalid_text when `text` holds NUL or a lone surrogate (half of a UTF-16
    pair, as a string cut in the middle of an emoji has), which text cannot hold."""
    if "\x00" in text:
        raise InputError(
            "invalid_text",
            f"{where} holds a NUL character (\\u0000), which text cannot hold: remove it",
        )
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise InputError(
                "invalid_text",
                f"{where} holds half of a UTF-16 surrogate pair (a character cut in two, "
                "\\ud800 to \\udfff alone): send whole characters",
            ) from None


def _check_rate(recent: deque[float]) -> None:
    """At most MESSAGES_PER_MINUTE messages in any minute on one socket."""
    now = time.monotonic()
    while recent and now - recent[0] > 60:
        recent.popleft()
    if len(recent) >= MESSAGES_PER_MINUTE:
        raise InputError(
            "too_many_messages",
            f"at most {MESSAGES_PER_MINUTE} messages a minute: wait a moment and send again",
        )
    recent.append(now)


async def _customer_message(
    state: State, visitor: Visitor, queue: asyncio.Queue[Any], text: str, client_id: str
) -> None:
    """Store the message once (a resend is answered with the stored copy), then let the inbox
    and the agent answer it; their replies arrive through the conversation's channel."""
    keys, args = append_call(
        visitor.conversation_id, "customer", text, f"in:{client_id}", client_id
    )
    try:
        result = appended(await _append(state)(keys=keys, args=args))
    except (redis.RedisError, OSError) as exc:
        log.warning("Could not store a web-chat message: %s", exc)
        _put(queue, _unavailable().frame)
        return
    if result is None:  # the conversation expired while the socket was open
        _put(queue, Closed("conversation_ended", "this conversation has ended: reconnect"))
        return
    if not result.new:
        await _resend(state.valkey, visitor.conversation_id, result.id, queue)
        return
    _put(queue, {"type": "typing", "active": True})
    try:
        await anyio.to_thread.run_sync(_receive, state.runtime, _inbound(visitor, text, client_id))
    except Exception:
        log.exception("The agent could not answer web-chat %r.", visitor.conversation_id)
        _put(
            queue,
            {
                "type": "error",
                "code": "not_answered",
                "message": "your message is kept, but no answer could be written just now: "
                "try again in a moment",
            },
        )
    finally:
        _put(queue, {"type": "typing", "active": False})


def _inbound(visitor: Visitor, text: str, client_id: str) -> InboundMessage:
    identifiers = []
    if visitor.user_id:
        identifiers.append(("user_id", visitor.user_id))
    if visitor.anonymous_id:
        identifiers.append(("anonymous_id", visitor.anonymous_id))
    return InboundMessage(
        channel=WEBCHAT,
        sender=visitor.conversation_id,
        text=text,
        # ids the widget makes are unique to its conversation, not across all of them
        external_id=f"{visitor.conversation_id}:{client_id}",
        received_at=_now(),
        identifiers=tuple(identifiers),
        language=visitor.language,
        raw={"source": visitor.source, "client_id": client_id},
    )


def _receive(runtime: Runtime, message: InboundMessage) -> None:
    from c360.channels import inbox  # the channels and agents load only when a chat starts

    inbox.receive(runtime, message, responder)


async def _resend(
    valkey: aioredis.Redis, conversation_id: str, entry_id: str, queue: asyncio.Queue[Any]
) -> None:
    """A message sent again (the widget did not see it arrive): show the stored one."""
    entries = await valkey.xrange(history_key(conversation_id), entry_id, entry_id)
    for found_id, fields in entries:
        _put(queue, {**entry_frame(found_id, fields), "repeat": True})


def _append(state: State) -> Any:
    script = state.get("webchat_append")
    if script is None:
        script = state["webchat_append"] = append_script(state.valkey)
    return script


def _put(queue: asyncio.Queue[Any], frame: Any) -> None:
    # a full queue is being closed for falling behind (see Hub._deliver)
    with contextlib.suppress(asyncio.QueueFull):
        queue.put_nowait(frame)


async def _send(socket: WebSocket[Any, Any, Any], frame: dict[str, Any]) -> None:
    await socket.send_data(json.dumps(frame, ensure_ascii=False))


async def _close(
    socket: WebSocket[Any, Any, Any], frame: dict[str, Any], code: int = CLOSE_REFUSED
) -> None:
    """Say why, then close: a widget never sees a socket close without a reason."""
    try:
        await _send(socket, frame)
        await socket.close(code=code, reason=frame.get("code", ""))
    except (WebSocketDisconnect, RuntimeError):
        pass  # already gone


def _internal_error() -> dict[str, Any]:
    return {
        "type": "error",
        "code": "internal_error",
        "message": "c360 could not handle this: it is logged; try again in a moment",
    }


def _unavailable() -> Closed:
    return Closed("unavailable", "chat is unavailable for a moment: the widget reconnects")


def _now() -> datetime:
    return datetime.now(UTC)


# -- one Valkey subscription per process -------------------------------------------------


class Hub:
    """The process's subscription to every conversation's channel, passing each message to
    the queues of the sockets open on that conversation. It runs while a socket is open; a
    lost subscription closes every socket, and the widgets reconnect to a fresh one."""

    def __init__(self, valkey: aioredis.Redis) -> None:
        self._valkey = valkey
        self._queues: dict[str, set[asyncio.Queue[Any]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._ready: asyncio.Event = asyncio.Event()

    async def join(self, conversation_id: str) -> asyncio.Queue[Any]:
        """A queue of the conversation's frames, once the subscription is live."""
        queue: asyncio.Queue[Any] = asyncio.Queue(QUEUE_FRAMES)
        self._queues.setdefault(conversation_id, set()).add(queue)
        if self._task is None or self._task.done():
            self._ready = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._listen(self._ready))
        try:
            async with asyncio.timeout(SUBSCRIBE_TIMEOUT_S):
                await self._ready.wait()
        except BaseException:
            self.leave(conversation_id, queue)
            raise
        return queue

    def leave(self, conversation_id: str, queue: asyncio.Queue[Any]) -> None:
        """Forget a socket's queue; the last to leave ends the subscription."""
        queues = self._queues.get(conversation_id, set())
        queues.discard(queue)
        if not queues:
            self._queues.pop(conversation_id, None)
        if not self._queues and self._task is not None:
            self._task.cancel()
            self._task = None

    async def _listen(self, ready: asyncio.Event) -> None:
        pubsub = self._valkey.pubsub()
        try:
            await pubsub.psubscribe(CHANNEL_PATTERN)
            async for message in pubsub.listen():
                if message["type"] == "psubscribe":
                    ready.set()
                elif message["type"] == "pmessage":
                    self._deliver(message["channel"], message["data"])
        except (redis.RedisError, OSError) as exc:
            log.warning("Lost the web-chat subscription: %s", exc)
            self._close_all()
        finally:
            await pubsub.aclose()

    def _deliver(self, channel: bytes, data: bytes) -> None:
        conversation_id = channel.decode()[len(channel_name("")) :]
        queues = self._queues.get(conversation_id)
        if not queues:
            return
        frame = json.loads(data)
        for queue in list(queues):
            try:
                queue.put_nowait(frame)
            except asyncio.QueueFull:
                log.info("Closing a web-chat socket of %r: it fell behind.", conversation_id)
                _drain(queue)
                queue.put_nowait(
                    Closed(
                        "too_slow",
                        "messages came faster than they could be shown: the widget reconnects",
                    )
                )

    def _close_all(self) -> None:
        for queues in self._queues.values():
            for queue in queues:
                _drain(queue)
                queue.put_nowait(_unavailable())


def _hub(state: State) -> Hub:
    hub = state.get("webchat_hub")
    if hub is None:
        hub = state["webchat_hub"] = Hub(state.valkey)
    return hub


def _drain(queue: asyncio.Queue[Any]) -> None:
    while not queue.empty():
        queue.get_nowait()


# -- the demo page ----------------------------------------------------------------------------


def _demo_identity(user_id: str | None, signed: str | None) -> str:
    """The line saying as whom the visitor chats, and why."""
    if user_id is None:
        return "You chat as an anonymous visitor."
    if signed is None:
        return (
            f"You chat as an anonymous visitor, not as {escape(user_id)}: this page signs a "
            "customer's id only for someone signed in to c360 who may read profiles "
            '(<a href="/login">sign in</a>), as a shop signs the id of its own signed-in '
            "customer."
        )
    return f"You chat as customer <strong>{escape(user_id)}</strong>, signed by this c360."


def _demo_key(write_keys: dict[str, str]) -> str | None:
    return next((key for key, source in write_keys.items() if source == DEMO_SOURCE), None)


def _demo_html(key: str | None, user_id: str | None, signed: str | None, lang: str | None) -> str:
    """The page: a heading, lines saying what to try and as whom, and the widget's script."""
    if not key:
        note = "Add <code>?key=</code> and a source's write key to this page's address."
        script = ""
    else:
        note = "Ask about products, prices or your orders; ask for a person to reach an operator."
        note += " " + _demo_identity(user_id, signed)
        if signed is None:
            user_id = None  # an unsigned id would only be refused by the socket
        attributes = {
            "data-write-key": key,
            "data-user-id": user_id,
            "data-user-hash": signed,
            "data-lang": lang,
        }
        shown = "".join(
            f' {name}="{escape(value, quote=True)}"' for name, value in attributes.items() if value
        )
        script = f'<script src="/static/chat-widget.js" defer{shown}></script>'
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>Chat demo · c360</title>"
        '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">'
        f"{script}</head><body><main><h1>Chat demo</h1><p>{note}</p></main></body></html>"
    )
