"""A local stand-in for Firebase Cloud Messaging's HTTP v1 API.

    POST /v1/projects/{project}/messages:send
    Authorization: Bearer <token>
    {"message": {"token": ..., "notification": {"title", "body"}, "data": {...}}}
    -> 200 {"name": "projects/{project}/messages/<id>"}

It checks what FCM checks: the bearer token, the project, exactly one target, notification
fields and data values that are strings. Errors come in FCM's shape ({"error": {code, message,
status, details: [{"@type": ...FcmError, "errorCode"}]}}): 401 UNAUTHENTICATED, 400
INVALID_ARGUMENT, 404 UNREGISTERED for a device token `unregister`ed, 429 QUOTA_EXCEEDED and
503 UNAVAILABLE from `fail_next`.

    peer = PushPeer().start()
    settings: push_url=peer.url, push_project=peer.project, push_token=peer.token
"""

from __future__ import annotations

import dataclasses
import hmac
import re
import secrets
from typing import Any

from peers.http_peer import Answer, HttpPeer, Request, json_answer

_SEND = re.compile(r"^/v1/projects/(?P<project>[^/]+)/messages:send$")
_FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
_TARGETS = ("token", "topic", "condition")


@dataclasses.dataclass(frozen=True)
class SentPush:
    """A notification the service accepted."""

    name: str
    token: str
    title: str | None
    body: str | None
    data: dict[str, str]


class PushPeer(HttpPeer):
    """FCM's HTTP v1 send endpoint, on 127.0.0.1."""

    def __init__(self) -> None:
        super().__init__()
        self.project = "c360-test-" + secrets.token_hex(3)
        self.token = "ya29." + secrets.token_urlsafe(30)
        self.unregistered: set[str] = set()
        self.received: list[SentPush] = []

    def unregister(self, device_token: str) -> None:
        """The device uninstalled the app: sends to its token answer 404 UNREGISTERED."""
        self.unregistered.add(device_token)

    def answer(self, request: Request) -> Answer:
        match = _SEND.match(request.path)
        if request.method != "POST" or not match or match["project"] != self.project:
            return _error(404, "NOT_FOUND", "Requested entity was not found.")
        sent = request.headers.get("authorization", "")
        if not hmac.compare_digest(sent.encode(), f"Bearer {self.token}".encode()):
            return _error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
        try:
            message = request.json()["message"]
        except (ValueError, KeyError, TypeError):
            return _error(
                400, "INVALID_ARGUMENT", "Invalid JSON payload received.", "INVALID_ARGUMENT"
            )
        problem = _problem(message)
        if problem:
            return _error(400, "INVALID_ARGUMENT", problem, "INVALID_ARGUMENT")
        if message["token"] in self.unregistered:
            return _error(404, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED")
        notification = message.get("notification") or {}
        sent_push = SentPush(
            name=f"projects/{self.project}/messages/0:{secrets.randbelow(10**16)}",
            token=message["token"],
            title=notification.get("title"),
            body=notification.get("body"),
            data=dict(message.get("data") or {}),
        )
        with self._lock:
            self.received.append(sent_push)
        return json_answer(200, {"name": sent_push.name})

    def failure(self, status: int, retry_after: float | None) -> Answer:
        headers = {"Retry-After": str(int(retry_after))} if retry_after is not None else {}
        if status == 429:
            return _error(429, "RESOURCE_EXHAUSTED", "Quota exceeded.", "QUOTA_EXCEEDED", headers)
        return _error(status, "UNAVAILABLE", "The service is unavailable.", "UNAVAILABLE", headers)


def _problem(message: Any) -> str | None:
    if not isinstance(message, dict):
        return "message must be an object"
    targets = [name for name in _TARGETS if message.get(name)]
    if targets != ["token"]:
        return "exactly one of token, topic or condition must be set (this peer takes token)"
    notification = message.get("notification", {})
    if not isinstance(notification, dict) or any(
        not isinstance(notification.get(key, ""), str) for key in ("title", "body")
    ):
        return "notification.title and notification.body must be strings"
    data = message.get("data", {})
    if not isinstance(data, dict) or any(
        not isinstance(key, str) or not isinstance(value, str) for key, value in data.items()
    ):
        return "Invalid value at 'message.data': data values must be strings"
    return None


def _error(
    status: int,
    state: str,
    message: str,
    error_code: str | None = None,
    headers: dict[str, str] | None = None,
) -> Answer:
    error: dict[str, Any] = {"code": status, "message": message, "status": state}
    if error_code:
        error["details"] = [{"@type": _FCM_ERROR, "errorCode": error_code}]
    return json_answer(status, {"error": error}, headers)
