"""The shapes every channel speaks: what goes out, what comes in, what became of a send.

A channel plugin returns `Channel` objects from the `c360_channels(settings)` hook. Its
`send` makes one attempt and says whether it worked, failed for good, or may work later;
recording, retries and idempotency are the caller's (c360.channels.delivery), so every
channel gets them the same way. Its `route_handlers` are the inbound half: webhooks that
check the provider's signature, then hand messages to c360.channels.inbox and status
callbacks to c360.channels.delivery.
"""

from __future__ import annotations

import dataclasses
import unicodedata
from datetime import datetime
from typing import Any, Literal, Protocol, runtime_checkable

#: Channel names c360 ships; a plugin may add its own.
WEBCHAT, SMS, ZALO, EMAIL, PUSH, WEBHOOK = "webchat", "sms", "zalo", "email", "push", "webhook"

#: What one send attempt came to: taken by the provider, refused for good, or worth retrying;
#: "bounced" is refused for good because the address itself is refused (an email 5xx at RCPT).
SendStatus = Literal["sent", "failed", "bounced", "retry"]

#: What the provider later says became of a message (status callbacks, opens, bounces).
DeliveryState = Literal[
    "queued", "sent", "delivered", "read", "failed", "bounced", "opened", "unsubscribed"
]


@dataclasses.dataclass(frozen=True, kw_only=True)
class OutboundMessage:
    """One message to one customer on one channel."""

    channel: str
    #: the customer's address on this channel: E.164 phone (sms), Zalo user id, email
    #: address, web-chat conversation id, push device token, or a webhook's subject id
    to: str
    text: str
    #: same key, same message: c360.channels.delivery sends a key at most once
    idempotency_key: str
    #: "service" for replies in a conversation the customer started; otherwise the consent
    #: purpose a notification is sent under (checked before it gets here)
    purpose: str = "service"
    profile_id: str | None = None
    subject: str | None = None  # email
    html: str | None = None  # email
    #: channel-specific extras, e.g. {"unsubscribe_url": ..., "open_pixel_url": ...}
    metadata: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, kw_only=True)
class SendResult:
    """The outcome of one attempt."""

    status: SendStatus
    provider_id: str | None = None  # the provider's id for the message, matched by callbacks
    error: str | None = None
    #: the provider asked us to wait this long (429 Retry-After), if it said
    retry_after_s: float | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class InboundMessage:
    """A customer's message as a channel's webhook (or socket) received it."""

    channel: str
    #: where a reply goes on this channel (same meaning as OutboundMessage.to)
    sender: str
    text: str
    #: the provider's id for the message (Twilio MessageSid, Zalo msg_id, a web-chat client
    #: id): a redelivered webhook with the same id is received once
    external_id: str
    received_at: datetime
    #: identifiers that find the customer's profile, e.g. [("phone", "+84901234567")],
    #: [("zalo_id", "84123")], [("user_id", "u-1"), ("anonymous_id", "a-9")]; normalised by
    #: the same rules as events' identifiers (c360.events.identifiers)
    identifiers: tuple[tuple[str, str], ...] = ()
    display_name: str | None = None
    #: the language the channel or widget reported, if any ("vi", "en")
    language: str | None = None
    raw: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, kw_only=True)
class DeliveryUpdate:
    """A provider's later word on a message: delivered, failed, bounced, opened..."""

    channel: str
    provider_id: str
    state: DeliveryState
    at: datetime
    error: str | None = None


@runtime_checkable
class Channel(Protocol):
    """One way of reaching customers."""

    #: unique among channels, e.g. "sms"
    name: str

    def send(self, message: OutboundMessage) -> SendResult:
        """Make one attempt to send; never raises for a provider's refusal or an outage."""
        ...

    def route_handlers(self) -> list[Any]:
        """Litestar handlers for the inbound half (webhooks, status callbacks); may be empty.
        Each declares `opt={"public": True}` and checks the provider's signature itself."""
        ...


def has_visible_text(text: str) -> bool:
    """Whether a message has any character a person can see: one made only of spaces and
    format characters (zero-width spaces, joiners, direction marks) says nothing."""
    return any(not ch.isspace() and unicodedata.category(ch) != "Cf" for ch in text)
