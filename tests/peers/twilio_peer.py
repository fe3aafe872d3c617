"""A local stand-in for Twilio's Programmable Messaging API, speaking its wire format.

It takes sends (POST /2010-04-01/Accounts/{AccountSid}/Messages.json, form-encoded, HTTP basic
auth AccountSid:AuthToken) and checks what Twilio checks: the credentials, the account in the
path, To in E.164, From one of the account's numbers, a Body. It answers 201 with the message
resource (a new `SM...` sid) or Twilio's error JSON ({code, message, more_info, status}).

It also plays Twilio's side of the webhooks: `send_inbound` posts a customer's SMS to
`inbound_url` and `send_status` a status callback to the URL a send named, each signed with
X-Twilio-Signature the way Twilio signs (base64 HMAC-SHA1 with the auth token of the URL, then
each parameter's name and value, names in alphabetical order).

    peer = TwilioPeer().start()
    settings: twilio_api_url=peer.url, twilio_account_sid=peer.account_sid,
              twilio_auth_token=peer.auth_token, twilio_from=peer.number
    peer.inbound_url = public_url + "/v1/channels/sms/twilio"; peer.client = test_client
    peer.send_inbound("Hello", "+84901234567"); peer.received -> [SentSms(...)]
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import httpx

from peers.http_peer import Answer, HttpPeer, Request, json_answer

_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_MESSAGES = re.compile(r"^/2010-04-01/Accounts/(?P<sid>[^/]+)/Messages\.json$")


@dataclasses.dataclass(frozen=True)
class SentSms:
    """A message the peer accepted for sending."""

    sid: str
    to: str
    from_: str
    body: str
    status_callback: str | None


def twilio_signature(auth_token: str, url: str, params: list[tuple[str, str]]) -> str:
    """X-Twilio-Signature as Twilio computes it (written here apart from c360's own)."""
    by_name: dict[str, list[str]] = {}
    for name, value in params:
        by_name.setdefault(name, []).append(value)
    data = url
    for name in sorted(by_name):
        for value in sorted(by_name[name]):
            data += f"{name}{value}"
    mac = hmac.new(auth_token.encode("utf-8"), data.encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode("ascii")


class TwilioPeer(HttpPeer):
    """Twilio's Messages API and webhooks, on 127.0.0.1."""

    def __init__(self, number: str = "+15005550006") -> None:
        super().__init__()
        self.account_sid = "AC" + secrets.token_hex(16)
        self.auth_token = secrets.token_hex(16)
        self.number = number
        self.received: list[SentSms] = []
        #: where `send_inbound` posts (the number's "A message comes in" webhook)
        self.inbound_url: str | None = None
        #: what carries webhooks to c360: a Litestar TestClient, or None for a real socket
        self.client: Any = None
        #: called with each accepted message before its 201 is sent (a status callback that
        #: overtakes the answer, as Twilio's sometimes do)
        self.before_answer: Callable[[SentSms], None] | None = None

    # --- the REST API -----------------------------------------------------------------------

    def answer(self, request: Request) -> Answer:
        match = _MESSAGES.match(request.path)
        if request.method != "POST" or not match:
            return _error(404, 20404, f"The requested resource {request.path} was not found")
        if not self._authenticated(request):
            return _error(401, 20003, "Authenticate")
        if match["sid"] != self.account_sid:
            return _error(403, 20003, "The account in the URL is not the one authenticated")
        form = dict(request.form())
        problem = self._problem(form)
        if problem:
            return _error(400, *problem)
        sent = SentSms(
            sid="SM" + secrets.token_hex(16),
            to=form["To"],
            from_=form["From"],
            body=form["Body"],
            status_callback=form.get("StatusCallback"),
        )
        with self._lock:
            self.received.append(sent)
        if self.before_answer is not None:
            self.before_answer(sent)
        return json_answer(201, self._resource(sent))

    def failure(self, status: int, retry_after: float | None) -> Answer:
        headers = {"Retry-After": str(int(retry_after))} if retry_after is not None else {}
        code = 20429 if status == 429 else 20500
        message = "Too Many Requests" if status == 429 else "Internal Server Error"
        return _error(status, code, message, headers)

    def _authenticated(self, request: Request) -> bool:
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded).decode().partition(":")
        except ValueError:
            return False
        return hmac.compare_digest(f"{user}:{password}", f"{self.account_sid}:{self.auth_token}")

    def _problem(self, form: dict[str, str]) -> tuple[int, str] | None:
        if not form.get("To"):
            return 21604, "A 'To' phone number is required."
        if not _E164.match(form["To"]):
            return 21211, f"The 'To' number {form['To']} is not a valid phone number."
        if form.get("From") != self.number:
            return 21606, (
                f"The From phone number {form.get('From')} is not a valid, SMS-capable "
                "inbound phone number or short code for your account."
            )
        if not form.get("Body"):
            return 21602, "Message body is required."
        if len(form["Body"]) > 1600:
            return 21617, "The concatenated message body exceeds the 1600 character limit."
        return None

    def _resource(self, sent: SentSms) -> dict[str, Any]:
        return {
            "sid": sent.sid,
            "account_sid": self.account_sid,
            "to": sent.to,
            "from": sent.from_,
            "body": sent.body,
            "status": "queued",
            "num_segments": "1",
            "direction": "outbound-api",
            "api_version": "2010-04-01",
            "date_created": datetime.now(UTC).strftime("%a, %d %b %Y %H:%M:%S +0000"),
            "error_code": None,
            "error_message": None,
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sent.sid}.json",
        }

    # --- the webhooks Twilio sends ----------------------------------------------------------

    def send_inbound(self, text: str, from_: str, *, sid: str | None = None) -> httpx.Response:
        """Post a customer's SMS to `inbound_url`, signed; Twilio's parameters in its order."""
        assert self.inbound_url, "set peer.inbound_url to c360's SMS webhook first"
        sid = sid or "SM" + secrets.token_hex(16)
        params = [
            ("ToCountry", "US"),
            ("ToState", ""),
            ("SmsMessageSid", sid),
            ("NumMedia", "0"),
            ("ToCity", ""),
            ("FromZip", ""),
            ("SmsSid", sid),
            ("FromState", ""),
            ("SmsStatus", "received"),
            ("FromCity", ""),
            ("Body", text),
            ("FromCountry", "VN"),
            ("To", self.number),
            ("ToZip", ""),
            ("NumSegments", "1"),
            ("MessageSid", sid),
            ("AccountSid", self.account_sid),
            ("From", from_),
            ("ApiVersion", "2010-04-01"),
        ]
        return self.post_signed(self.inbound_url, params)

    def send_status(
        self, sid: str, status: str, error_code: str | None = None, url: str | None = None
    ) -> httpx.Response:
        """Post a status callback for a sent message to the StatusCallback it was sent with."""
        sent = next((item for item in self.received if item.sid == sid), None)
        target = url or (sent.status_callback if sent else None)
        assert target, f"no StatusCallback is known for {sid}"
        params = [
            ("SmsSid", sid),
            ("SmsStatus", status),
            ("MessageStatus", status),
            ("To", sent.to if sent else ""),
            ("MessageSid", sid),
            ("AccountSid", self.account_sid),
            ("From", self.number),
            ("ApiVersion", "2010-04-01"),
        ]
        if error_code:
            params.append(("ErrorCode", error_code))
        return self.post_signed(target, params)

    def post_signed(
        self, url: str, params: list[tuple[str, str]], signature: str | None = None
    ) -> httpx.Response:
        """POST form `params` to `url` with Twilio's signature (or the one given)."""
        headers = {
            "X-Twilio-Signature": signature or twilio_signature(self.auth_token, url, params),
            "Content-Type": "application/x-www-form-urlencoded",
            "User-Agent": "TwilioProxy/1.1",
        }
        body = urlencode(params).encode()
        if self.client is not None:
            return self.client.post(url, content=body, headers=headers)
        with httpx.Client(timeout=10) as client:
            return client.post(url, content=body, headers=headers)


def _error(status: int, code: int, message: str, headers: dict[str, str] | None = None) -> Answer:
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return json_answer(status, body, headers)
