"""Open tracking and one-click unsubscribes from the links in a notification: the send a signed
link names is looked up, and what the customer did is recorded on it (notify.sends.opened_at,
notify.preferences) and in its delivery's history (channels.delivery_events).

An open is recorded only when the customer allows tracking (consent for analytics or
tracking); otherwise the pixel is served and nothing is kept.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from psycopg.rows import dict_row

from c360.notifications import policy, preferences
from c360.runtime import Runtime

log = logging.getLogger(__name__)

#: A transparent 1x1 GIF (GIF89a, one colour, one transparent pixel): 43 bytes.
PIXEL = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00"
    b"\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)


def record_open(runtime: Runtime, token: str, now: datetime | None = None) -> bool:
    """Record the first open of the send an open-pixel token names; False when the customer
    does not allow tracking (nothing kept). InvalidLink for a token c360 did not sign."""
    send_id = preferences.read_link_token(runtime.settings, preferences.OPEN, token)
    moment = now or datetime.now(UTC)
    with runtime.pool.connection() as conn:
        send = _send(conn, send_id)
        if send is None or not policy.allows_tracking(conn, send["profile_id"]):
            return False
        first = conn.execute(
            "UPDATE notify.sends SET opened_at = %s, updated_at = %s"
            " WHERE send_id = %s AND opened_at IS NULL",
            (moment, moment, send_id),
        ).rowcount
    if first and send["delivery_id"] is not None:
        _delivery_event(runtime, send["delivery_id"], "opened", None, moment)
    return True


def unsubscribe_by_link(runtime: Runtime, token: str, source: str) -> dict[str, Any]:
    """Unsubscribe the customer a one-click token names from that send's channel and purpose;
    returns the send's channel and purpose. InvalidLink for a token c360 did not sign."""
    send_id = preferences.read_link_token(runtime.settings, preferences.UNSUBSCRIBE, token)
    with runtime.pool.connection() as conn:
        send = _send(conn, send_id)
    if send is None:
        raise preferences.InvalidLink(
            "unknown_send", "this message is no longer on record; nothing to unsubscribe from"
        )
    preferences.unsubscribe(
        runtime,
        channel=send["channel"],
        address=send["address"],
        profile_id=send["profile_id"],
        purpose=send["purpose"],
        source=source,
    )
    if send["delivery_id"] is not None:
        _delivery_event(runtime, send["delivery_id"], "unsubscribed", source, None)
    return {"channel": send["channel"], "purpose": send["purpose"]}


def preview_link(runtime: Runtime, token: str) -> dict[str, Any]:
    """What a one-click token would unsubscribe from (for the confirmation page)."""
    send_id = preferences.read_link_token(runtime.settings, preferences.UNSUBSCRIBE, token)
    with runtime.pool.connection() as conn:
        send = _send(conn, send_id)
    if send is None:
        raise preferences.InvalidLink(
            "unknown_send", "this message is no longer on record; nothing to unsubscribe from"
        )
    return {"channel": send["channel"], "purpose": send["purpose"]}


def _send(conn: Any, send_id: int) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        row: dict[str, Any] | None = cur.execute(
            "SELECT s.send_id, s.channel, s.purpose, s.address, s.delivery_id,"
            " (SELECT coalesce(p.merged_into, p.profile_id) FROM profiles p"
            "  WHERE p.profile_id = s.profile_id)::text AS profile_id"
            " FROM notify.sends s WHERE s.send_id = %s",
            (send_id,),
        ).fetchone()
    return row


def _delivery_event(
    runtime: Runtime, delivery_id: int, kind: str, detail: str | None, at: datetime | None
) -> None:
    """Add to the delivery's history; the customer's action is already kept if this fails."""
    from c360.channels import delivery  # the outbox only where a send reached it

    try:
        delivery.record_event(runtime, delivery_id, kind, detail, at=at)
    except Exception:  # the history is a record, never a reason to fail the customer's click
        log.warning("Could not add %r to delivery %r.", kind, delivery_id, exc_info=True)
