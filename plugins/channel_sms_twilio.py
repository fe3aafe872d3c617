"""The SMS channel in Twilio's wire format, so a Twilio account or any compatible gateway works.

Send: POST {twilio_api_url}/2010-04-01/Accounts/{sid}/Messages.json, basic auth sid:token,
form To, From, Body, StatusCallback; answered with JSON holding the message's `sid`. 429 and
5xx are retried (after Retry-After); another 4xx fails with Twilio's error code and message.

Inbound (both public, both signed by Twilio with X-Twilio-Signature):
    POST /v1/channels/sms/twilio          a customer's SMS (MessageSid, From, To, Body...)
    POST /v1/channels/sms/twilio/status   a sent message's status (MessageStatus, ErrorCode)
The signature is base64 HMAC-SHA1, keyed by the auth token, of the URL Twilio posted to (our
public URL plus the path) followed by every form parameter's name and value, sorted by name.
A message is recorded and answered with an empty TwiML <Response/> at once; the agent replies
through the outbox afterwards. STOP and its synonyms opt the number out of SMS (START or
UNSTOP opts it back in) through c360.notifications.preferences, before anything else is sent.
Configured by twilio_account_sid, twilio_auth_token and twilio_from.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from datetime import UTC, datetime
from functools import partial
from typing import Any
from urllib.parse import parse_qsl, quote

import anyio.to_thread
import httpx
from litestar import Request, Response, post
from litestar.background_tasks import BackgroundTask
from litestar.datastructures import State

from c360.channels import delivery, http, inbox
from c360.channels.base import (
    SMS,
    DeliveryState,
    DeliveryUpdate,
    InboundMessage,
    OutboundMessage,
    SendResult,
)
from c360.errors import InputError
from c360.hookspecs import hookimpl
from c360.runtime import Runtime
from c360.settings import Settings

log = logging.getLogger(__name__)

INBOUND_PATH = "/v1/channels/sms/twilio"
STATUS_PATH = "/v1/channels/sms/twilio/status"
SIGNATURE_HEADER = "X-Twilio-Signature"

#: Keywords that opt a number out of SMS, and back in, as carriers and Twilio treat them.
STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
START_WORDS = frozenset({"START", "UNSTOP"})

#: What a Twilio MessageStatus makes of a delivery (the rest are steps before sending).
_STATES: dict[str, DeliveryState] = {
    "sent": "sent",
    "delivered": "delivered",
    "read": "read",
    "undelivered": "failed",
    "failed": "failed",
    "canceled": "failed",
}

#: The empty TwiML answer: c360 replies through the REST API, not in the webhook's answer.
_EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'

_PROVIDER = "Twilio"


def signature(auth_token: str, url: str, params: list[tuple[str, str]]) -> str:
    """The X-Twilio-Signature of a POST of form `params` to `url`."""
    signed = url + "".join(name + value for name, value in sorted(set(params)))
    digest = hmac.new(auth_token.encode(), signed.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


class TwilioSms:
    """Sends SMS through a Twilio-compatible REST API and takes its webhooks."""

    name = SMS

    def __init__(self, settings: Settings) -> None:
        self.account_sid = settings.twilio_account_sid or ""
        self.auth_token = settings.twilio_auth_token or ""
        self.sender = settings.twilio_from or ""
        self.url = (
            f"{settings.twilio_api_url.rstrip('/')}/2010-04-01/Accounts/"
            f"{quote(self.account_sid, safe='')}/Messages.json"
        )
        self.status_callback = inbox.public_url(settings, STATUS_PATH)
        self.client = http.client()

    def send(self, message: OutboundMessage) -> SendResult:
        """One POST to Twilio's Messages resource."""
        form = {
            "To": message.to,
            "From": self.sender,
            "Body": message.text,
            "StatusCallback": self.status_callback,
        }
        try:
            response = self.client.post(
                self.url, data=form, auth=(self.account_sid, self.auth_token)
            )
        except httpx.HTTPError as exc:
            return http.outage(_PROVIDER, exc)
        if response.is_success:
            return SendResult(status="sent", provider_id=_json(response).get("sid"))
        return http.refusal(_PROVIDER, response, _error(response))

    def route_handlers(self) -> list[Any]:
        """The inbound SMS webhook and the status callback."""
        return [receive_sms, receive_status]


@hookimpl
def c360_channels(settings: Settings) -> list[TwilioSms]:
    """The SMS channel, when the Twilio account, its token and a sender number are set."""
    if not (settings.twilio_account_sid and settings.twilio_auth_token and settings.twilio_from):
        return []
    return [TwilioSms(settings)]


@post(INBOUND_PATH, status_code=200, opt={"public": True}, include_in_schema=False)
async def receive_sms(request: Request, state: State) -> Response[str]:
    """A customer's SMS: recorded at once, answered by the agent after this returns."""
    params = await _signed_params(request, state.settings)
    message = _inbound(params)
    runtime: Runtime = state.runtime
    keyword = message.text.strip().upper()
    if keyword in STOP_WORDS | START_WORDS:
        # the opt-out holds before anything else is sent, and before the message is kept: if
        # it fails, Twilio's retry of the webhook is not taken for a message seen before
        await anyio.to_thread.run_sync(_opt, runtime, message, keyword)
        await anyio.to_thread.run_sync(partial(inbox.record, runtime, message, handled=True))
        return Response(_EMPTY_TWIML, media_type="text/xml")
    inbound_id = await anyio.to_thread.run_sync(inbox.record, runtime, message)
    background = None
    if inbound_id is not None:
        background = BackgroundTask(inbox.handle_in_background, runtime, inbound_id, message)
    return Response(_EMPTY_TWIML, media_type="text/xml", background=background)


@post(STATUS_PATH, status_code=204, opt={"public": True}, include_in_schema=False)
async def receive_status(request: Request, state: State) -> None:
    """What became of a message c360 sent: delivered, undelivered, failed..."""
    params = dict(await _signed_params(request, state.settings))
    state_name = _STATES.get(params.get("MessageStatus", ""), "queued")
    code = params.get("ErrorCode")
    update = DeliveryUpdate(
        channel=SMS,
        provider_id=_required(params, "MessageSid"),
        state=state_name,
        at=datetime.now(UTC),
        error=f"Twilio error {code}" if code else None,
    )
    await anyio.to_thread.run_sync(delivery.apply_update, state.runtime, update)


async def _signed_params(request: Request, settings: Settings) -> list[tuple[str, str]]:
    """The form's parameters, once its signature is checked; SignatureRefused otherwise."""
    body = (await request.body()).decode(errors="replace")
    params = parse_qsl(body, keep_blank_values=True)
    url = inbox.public_url(settings, request.url.path)
    if request.url.query:
        url += "?" + request.url.query
    sent = request.headers.get(SIGNATURE_HEADER, "")
    expected = signature(settings.twilio_auth_token or "", url, params)
    if not sent or not hmac.compare_digest(sent, expected):
        log.warning("Refused a Twilio webhook to %s: its signature does not match.", url)
        raise inbox.SignatureRefused(
            "bad_signature",
            f"X-Twilio-Signature is missing or does not match a signature of {url} with the "
            "auth token: check C360_TWILIO_AUTH_TOKEN and that C360_PUBLIC_URL is the address "
            "Twilio posts to",
        )
    return params


def _inbound(params: list[tuple[str, str]]) -> InboundMessage:
    form = dict(params)
    sender = _required(form, "From")
    return InboundMessage(
        channel=SMS,
        sender=sender,
        text=form.get("Body", ""),
        external_id=_required(form, "MessageSid"),
        received_at=datetime.now(UTC),
        identifiers=(("phone", sender),),
        raw=form,
    )


def _opt(runtime: Runtime, message: InboundMessage, keyword: str) -> None:
    """Record a STOP (or START) keyword as an opt-out (or opt-in) of SMS for the number;
    recording it twice changes nothing."""
    from c360.notifications import preferences  # F4's consent store, loaded when needed

    change = preferences.unsubscribe if keyword in STOP_WORDS else preferences.resubscribe
    change(runtime, channel=SMS, address=message.sender, source=f"sms keyword {keyword}")
    log.info("SMS keyword %s in message %r recorded.", keyword, message.external_id)


def _required(form: dict[str, str], name: str) -> str:
    value = form.get(name, "")
    if not value:
        raise InputError("missing_field", f"the Twilio webhook has no {name}")
    return value


def _error(response: httpx.Response) -> str:
    """Twilio's error code and message, e.g. 'error 21211: The 'To' number is not valid'."""
    body = _json(response)
    if "code" in body or "message" in body:
        return http.short(f"error {body.get('code')}: {body.get('message', '')}")
    return http.short(response.text) or "no detail"


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        found = response.json()
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}
