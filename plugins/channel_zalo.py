"""The Zalo Official Account channel.

Inbound: POST /v1/channels/zalo (public) takes the OA's webhook events (JSON: app_id,
event_name, sender.id, recipient.id, message.text, message.msg_id, timestamp). Each is signed
in X-ZEvent-Signature as "mac=" + sha256 hex of app_id + raw body + timestamp + the OA secret
key; an event with another signature or another app id is refused. `user_send_text` is a
customer's message (recorded at once, answered after the webhook's 200);
`user_received_message` and `user_seen_message` mark sent messages delivered and read.

Send: POST {zalo_api_url}/v3.0/oa/message/cs with the access token in the `access_token`
header and {"recipient": {"user_id"}, "message": {"text"}}; Zalo answers {"error": 0, "data":
{"message_id"}}. Error -216 (access token invalid or expired) refreshes the token and sends
once more; another negative error fails; 429 and 5xx are retried.

Tokens: an access token lives about 25 hours; a refresh token works once. A refresh (POST
{zalo_oauth_url}/v4/oa/access_token, header secret_key, form refresh_token, app_id,
grant_type=refresh_token) is made under a row lock in channels.tokens and its new pair stored
before the access token is used, so no process ever spends a refresh token twice. Tokens are
also refreshed ahead of expiry. Configured by zalo_app_id, zalo_oa_secret, zalo_app_secret and
zalo_access_token and/or zalo_refresh_token.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import logging
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio.to_thread
import httpx
import msgspec
import psycopg
from litestar import Request, Response, post
from litestar.background_tasks import BackgroundTask
from litestar.datastructures import State

from c360.channels import delivery, http, inbox
from c360.channels.base import ZALO, DeliveryUpdate, InboundMessage, OutboundMessage, SendResult
from c360.errors import C360Error, InputError
from c360.hookspecs import hookimpl
from c360.runtime import Runtime
from c360.settings import Settings

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/v1/channels/zalo"
SIGNATURE_HEADER = "X-ZEvent-Signature"

#: Zalo's error for an access token that is invalid or has expired.
TOKEN_INVALID = -216

#: A token this close to its expiry is refreshed before it is used, so a send never races
#: the expiry (and the one refresh happens under the lock, not in every process at once).
REFRESH_AHEAD = timedelta(minutes=10)

_PROVIDER = "Zalo"


def signature(app_id: str, body: bytes, timestamp: str, oa_secret: str) -> str:
    """The X-ZEvent-Signature of a webhook event's raw body."""
    signed = app_id.encode() + body + timestamp.encode() + oa_secret.encode()
    return "mac=" + hashlib.sha256(signed).hexdigest()


class ZaloTokenError(C360Error):
    """No access token could be had; the message says what to change. `transient`: Zalo was
    out of reach, so a later attempt may work without a change."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


@dataclasses.dataclass(frozen=True)
class _Pair:
    access_token: str
    refresh_token: str
    expires_at: datetime | None


class ZaloTokens:
    """The OA's current access token, refreshed when it is refused or about to expire."""

    def __init__(self, settings: Settings, client: httpx.Client) -> None:
        self.settings = settings
        self.client = client
        self.name = f"zalo:{settings.zalo_app_id}"
        # the chain stored in PostgreSQL belongs to the tokens the settings gave; new ones
        # there (the operator authorized the OA again) start a new chain
        given = settings.zalo_refresh_token or settings.zalo_access_token or ""
        self.seed = hashlib.sha256(given.encode()).hexdigest()
        self._pair: _Pair | None = None
        self._lock = threading.Lock()

    def current(self, now: datetime | None = None) -> str:
        """An access token to send with, refreshed first when it is about to expire."""
        moment = now or datetime.now(UTC)
        with self._lock:
            pair = self._pair
        if pair is None or _expiring(pair, moment):
            pair = self._load(moment)
        return pair.access_token

    def refused(self, token: str, now: datetime | None = None) -> str:
        """A new access token after Zalo refused `token` (error -216)."""
        return self._load(now or datetime.now(UTC), refused=token).access_token

    def _load(self, moment: datetime, refused: str | None = None) -> _Pair:
        """The stored pair, refreshed under the row's lock when it is refused or expiring
        (unless another process has refreshed it meanwhile)."""
        with psycopg.connect(self.settings.postgres_dsn, autocommit=True) as conn:
            with conn.transaction():
                pair = self._locked(conn)
                if pair.access_token == refused or _expiring(pair, moment):
                    pair = self._refresh(conn, pair, moment)
        with self._lock:
            self._pair = pair
        return pair

    def _locked(self, conn: psycopg.Connection) -> _Pair:
        """The stored pair, locked; seeded from the settings the first time (or when they
        carry new tokens)."""
        conn.execute(
            "INSERT INTO channels.tokens (name, access_token, refresh_token, seed)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT (name) DO UPDATE SET"
            " access_token = EXCLUDED.access_token, refresh_token = EXCLUDED.refresh_token,"
            " expires_at = NULL, seed = EXCLUDED.seed, updated_at = now()"
            " WHERE channels.tokens.seed <> EXCLUDED.seed",
            (
                self.name,
                self.settings.zalo_access_token or "",
                self.settings.zalo_refresh_token or "",
                self.seed,
            ),
        )
        row = conn.execute(
            "SELECT access_token, refresh_token, expires_at FROM channels.tokens"
            " WHERE name = %s FOR UPDATE",
            (self.name,),
        ).fetchone()
        assert row is not None  # inserted just above if it was missing
        return _Pair(*row)

    def _refresh(self, conn: psycopg.Connection, pair: _Pair, moment: datetime) -> _Pair:
        """Spend the refresh token and store the new pair before anything uses it."""
        if not pair.refresh_token:
            raise ZaloTokenError(
                "the Zalo access token has expired and there is no refresh token: set "
                "C360_ZALO_REFRESH_TOKEN (and C360_ZALO_APP_SECRET)"
            )
        answer = self._ask_for_tokens(pair.refresh_token)
        fresh = _Pair(
            access_token=str(answer["access_token"]),
            refresh_token=str(answer.get("refresh_token") or ""),
            expires_at=moment + timedelta(seconds=int(answer.get("expires_in") or 0)),
        )
        conn.execute(
            "UPDATE channels.tokens SET access_token = %s, refresh_token = %s,"
            " expires_at = %s, updated_at = now() WHERE name = %s",
            (fresh.access_token, fresh.refresh_token, fresh.expires_at, self.name),
        )
        log.info("Refreshed the Zalo OA access token of app %r.", self.settings.zalo_app_id)
        return fresh

    def _ask_for_tokens(self, refresh_token: str) -> dict[str, Any]:
        url = f"{self.settings.zalo_oauth_url.rstrip('/')}/v4/oa/access_token"
        try:
            response = self.client.post(
                url,
                headers={"secret_key": self.settings.zalo_app_secret or ""},
                data={
                    "refresh_token": refresh_token,
                    "app_id": self.settings.zalo_app_id or "",
                    "grant_type": "refresh_token",
                },
            )
            if response.status_code == 429 or response.status_code >= 500:
                raise httpx.HTTPStatusError(
                    f"it answered {response.status_code}",
                    request=response.request,
                    response=response,
                )
            answer = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise ZaloTokenError(
                f"Zalo's token service could not be reached: {exc}", transient=True
            ) from exc
        if not isinstance(answer, dict) or not answer.get("access_token"):
            reason = answer.get("error_description") if isinstance(answer, dict) else None
            raise ZaloTokenError(
                f"Zalo refused to refresh the access token ({reason or http.short(response.text)}"
                "): authorize the OA again and set C360_ZALO_REFRESH_TOKEN, and check "
                "C360_ZALO_APP_ID and C360_ZALO_APP_SECRET"
            )
        return answer


class ZaloOA:
    """Sends customer-service messages through the OA API and takes its webhook events."""

    name = ZALO

    def __init__(self, settings: Settings) -> None:
        self.url = f"{settings.zalo_api_url.rstrip('/')}/v3.0/oa/message/cs"
        self.client = http.client()
        self.tokens = ZaloTokens(settings, self.client)

    def send(self, message: OutboundMessage) -> SendResult:
        """One send; a refused token is refreshed and the send made once more."""
        try:
            token = self.tokens.current()
            result, code = self._post(message, token)
            if code == TOKEN_INVALID:
                result, code = self._post(message, self.tokens.refused(token))
        except ZaloTokenError as exc:
            return SendResult(status="retry" if exc.transient else "failed", error=str(exc))
        return result

    def route_handlers(self) -> list[Any]:
        """The OA webhook."""
        return [receive_event]

    def _post(self, message: OutboundMessage, token: str) -> tuple[SendResult, int | None]:
        """The result of one POST, with Zalo's error code when it answered one."""
        body = {"recipient": {"user_id": message.to}, "message": {"text": message.text}}
        try:
            response = self.client.post(self.url, json=body, headers={"access_token": token})
        except httpx.HTTPError as exc:
            return http.outage(_PROVIDER, exc), None
        if not response.is_success:
            return http.refusal(_PROVIDER, response, http.short(response.text)), None
        answer = _json(response)
        code = answer.get("error")
        if code == 0:
            message_id = (answer.get("data") or {}).get("message_id")
            return SendResult(status="sent", provider_id=message_id), 0
        error = f"Zalo error {code}: {answer.get('message', 'no message')}"
        return SendResult(status="failed", error=http.short(error)), code


@hookimpl
def c360_channels(settings: Settings) -> list[ZaloOA]:
    """The Zalo channel, when the OA's app id, secret key and a token are set."""
    if not (settings.zalo_app_id and settings.zalo_oa_secret):
        return []
    if not (settings.zalo_access_token or settings.zalo_refresh_token):
        log.warning(
            "zalo_app_id is set but no token is: the Zalo channel is off until "
            "C360_ZALO_REFRESH_TOKEN (or C360_ZALO_ACCESS_TOKEN) is set."
        )
        return []
    return [ZaloOA(settings)]


@post(WEBHOOK_PATH, status_code=200, opt={"public": True}, include_in_schema=False)
async def receive_event(request: Request, state: State) -> Response[dict[str, Any]]:
    """One OA event: a customer's text is recorded and answered after this returns; delivery
    and seen receipts move sent messages forward; other events are acknowledged."""
    event = _signed_event(await request.body(), request, state.settings)
    runtime: Runtime = state.runtime
    name = event.get("event_name")
    background = None
    if name == "user_send_text":
        message = _inbound(event)
        inbound_id = await anyio.to_thread.run_sync(inbox.record, runtime, message)
        if inbound_id is not None:
            background = BackgroundTask(inbox.handle_in_background, runtime, inbound_id, message)
    elif name in ("user_received_message", "user_seen_message"):
        state_name = "delivered" if name == "user_received_message" else "read"
        for message_id in _message_ids(event):
            update = DeliveryUpdate(
                channel=ZALO, provider_id=message_id, state=state_name, at=datetime.now(UTC)
            )
            await anyio.to_thread.run_sync(delivery.apply_update, runtime, update)
    return Response({"error": 0, "message": "Success"}, background=background)


def _signed_event(body: bytes, request: Request, settings: Settings) -> dict[str, Any]:
    """The event, once its app id and signature are checked; SignatureRefused otherwise."""
    try:
        event = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise InputError("invalid_json", f"the Zalo event is not JSON: {exc}") from exc
    if not isinstance(event, dict):
        raise InputError("invalid_event", "a Zalo event is a JSON object")
    app_id, timestamp = str(event.get("app_id", "")), str(event.get("timestamp", ""))
    expected = signature(app_id, body, timestamp, settings.zalo_oa_secret or "")
    sent = request.headers.get(SIGNATURE_HEADER, "")
    if app_id != settings.zalo_app_id or not hmac.compare_digest(sent, expected):
        log.warning("Refused a Zalo event for app %r: its signature does not match.", app_id)
        raise inbox.SignatureRefused(
            "bad_signature",
            "X-ZEvent-Signature is missing or does not match the event signed with the OA "
            "secret key, or the event is for another app: check C360_ZALO_OA_SECRET and "
            "C360_ZALO_APP_ID",
        )
    return event


def _inbound(event: dict[str, Any]) -> InboundMessage:
    sender = str(_field(event, "sender", "id"))
    return InboundMessage(
        channel=ZALO,
        sender=sender,
        text=str(_field(event, "message", "text")),
        external_id=str(_field(event, "message", "msg_id")),
        received_at=datetime.now(UTC),
        identifiers=(("zalo_id", sender),),
        raw=event,
    )


def _field(event: dict[str, Any], outer: str, inner: str) -> Any:
    value = (event.get(outer) or {}).get(inner) if isinstance(event.get(outer), dict) else None
    if value in (None, ""):
        raise InputError("missing_field", f"the Zalo event has no {outer}.{inner}")
    return value


def _message_ids(event: dict[str, Any]) -> list[str]:
    """The sent messages a receipt names: message.msg_id, message.msg_ids, or both."""
    message = event.get("message") if isinstance(event.get("message"), dict) else {}
    found = [message.get("msg_id"), *(message.get("msg_ids") or [])]
    return [str(value) for value in found if value]


def _expiring(pair: _Pair, moment: datetime) -> bool:
    return pair.expires_at is not None and pair.expires_at - moment <= REFRESH_AHEAD


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        found = response.json()
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}
