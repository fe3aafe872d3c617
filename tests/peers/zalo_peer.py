"""A local stand-in for the Zalo Official Account API and Zalo's OAuth server.

    POST /v3.0/oa/message/cs        header access_token; {"recipient": {"user_id"},
                                    "message": {"text"}} -> {"error": 0, "data": {"message_id"}}
                                    or {"error": -216, ...} for an invalid or expired token
    POST /v4/oa/access_token        header secret_key (the app secret); form refresh_token,
                                    app_id, grant_type=refresh_token -> {access_token,
                                    refresh_token, expires_in}; a refresh token works once

Like Zalo it answers HTTP 200 with an `error` code for most refusals. It also plays Zalo's
side of the webhook: `send_inbound` posts a `user_send_text` event to `webhook_url` and
`send_receipt` a `user_received_message` / `user_seen_message`, each signed in
X-ZEvent-Signature as "mac=" + sha256 hex of app_id + body + timestamp + the OA secret key.

    peer = ZaloPeer().start()
    settings: zalo_api_url=peer.url, zalo_oauth_url=peer.url, zalo_app_id=peer.app_id,
              zalo_app_secret=peer.app_secret, zalo_oa_secret=peer.oa_secret,
              zalo_access_token=peer.access_token, zalo_refresh_token=peer.refresh_token
    peer.expire_access_token()      # the next send answers -216 until c360 refreshes
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import secrets
import time
from typing import Any

import httpx

from peers.http_peer import Answer, HttpPeer, Request, json_answer

#: Zalo's limit on a customer-service text message.
MAX_TEXT = 2000


@dataclasses.dataclass(frozen=True)
class SentZalo:
    """A message the OA API accepted."""

    message_id: str
    user_id: str
    text: str
    access_token: str


def zevent_signature(app_id: str, body: bytes, timestamp: str, oa_secret: str) -> str:
    """X-ZEvent-Signature as Zalo computes it (written here apart from c360's own)."""
    digest = hashlib.sha256()
    for part in (app_id.encode(), body, timestamp.encode(), oa_secret.encode()):
        digest.update(part)
    return f"mac={digest.hexdigest()}"


class ZaloPeer(HttpPeer):
    """Zalo's OA message API, OAuth token endpoint and webhook sender, on 127.0.0.1."""

    def __init__(self, expires_in: int = 90_000) -> None:
        super().__init__()
        self.app_id = str(secrets.randbelow(10**18))
        self.oa_id = str(secrets.randbelow(10**18))
        self.app_secret = secrets.token_urlsafe(15)
        self.oa_secret = secrets.token_urlsafe(15)
        self.expires_in = expires_in
        self.access_token = secrets.token_urlsafe(40)
        self.refresh_token = secrets.token_urlsafe(40)
        self._valid_access = {self.access_token}
        self.used_refresh_tokens: list[str] = []
        self.refreshes = 0
        self.received: list[SentZalo] = []
        self.webhook_url: str | None = None
        self.client: Any = None

    def expire_access_token(self) -> None:
        """Every access token handed out so far stops working (-216)."""
        with self._lock:
            self._valid_access.clear()

    # --- the APIs ---------------------------------------------------------------------------

    def answer(self, request: Request) -> Answer:
        if request.method == "POST" and request.path == "/v3.0/oa/message/cs":
            return self._send(request)
        if request.method == "POST" and request.path == "/v4/oa/access_token":
            return self._refresh(request)
        return json_answer(404, {"error": 404, "message": "not found"})

    def failure(self, status: int, retry_after: float | None) -> Answer:
        headers = {"Retry-After": str(int(retry_after))} if retry_after is not None else {}
        return status, {"Content-Type": "text/html", **headers}, b"<html>Bad Gateway</html>"

    def _send(self, request: Request) -> Answer:
        token = request.headers.get("access_token", "")
        with self._lock:
            valid = token in self._valid_access
        if not valid:
            return json_answer(200, {"error": -216, "message": "Access token is invalid"})
        try:
            body = request.json()
            user_id = body["recipient"]["user_id"]
            text = body["message"]["text"]
        except (ValueError, KeyError, TypeError):
            return json_answer(200, {"error": -201, "message": "Parameters are invalid"})
        if not isinstance(text, str) or not text or len(text) > MAX_TEXT:
            return json_answer(200, {"error": -201, "message": "Text length is invalid"})
        if not isinstance(user_id, str) or not user_id.isdigit():
            return json_answer(200, {"error": -213, "message": "User has not followed the OA"})
        sent = SentZalo(secrets.token_hex(16), user_id, text, token)
        with self._lock:
            self.received.append(sent)
        data = {"message_id": sent.message_id, "user_id": user_id}
        return json_answer(200, {"error": 0, "message": "Success", "data": data})

    def _refresh(self, request: Request) -> Answer:
        form = dict(request.form())
        if not _same(request.headers.get("secret_key", ""), self.app_secret):
            return _oauth_error(-14002, "Invalid secret key")
        if form.get("app_id") != self.app_id or form.get("grant_type") != "refresh_token":
            return _oauth_error(-14001, "Invalid app_id or grant_type")
        with self._lock:
            if form.get("refresh_token") != self.refresh_token:
                return _oauth_error(-14014, "Invalid refresh token")
            self.used_refresh_tokens.append(self.refresh_token)
            self.refreshes += 1
            self.access_token = secrets.token_urlsafe(40)
            self.refresh_token = secrets.token_urlsafe(40)
            self._valid_access.add(self.access_token)
            pair = {
                "access_token": self.access_token,
                "refresh_token": self.refresh_token,
                "expires_in": str(self.expires_in),  # Zalo sends it as a string
            }
        return json_answer(200, pair)

    # --- the webhook Zalo sends -------------------------------------------------------------

    def send_inbound(
        self, text: str, from_: str, *, msg_id: str | None = None, signature: str | None = None
    ) -> httpx.Response:
        """Post a customer's text (`user_send_text`) to `webhook_url`, signed."""
        event = {
            "app_id": self.app_id,
            "user_id_by_app": str(secrets.randbelow(10**18)),
            "event_name": "user_send_text",
            "timestamp": str(int(time.time() * 1000)),
            "sender": {"id": from_},
            "recipient": {"id": self.oa_id},
            "message": {"text": text, "msg_id": msg_id or secrets.token_hex(16)},
        }
        return self.post_event(event, signature)

    def send_receipt(self, message_ids: list[str], *, seen: bool = False) -> httpx.Response:
        """Post that the customer's app got (or showed) messages the OA sent."""
        event = {
            "app_id": self.app_id,
            "event_name": "user_seen_message" if seen else "user_received_message",
            "timestamp": str(int(time.time() * 1000)),
            "sender": {"id": self.oa_id},
            "recipient": {"id": "0"},
            "message": {"msg_ids": message_ids} if seen else {"msg_id": message_ids[0]},
        }
        return self.post_event(event)

    def post_event(self, event: dict[str, Any], signature: str | None = None) -> httpx.Response:
        """POST an event to `webhook_url` with Zalo's signature (or the one given)."""
        assert self.webhook_url, "set peer.webhook_url to c360's Zalo webhook first"
        body = json.dumps(event, ensure_ascii=False).encode()
        mac = signature or zevent_signature(self.app_id, body, event["timestamp"], self.oa_secret)
        headers = {"Content-Type": "application/json", "X-ZEvent-Signature": mac}
        if self.client is not None:
            return self.client.post(self.webhook_url, content=body, headers=headers)
        with httpx.Client(timeout=10) as client:
            return client.post(self.webhook_url, content=body, headers=headers)


def _oauth_error(code: int, description: str) -> Answer:
    body = {
        "error": code,
        "error_name": "Invalid parameter",
        "error_reason": description,
        "ref_doc": "https://developers.zalo.me/docs/official-account",
        "error_description": description,
    }
    return json_answer(200, body)


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
