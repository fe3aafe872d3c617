"""A local receiver of c360's generic webhooks, checking them as a careful receiver would:

    X-C360-Timestamp   unix seconds, no more than TOLERANCE_S away from now (no replays)
    X-C360-Signature   "sha256=" + hex HMAC-SHA256(secret, timestamp + "." + raw body)
    Idempotency-Key    present; a key seen before is acknowledged and not kept again

A bad or missing signature answers 401; a stale timestamp 400; a body that is not a JSON
object 400. `fail_next` makes it answer 5xx (or 429) as a struggling receiver does.

    peer = WebhookPeer().start()
    settings: webhook_url=peer.url + "/hooks/c360", webhook_secret=peer.secret
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from typing import Any

from peers.http_peer import Answer, HttpPeer, Request, json_answer

#: How far a timestamp may be from the receiver's clock.
TOLERANCE_S = 300


class WebhookPeer(HttpPeer):
    """A webhook receiver that verifies every post."""

    def __init__(self) -> None:
        super().__init__()
        self.secret = secrets.token_urlsafe(24)
        self.received: list[dict[str, Any]] = []  # bodies kept, one per idempotency key
        self.keys: list[str] = []
        self.duplicates = 0

    def answer(self, request: Request) -> Answer:
        timestamp = request.headers.get("x-c360-timestamp", "")
        if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > TOLERANCE_S:
            return json_answer(400, {"error": "stale or missing X-C360-Timestamp"})
        expected = hmac.new(
            self.secret.encode(), f"{timestamp}.".encode() + request.body, hashlib.sha256
        ).hexdigest()
        sent = request.headers.get("x-c360-signature", "")
        if not hmac.compare_digest(sent.encode(), f"sha256={expected}".encode()):
            return json_answer(401, {"error": "bad signature"})
        key = request.headers.get("idempotency-key")
        if not key:
            return json_answer(400, {"error": "Idempotency-Key is required"})
        try:
            body = json.loads(request.body)
        except ValueError:
            return json_answer(400, {"error": "not JSON"})
        if not isinstance(body, dict):
            return json_answer(400, {"error": "not a JSON object"})
        with self._lock:
            if key in self.keys:
                self.duplicates += 1
            else:
                self.keys.append(key)
                self.received.append(body)
        return json_answer(202, {"accepted": key})
