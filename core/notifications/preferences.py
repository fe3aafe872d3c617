"""Customers' channel preferences: unsubscribe and resubscribe (SMS STOP / START, the one-click
link in an email, an operator), the check every send passes, and the signed links that carry
a send's identity to the unsubscribe page and the open pixel.

Reads and writes `notify.preferences`. Links are signed with `engage_secret`, or with a key
made once in the data folder (engage.secret) when that setting is empty.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import secrets
import threading
import uuid
from pathlib import Path
from typing import Any

import psycopg

from c360.errors import InputError, SettingsError
from c360.runtime import Runtime
from c360.settings import Settings

log = logging.getLogger(__name__)

#: The purpose a preference has when it covers every purpose (SMS STOP, START).
ALL_PURPOSES = "*"
#: What a link is for; each kind signs differently, so an open link cannot unsubscribe.
UNSUBSCRIBE, OPEN = "u", "o"
#: Bytes of HMAC kept in a link: 128 bits cannot be guessed, and links stay short.
_MAC_BYTES = 16
#: What the links' key is derived under (see _links_key).
_LINKS_LABEL = b"c360 notification links v1"

_SECRETS: dict[Path, bytes] = {}
_SECRETS_LOCK = threading.Lock()


def unsubscribe(
    runtime: Runtime,
    *,
    channel: str,
    address: str | None = None,
    profile_id: str | uuid.UUID | None = None,
    purpose: str | None = None,
    source: str,
) -> int:
    """Record that a customer wants no more messages on `channel` (for `purpose`, or for any
    purpose when None), by profile and/or address; returns the preference rows written. Sends
    check this when they are due, so it covers sends already scheduled."""
    return _record(runtime, channel, address, profile_id, purpose, source, subscribed=False)


def resubscribe(
    runtime: Runtime,
    *,
    channel: str,
    address: str | None = None,
    profile_id: str | uuid.UUID | None = None,
    purpose: str | None = None,
    source: str,
) -> int:
    """Undo an unsubscribe (SMS START): the latest word counts, so this one wins."""
    return _record(runtime, channel, address, profile_id, purpose, source, subscribed=True)


def allows(
    conn: psycopg.Connection,
    *,
    channel: str,
    purpose: str,
    profile_id: str | uuid.UUID | None,
    address: str | None,
) -> bool:
    """Whether the customer's latest word on this channel (for this purpose or for all) lets
    a send through; no word at all lets it through (consent is checked apart)."""
    row = conn.execute(
        "SELECT subscribed FROM notify.preferences"
        " WHERE channel = %(channel)s AND purpose IN (%(purpose)s, %(all)s)"
        " AND (profile_id = %(profile)s OR address = %(address)s)"
        " ORDER BY at DESC, preference_id DESC LIMIT 1",
        {
            "channel": channel,
            "purpose": purpose,
            "all": ALL_PURPOSES,
            "profile": str(profile_id) if profile_id else None,
            "address": normalise_address(channel, address) if address else None,
        },
    ).fetchone()
    return row is None or bool(row[0])


def normalise_address(channel: str, address: str) -> str:
    """One spelling per address: trimmed, and e-mail addresses in lower case."""
    address = address.strip()
    return address.lower() if channel == "email" else address


def make_link_token(settings: Settings, kind: str, send_id: int) -> str:
    """A token naming one send, signed for one kind of link."""
    mac = _mac(settings, kind, send_id)
    return f"{send_id}.{base64.urlsafe_b64encode(mac).decode().rstrip('=')}"


def read_link_token(settings: Settings, kind: str, token: str) -> int:
    """The send a token names; InputError (404) when it is not one c360 signed for `kind`."""
    head, _, signature = token.partition(".")
    if head.isdigit() and len(head) <= 18 and signature:
        try:
            given = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
        except ValueError:
            given = b""
        if hmac.compare_digest(given, _mac(settings, kind, int(head))):
            return int(head)
    raise InvalidLink(
        "invalid_link",
        "this link is not valid (it was cut short or changed): open the link in the message "
        "again, or reply STOP on SMS",
    )


class InvalidLink(InputError):
    """A link whose signature does not check out."""

    status_code = 404


def unsubscribe_url(settings: Settings, send_id: int) -> str:
    """The one-click unsubscribe link (RFC 8058) of a send."""
    return f"{public_url(settings)}/u/{make_link_token(settings, UNSUBSCRIBE, send_id)}"


def open_pixel_url(settings: Settings, send_id: int) -> str:
    """The open-tracking pixel of a send."""
    return f"{public_url(settings)}/o/{make_link_token(settings, OPEN, send_id)}.gif"


def public_url(settings: Settings) -> str:
    """Where customers reach c360: `public_url`, else the gateway's own address."""
    return (settings.public_url or f"http://{settings.host}:{settings.port}").rstrip("/")


def engage_secret(settings: Settings) -> bytes:
    """The key links are signed with: the setting, else the data folder's engage.secret,
    made once (0600) by whichever process needs it first."""
    if settings.engage_secret:
        return settings.engage_secret.encode()
    path = Path(settings.data_dir) / "engage.secret"
    with _SECRETS_LOCK:
        if path not in _SECRETS:
            _SECRETS[path] = _read_or_make(path)
        return _SECRETS[path]


def _read_or_make(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = path.read_bytes().strip()
        if key:
            return key
        raise SettingsError(f"{path} is empty: delete it, or set C360_ENGAGE_SECRET") from None
    with os.fdopen(fd, "wb") as handle:
        key = secrets.token_hex(32).encode()
        handle.write(key)
    log.info("Made a new key for unsubscribe and open-tracking links in %s.", str(path))
    return key


def _mac(settings: Settings, kind: str, send_id: int) -> bytes:
    message = f"c360-notify:{kind}:{send_id}".encode()
    return hmac.new(_links_key(settings), message, hashlib.sha256).digest()[:_MAC_BYTES]


def _links_key(settings: Settings) -> bytes:
    """The links' own key, derived from the engage secret: the web chat's userHash is an HMAC
    of any user id under the secret itself, and the demo page makes one for whatever id a
    signed-in user names, so under one key a crafted id would sign an unsubscribe link."""
    return hmac.new(engage_secret(settings), _LINKS_LABEL, hashlib.sha256).digest()


def _record(
    runtime: Runtime,
    channel: str,
    address: str | None,
    profile_id: Any,
    purpose: str | None,
    source: str,
    *,
    subscribed: bool,
) -> int:
    if not address and not profile_id:
        raise ValueError("a preference needs an address or a profile")
    purpose = purpose or ALL_PURPOSES
    with runtime.pool.connection() as conn, conn.transaction():
        written = 0
        if profile_id:
            written += _upsert(
                conn, "profile", str(profile_id), channel, purpose, source, subscribed
            )
        if address:
            clean = normalise_address(channel, address)
            written += _upsert(conn, "address", clean, channel, purpose, source, subscribed)
        if subscribed and purpose == ALL_PURPOSES:
            # START after STOP: earlier per-purpose opt-outs went with the STOP
            _clear_purposes(conn, channel, profile_id, address)
    log.info(
        "%s on %r for purpose %r (source %r).",
        "Resubscribed" if subscribed else "Unsubscribed",
        channel,
        purpose,
        source,
    )
    return written


def _upsert(
    conn: psycopg.Connection,
    by: str,
    key: str,
    channel: str,
    purpose: str,
    source: str,
    subscribed: bool,
) -> int:
    column, conflict = (
        ("profile_id", "(profile_id, channel, purpose) WHERE profile_id IS NOT NULL")
        if by == "profile"
        else ("address", "(channel, address, purpose) WHERE address IS NOT NULL")
    )
    cur = conn.execute(
        f"INSERT INTO notify.preferences ({column}, channel, purpose, subscribed, source, at)"
        f" VALUES (%s, %s, %s, %s, %s, clock_timestamp()) ON CONFLICT {conflict} DO UPDATE SET"
        " subscribed = EXCLUDED.subscribed, source = EXCLUDED.source, at = EXCLUDED.at",
        (key, channel, purpose, subscribed, source),
    )
    return cur.rowcount


def _clear_purposes(
    conn: psycopg.Connection, channel: str, profile_id: Any, address: str | None
) -> None:
    conn.execute(
        "DELETE FROM notify.preferences WHERE channel = %s AND purpose <> %s"
        " AND NOT subscribed AND (profile_id = %s OR address = %s)",
        (
            channel,
            ALL_PURPOSES,
            str(profile_id) if profile_id else None,
            normalise_address(channel, address) if address else None,
        ),
    )
