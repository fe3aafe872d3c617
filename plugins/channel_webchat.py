"""The web-chat channel: a conversation's messages kept in a capped Valkey stream (the history a
reconnecting widget is shown) and published on `c360:webchat:<conversation id>`, so whichever
gateway process holds the visitor's socket passes them on (c360.api.webchat).

One Lua script appends a message, records its de-duplication key and publishes it, so a
message is stored and announced once, whoever sends it twice: a widget resending after a
reconnect (its client id) or the delivery machinery retrying a send (the idempotency key).
Touches Valkey only: the keys `c360:webchat:{<id>}:history|seen|visitor` and the channel.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import redis

from c360.channels.base import WEBCHAT, OutboundMessage, SendResult
from c360.hookspecs import hookimpl
from c360.settings import Settings

log = logging.getLogger(__name__)

#: Messages a conversation's stream keeps (approximately: Valkey trims whole nodes); a
#: reconnecting widget is shown the last HISTORY_SHOWN of them.
HISTORY_CAP = 200
HISTORY_SHOWN = 50

#: A conversation nobody wrote in for this long is forgotten (history, visitor, de-duplication
#: keys): a widget coming back later starts afresh, and Valkey does not keep chats forever.
CONVERSATION_TTL_S = 30 * 86_400

#: Pub/sub pattern of every conversation's channel; one subscription per gateway process.
CHANNEL_PATTERN = "c360:webchat:*"

#: Who may speak in a conversation; outbound messages say which in metadata["role"].
ROLES = ("customer", "agent", "operator", "system")

#: Appends one message unless its de-duplication key was seen; returns {1, id} for a new
#: message, {0, id} for one seen before, {-1, ""} when the conversation does not exist.
_APPEND = """
if redis.call('EXISTS', KEYS[3]) == 0 then return {-1, ''} end
local seen = redis.call('HGET', KEYS[2], ARGV[1])
if seen then return {0, seen} end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[6], '*',
    'role', ARGV[2], 'text', ARGV[3], 'at', ARGV[4], 'client_id', ARGV[5])
redis.call('HSET', KEYS[2], ARGV[1], id)
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[7]) end
local frame = {type = 'message', id = id, role = ARGV[2], text = ARGV[3], at = ARGV[4]}
if ARGV[5] ~= '' then frame.client_id = ARGV[5] end
redis.call('PUBLISH', ARGV[8], cjson.encode(frame))
return {1, id}
"""


@dataclasses.dataclass(frozen=True)
class Appended:
    """What became of an append: the message's stream id, and whether it is new."""

    id: str
    new: bool


@hookimpl
def c360_channels(settings: Settings) -> list[Any]:
    """Web chat needs nothing but Valkey, which every c360 has."""
    return [WebChatChannel(settings)]


class WebChatChannel:
    """Sends a reply (agent or operator) into its web-chat conversation."""

    name = WEBCHAT

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def send(self, message: OutboundMessage) -> SendResult:
        """Append and publish; Valkey out of reach is worth a retry, an unknown conversation
        (ended, expired, or never opened) is not."""
        role = message.metadata.get("role", "agent")
        if role not in ROLES:
            return SendResult(status="failed", error=f"role {role!r} is not one of {ROLES}")
        try:
            appended = append(
                _client(self.settings.valkey_url),
                message.to,
                role,
                message.text,
                dedupe=f"out:{message.idempotency_key}",
            )
        except (redis.RedisError, OSError) as exc:
            return SendResult(status="retry", error=f"Valkey is out of reach: {exc}")
        if appended is None:
            return SendResult(
                status="failed",
                error=f"no web-chat conversation {message.to!r}: it ended or expired",
            )
        return SendResult(status="sent", provider_id=appended.id)

    def route_handlers(self) -> list[Any]:
        """The socket the widget connects to, and the demo page."""
        from c360.api import webchat  # the API imports this module: import it when asked

        return webchat.route_handlers()


# -- keys and the append, shared with the socket (c360.api.webchat) -------------------------


def new_conversation_id() -> str:
    """An unguessable id: whoever holds it may read the conversation, as a widget does."""
    return "wc_" + secrets.token_urlsafe(16)


def channel_name(conversation_id: str) -> str:
    """The pub/sub channel a conversation's messages are announced on."""
    return f"c360:webchat:{conversation_id}"


def history_key(conversation_id: str) -> str:
    return f"c360:webchat:{{{conversation_id}}}:history"


def seen_key(conversation_id: str) -> str:
    return f"c360:webchat:{{{conversation_id}}}:seen"


def visitor_key(conversation_id: str) -> str:
    """A hash: the source whose write key opened the conversation, and the visitor's ids."""
    return f"c360:webchat:{{{conversation_id}}}:visitor"


def forget_conversation(valkey: Any, conversation_id: str) -> None:
    """Drop a conversation's history, de-duplication record and visitor (a deletion request)."""
    keys = [history_key(conversation_id), seen_key(conversation_id), visitor_key(conversation_id)]
    valkey.delete(*keys)


def append_call(
    conversation_id: str, role: str, text: str, dedupe: str, client_id: str = ""
) -> tuple[list[str], list[Any]]:
    """(keys, args) of the append script for one message, stamped now."""
    keys = [history_key(conversation_id), seen_key(conversation_id), visitor_key(conversation_id)]
    at = datetime.now(UTC).isoformat(timespec="milliseconds")
    args = [
        dedupe,
        role,
        text,
        at,
        client_id,
        HISTORY_CAP,
        CONVERSATION_TTL_S,
        channel_name(conversation_id),
    ]
    return keys, args


def append_script(client: Any) -> Any:
    """The append script registered on a Valkey client (sync or asyncio)."""
    return client.register_script(_APPEND)


def appended(result: list[Any]) -> Appended | None:
    """The script's answer as an Appended, None for an unknown conversation."""
    status, entry_id = int(result[0]), _text(result[1])
    return None if status < 0 else Appended(entry_id, status == 1)


def append(
    client: redis.Redis, conversation_id: str, role: str, text: str, *, dedupe: str
) -> Appended | None:
    """Append one message to a conversation and announce it (sync client)."""
    keys, args = append_call(conversation_id, role, text, dedupe)
    return appended(append_script(client)(keys=keys, args=args))


def entry_frame(entry_id: Any, fields: dict[Any, Any]) -> dict[str, Any]:
    """A stream entry as the socket's `message` frame (the script publishes the same shape)."""
    values = {_text(key): _text(value) for key, value in fields.items()}
    frame = {
        "type": "message",
        "id": _text(entry_id),
        "role": values.get("role", "agent"),
        "text": values.get("text", ""),
        "at": values.get("at", ""),
    }
    if values.get("client_id"):
        frame["client_id"] = values["client_id"]
    return frame


def stream_position(entry_id: str) -> tuple[int, int]:
    """A stream id ("1700000000000-3") as numbers, to order messages."""
    millis, _, sequence = entry_id.partition("-")
    return int(millis), int(sequence or 0)


@lru_cache(maxsize=8)
def _client(url: str) -> redis.Redis:
    """One client (and connection pool) per Valkey, shared by every send in the process."""
    return redis.Redis.from_url(url, health_check_interval=30)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
