"""The push channel, in the wire format of Firebase Cloud Messaging's HTTP v1 API (or any
service speaking it): one POST per message to

    {push_url}/v1/projects/{push_project}/messages:send
    Authorization: Bearer {push_token}
    {"message": {"token": <device token>, "notification": {"title", "body"}, "data": {...}}}

answered with {"name": "projects/.../messages/..."}. A token the service no longer knows (404
UNREGISTERED) or a malformed message (400 INVALID_ARGUMENT) fails for good; 429 and 5xx are
retried after Retry-After. Configured by push_url, push_project and push_token. Outbound only.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from c360.channels import http
from c360.channels.base import PUSH, OutboundMessage, SendResult
from c360.hookspecs import hookimpl
from c360.settings import Settings

_PROVIDER = "the push service"


class PushChannel:
    """Sends notifications to devices through an FCM HTTP v1 endpoint."""

    name = PUSH

    def __init__(self, base_url: str, project: str, token: str) -> None:
        self.url = f"{base_url.rstrip('/')}/v1/projects/{quote(project, safe='')}/messages:send"
        self.token = token
        self.client = http.client()

    def send(self, message: OutboundMessage) -> SendResult:
        """One POST of the notification to the device token `message.to`."""
        headers = {"Authorization": f"Bearer {self.token}"}
        try:
            response = self.client.post(self.url, json=_body(message), headers=headers)
        except httpx.HTTPError as exc:
            return http.outage(_PROVIDER, exc)
        if response.is_success:
            return SendResult(status="sent", provider_id=_json(response).get("name"))
        return http.refusal(_PROVIDER, response, _error(response))

    def route_handlers(self) -> list[Any]:
        """None: push only sends."""
        return []


@hookimpl
def c360_channels(settings: Settings) -> list[PushChannel]:
    """The push channel, when push_url, push_project and push_token are all set."""
    if not (settings.push_url and settings.push_project and settings.push_token):
        return []
    return [PushChannel(settings.push_url, settings.push_project, settings.push_token)]


def _body(message: OutboundMessage) -> dict[str, Any]:
    notification = {"body": message.text}
    if message.subject:
        notification["title"] = message.subject
    body: dict[str, Any] = {"token": message.to, "notification": notification}
    if message.metadata:
        # FCM's data is a map of strings to strings; anything else is a 400
        body["data"] = {str(key): str(value) for key, value in message.metadata.items()}
    return {"message": body}


def _error(response: httpx.Response) -> str:
    """FCM's reason: the FcmError code (UNREGISTERED...) or the status, and its message."""
    error = _json(response).get("error")
    if not isinstance(error, dict):
        return http.short(response.text) or "no detail"
    codes = [
        detail.get("errorCode")
        for detail in error.get("details") or ()
        if isinstance(detail, dict) and detail.get("errorCode")
    ]
    reason = codes[0] if codes else error.get("status", "")
    return http.short(f"{reason} {error.get('message', '')}".strip())


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        found = response.json()
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}
