"""The generic webhook channel: each message is POSTed as JSON to `webhook_url`, signed so the
receiver can tell it came from this c360 and when.

    X-C360-Timestamp: unix seconds when it was signed
    X-C360-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>" keyed by webhook_secret>
    Idempotency-Key:  the message's key (a retried message carries the same one)

A 2xx answer is sent; 408, 429, 5xx and no answer are retried; any other 4xx fails for good.
Configured by `webhook_url` and `webhook_secret` (both needed). Outbound only.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from typing import Any

import httpx
import msgspec

from c360.channels import http
from c360.channels.base import WEBHOOK, OutboundMessage, SendResult
from c360.hookspecs import hookimpl
from c360.settings import Settings

log = logging.getLogger(__name__)

TIMESTAMP_HEADER = "X-C360-Timestamp"
SIGNATURE_HEADER = "X-C360-Signature"

_PROVIDER = "the webhook receiver"


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """The X-C360-Signature value for `body` signed at `timestamp`."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


class WebhookChannel:
    """POSTs each message to one URL."""

    name = WEBHOOK

    def __init__(self, url: str, secret: str) -> None:
        self.url = url
        self.secret = secret
        self.client = http.client()

    def send(self, message: OutboundMessage) -> SendResult:
        """One signed POST of the message as JSON."""
        body = msgspec.json.encode(_payload(message))
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: signature(self.secret, timestamp, body),
            "Idempotency-Key": message.idempotency_key,
        }
        try:
            response = self.client.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return http.outage(_PROVIDER, exc)
        if response.is_success:
            return SendResult(status="sent", provider_id=message.idempotency_key)
        return http.refusal(_PROVIDER, response, http.short(response.text) or "no detail")

    def route_handlers(self) -> list[Any]:
        """None: the webhook channel only sends."""
        return []


@hookimpl
def c360_channels(settings: Settings) -> list[WebhookChannel]:
    """The webhook channel, when `webhook_url` and `webhook_secret` are set."""
    if not settings.webhook_url:
        return []
    if not settings.webhook_secret:
        log.warning(
            "webhook_url is set but webhook_secret is not: the webhook channel is off until "
            "C360_WEBHOOK_SECRET is set (receivers could not tell c360's posts from forgeries)."
        )
        return []
    return [WebhookChannel(settings.webhook_url, settings.webhook_secret)]


def _payload(message: OutboundMessage) -> dict[str, Any]:
    return {
        "id": message.idempotency_key,
        "to": message.to,
        "profile_id": message.profile_id,
        "purpose": message.purpose,
        "subject": message.subject,
        "text": message.text,
        "metadata": message.metadata,
    }
