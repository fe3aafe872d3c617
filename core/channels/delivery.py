"""The durable outbox every outbound message goes through (`channels.deliveries`): enqueue it
once per idempotency key, attempt it, retry with back-off, record what became of it.

    enqueue(runtime, message)       a row, pending; the same key again returns the same row
    send_now(runtime, message)      enqueue and make one attempt inline (agents' replies)
    run_due(runtime)                attempt due rows (the DeliverySender's pass)
    apply_update(runtime, update)   a provider's later word: delivered, read, bounced...
    record_event(runtime, id, kind) append to a delivery's history (opened, unsubscribed...)

An attempt claims its row with FOR UPDATE SKIP LOCKED and a lease, so two workers never send
one row at once; a row whose worker died mid-send (lease run out) is attempted again. A pass
sends to several addresses side by side and to each address in order. Every
change is appended to `channels.delivery_events` and counted in Valkey for /metrics
(deliveries by channel and outcome). Talks to providers only through the channels
(c360.channels.registry).
"""

from __future__ import annotations

import dataclasses
import logging
import random
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import redis
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from c360.channels.base import Channel, DeliveryUpdate, OutboundMessage, SendResult
from c360.channels.registry import channels_for
from c360.errors import InputError
from c360.periodic import PeriodicTask
from c360.runtime import Runtime

log = logging.getLogger(__name__)

#: A message is attempted at most this many times. With the back-off below the last attempt
#: comes one to three hours after the first: long enough to ride out a provider's outage,
#: short enough that a notification is not delivered when it no longer means anything.
MAX_ATTEMPTS = 10

#: The first retry waits about this long, doubling per failed attempt up to RETRY_MAX; each
#: wait is drawn between half and all of it, so messages failed together do not come back
#: together.
RETRY_FIRST = timedelta(seconds=30)
RETRY_MAX = timedelta(hours=1)

#: How long an attempt holds its row. Longer than any channel's own timeout (15 s for HTTP,
#: 30 s for SMTP), so a live attempt never loses its row to another worker.
LEASE = timedelta(minutes=2)

#: Most rows one `run_due` call attempts; the rest wait for the next pass.
MAX_PER_PASS = 100

#: Rows one claim takes, and threads that send them: a provider answering in 200 ms would
#: cap one sequential sender at five messages a second. Messages to one address go out one
#: after another, in the order they fell due.
CLAIM_BATCH = 16
SEND_THREADS = 8

#: A claimed row whose lease has less than this left when its turn comes is handed back
#: unsent rather than risk a second worker sending it too (slow sends before it in its group).
LEASE_MARGIN = timedelta(seconds=30)

#: How often the DeliverySender looks for due rows: replies and notifications go out within
#: about a second of being due, at the cost of one indexed query per second.
POLL_INTERVAL_S = 1.0

#: A delivery's status and how far along it is; a provider's update never moves it back.
_PROGRESS = {"pending": 0, "sending": 1, "sent": 2, "delivered": 3, "read": 4}
_FINAL = ("failed", "bounced")

#: What a provider's update makes of a delivery's status (None: recorded, status unchanged).
_STATUS_OF_UPDATE: dict[str, str | None] = {
    "queued": None,
    "sent": "sent",
    "delivered": "delivered",
    "read": "read",
    "opened": "read",
    "failed": "failed",
    "bounced": "bounced",
    "unsubscribed": None,
}

#: How long a provider's update for a message no delivery has recorded is kept: a send's
#: answer comes within seconds, so a day-old one names a message c360 did not send.
EARLY_UPDATE_TTL = timedelta(days=1)

#: Event kinds counted on /metrics (the rest, such as pending and sending, are steps).
COUNTED = ("sent", "retry", "failed", "bounced", "delivered", "read", "opened", "unsubscribed")

_COUNTER_PREFIX = "c360:deliveries:"


class UnknownChannel(InputError):
    """A message names a channel this c360 has not configured."""


@dataclasses.dataclass(frozen=True, slots=True)
class Delivery:
    """One row of the outbox."""

    delivery_id: int
    idempotency_key: str
    channel: str
    address: str
    profile_id: str | None
    purpose: str
    status: str
    attempts: int
    next_attempt_at: datetime
    provider_id: str | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime

    def as_dict(self) -> dict[str, Any]:
        """The delivery as the JSON API answers it."""
        return dataclasses.asdict(self)


def enqueue(
    runtime: Runtime,
    message: OutboundMessage,
    not_before: datetime | None = None,
    *,
    now: datetime | None = None,
) -> int:
    """Put `message` in the outbox, due at `not_before` (default: now); its delivery id. A key
    already in the outbox returns that row's id and changes nothing."""
    _check(runtime, message)
    moment = now or _now()
    with runtime.pool.connection() as conn, conn.transaction():
        row = conn.execute(
            "INSERT INTO channels.deliveries (idempotency_key, channel, address, profile_id,"
            " purpose, payload, next_attempt_at, created_at, updated_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (idempotency_key) DO NOTHING RETURNING delivery_id",
            (
                message.idempotency_key,
                message.channel,
                message.to,
                message.profile_id,
                message.purpose,
                Jsonb(dataclasses.asdict(message)),
                max(not_before, moment) if not_before else moment,
                moment,
                moment,
            ),
        ).fetchone()
        if row is None:
            return _id_of_key(conn, message.idempotency_key)
        _insert_event(conn, row[0], "pending", _due_detail(not_before, moment))
        return int(row[0])


def send_now(
    runtime: Runtime, message: OutboundMessage, *, now: datetime | None = None
) -> Delivery:
    """Enqueue `message` and make one attempt at once. A key already sent (or being sent, or
    waiting for its retry) is not attempted again; its row is returned as it stands."""
    moment = now or _now()
    delivery_id = enqueue(runtime, message, now=moment)
    with runtime.pool.connection() as conn:
        claimed = _claim(
            conn,
            "status = 'pending' AND next_attempt_at <= %(now)s AND delivery_id = %(id)s",
            {"now": moment, "id": delivery_id},
            moment,
        )
    for row in claimed:
        _attempt(runtime, row, moment)
    found = get(runtime, delivery_id)
    assert found is not None  # just written; deliveries are deleted only with their profile
    return found


def run_due(runtime: Runtime, *, now: datetime | None = None, limit: int = MAX_PER_PASS) -> int:
    """Attempt rows that are due, and rows whose attempt never finished (lease run out);
    returns how many were claimed."""
    claimed_in_all = 0
    while claimed_in_all < limit:
        moment = now or _now()  # each claim's lease starts when it is taken
        with runtime.pool.connection() as conn:
            claimed = _claim(
                conn,
                "(status = 'pending' AND next_attempt_at <= %(now)s)"
                " OR (status = 'sending' AND lease_until < %(now)s)",
                {"now": moment},
                moment,
                min(CLAIM_BATCH, limit - claimed_in_all),
            )
        if not claimed:
            break
        claimed_in_all += len(claimed)
        if _attempt_all(runtime, claimed, now):
            break  # sends are running slow: leave the rest to the next pass
    return claimed_in_all


def apply_update(runtime: Runtime, update: DeliveryUpdate) -> int | None:
    """Record a provider's later word on a message it took (matched by its id for it) and
    move the delivery's status forward; the delivery id. An update for an id no delivery has
    recorded yet (it raced the send's own answer) is kept and applied when the id is recorded
    (see _finish); None then."""
    with runtime.pool.connection() as conn, conn.transaction():
        _lock_message(conn, update.channel, update.provider_id)
        row = conn.execute(
            "SELECT delivery_id, status FROM channels.deliveries"
            " WHERE channel = %s AND provider_id = %s ORDER BY delivery_id DESC LIMIT 1"
            " FOR UPDATE",
            (update.channel, update.provider_id),
        ).fetchone()
        if row is None:
            _keep_early(conn, update)
            return None
        delivery_id, status = row
        _apply(conn, delivery_id, status, update)
    _count(runtime, update.channel, update.state)
    return int(delivery_id)


def record_event(
    runtime: Runtime,
    delivery_id: int,
    kind: str,
    detail: str | None = None,
    *,
    at: datetime | None = None,
) -> None:
    """Append `kind` (opened, unsubscribed, ...) to a delivery's history and count it."""
    with runtime.pool.connection() as conn:
        row = conn.execute(
            "SELECT channel FROM channels.deliveries WHERE delivery_id = %s", (delivery_id,)
        ).fetchone()
        if row is None:
            raise InputError("unknown_delivery", f"no delivery has the id {delivery_id}")
        _insert_event(conn, delivery_id, kind, detail, at=at)
    _count(runtime, row[0], kind)


def get(runtime: Runtime, delivery_id: int) -> Delivery | None:
    """The delivery with this id, if any."""
    return _one(runtime, "delivery_id = %s", delivery_id)


def find(runtime: Runtime, idempotency_key: str) -> Delivery | None:
    """The delivery with this idempotency key, if any."""
    return _one(runtime, "idempotency_key = %s", idempotency_key)


def events(runtime: Runtime, delivery_id: int) -> list[tuple[str, str | None, datetime]]:
    """A delivery's history, oldest first: (kind, detail, at)."""
    with runtime.pool.connection() as conn:
        rows = conn.execute(
            "SELECT kind, detail, at FROM channels.delivery_events WHERE delivery_id = %s"
            " ORDER BY event_id",
            (delivery_id,),
        ).fetchall()
    return [(kind, detail, at) for kind, detail, at in rows]


def counts(valkey: redis.Redis) -> dict[tuple[str, str], int]:
    """Deliveries counted so far by (channel, outcome), for /metrics."""
    found: dict[tuple[str, str], int] = {}
    for key in valkey.scan_iter(match=f"{_COUNTER_PREFIX}*", count=500):
        channel, _, outcome = key.decode()[len(_COUNTER_PREFIX) :].rpartition(":")
        found[(channel, outcome)] = int(valkey.get(key) or 0)
    return found


def backoff(attempts: int, retry_after_s: float | None = None) -> timedelta:
    """How long to wait after `attempts` failed attempts: doubling from RETRY_FIRST up to
    RETRY_MAX, drawn between half and all of it, and never less than the provider asked."""
    ceiling = min(RETRY_FIRST * 2 ** max(attempts - 1, 0), RETRY_MAX)
    wait = ceiling * random.uniform(0.5, 1.0)
    if retry_after_s is not None:
        wait = max(wait, timedelta(seconds=retry_after_s))
    return wait


class DeliverySender(PeriodicTask):
    """The worker's loop: attempt due deliveries, and answer inbound messages nobody answered
    in time (their process died), every `interval_s` seconds until `stop()`."""

    def __init__(self, runtime: Runtime, interval_s: float = POLL_INTERVAL_S) -> None:
        super().__init__("c360-delivery-sender", interval_s)
        self.runtime = runtime

    def tick(self) -> None:
        """One pass (an attempt in progress when stop() is asked finishes first)."""
        from c360.channels import inbox  # inbox sends its replies through this module

        run_due(self.runtime)
        inbox.handle_stale(self.runtime)


def message_of(payload: Mapping[str, Any]) -> OutboundMessage:
    """The OutboundMessage a row's payload holds (fields a newer version added are ignored)."""
    known = {field.name for field in dataclasses.fields(OutboundMessage)}
    return OutboundMessage(**{key: value for key, value in payload.items() if key in known})


def _check(runtime: Runtime, message: OutboundMessage) -> None:
    if not message.idempotency_key.strip():
        raise InputError(
            "missing_idempotency_key",
            "a message needs an idempotency key: the same key is sent at most once",
        )
    if message.profile_id is not None and not _is_uuid(message.profile_id):
        raise InputError(
            "invalid_profile_id", f"profile_id {message.profile_id[:80]!r} is not a profile's id"
        )
    known = channels_for(runtime.settings)
    if message.channel not in known:
        raise UnknownChannel(
            "unknown_channel",
            f"no channel named {message.channel!r} is configured; configured: "
            f"{', '.join(sorted(known)) or 'none'} (set the channel's settings, e.g. "
            "C360_TWILIO_ACCOUNT_SID for sms)",
        )


def _claim(
    conn: psycopg.Connection,
    where: str,
    params: dict[str, Any],
    moment: datetime,
    count: int = 1,
) -> list[dict[str, Any]]:
    """Lease up to `count` rows matching `where`, oldest due first (rows another worker holds
    are skipped); each row as it is now, with `was` its status before (sending: its last
    attempt never finished)."""
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        claimed = cur.execute(
            "WITH due AS (SELECT delivery_id, status FROM channels.deliveries"
            f" WHERE {where} ORDER BY next_attempt_at, delivery_id LIMIT %(count)s"
            " FOR UPDATE SKIP LOCKED)"
            " UPDATE channels.deliveries d SET status = 'sending', attempts = d.attempts + 1,"
            " lease_until = %(lease)s, updated_at = %(now)s FROM due"
            " WHERE d.delivery_id = due.delivery_id RETURNING d.*, due.status AS was",
            {**params, "now": moment, "lease": moment + LEASE, "count": count},
        ).fetchall()
        for row in claimed:
            if row["was"] == "sending":
                detail = f"attempt {row['attempts'] - 1} never finished (its worker stopped)"
                _insert_event(conn, row["delivery_id"], "lease_expired", detail)
    return sorted(claimed, key=lambda row: (row["next_attempt_at"], row["delivery_id"]))


def _attempt_all(runtime: Runtime, rows: list[dict[str, Any]], now: datetime | None) -> int:
    """Attempt claimed rows, addresses side by side, each address's rows in turn; how many
    were handed back unsent because their lease ran short."""
    by_address: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        by_address.setdefault((row["channel"], row["address"]), []).append(row)
    # measured on the monotonic clock from the claim, so a pass run at an injected `now`
    # (tests, catch-up) judges the lease by the time that really went by
    lease_ends = time.monotonic() + (LEASE - LEASE_MARGIN).total_seconds()

    def attempt_in_turn(queue: list[dict[str, Any]]) -> int:
        handed_back = 0
        for row in queue:
            if time.monotonic() >= lease_ends:
                _hand_back(runtime, row)
                handed_back += 1
            else:
                _attempt(runtime, row, now or _now())
        return handed_back

    if len(by_address) == 1:
        return attempt_in_turn(rows)
    with ThreadPoolExecutor(min(SEND_THREADS, len(by_address)), "c360-send") as pool:
        queued = [pool.submit(attempt_in_turn, queue) for queue in by_address.values()]
        # a failure here is the store's: result() raises it, and the pass logs it
        return sum(done.result() for done in queued)


def _hand_back(runtime: Runtime, row: dict[str, Any]) -> None:
    """Return a claimed row unsent, as it was, for the next pass."""
    with runtime.pool.connection() as conn:
        conn.execute(
            "UPDATE channels.deliveries SET status = 'pending', attempts = attempts - 1,"
            " lease_until = NULL WHERE delivery_id = %s AND status = 'sending'"
            " AND attempts = %s",
            (row["delivery_id"], row["attempts"]),
        )


def _attempt(runtime: Runtime, row: dict[str, Any], moment: datetime) -> None:
    """Send one claimed row through its channel and record the outcome."""
    # The connection that records the outcome is taken before the send: waiting for one after
    # the provider took the message (the pool busy with other sends) would widen the window in
    # which a killed worker leaves a sent message unrecorded, to be sent again after its lease.
    with runtime.pool.connection() as conn:
        if row["attempts"] > MAX_ATTEMPTS:  # the last allowed attempt never finished
            error = row["last_error"] or "no attempt finished"
            result = SendResult(status="failed", error=error)
        else:
            channel = channels_for(runtime.settings).get(row["channel"])
            result = _send(channel, row)
        _finish(runtime, conn, row, result, moment)


def _send(channel: Channel | None, row: dict[str, Any]) -> SendResult:
    if channel is None:
        return SendResult(
            status="failed",
            error=f"the channel {row['channel']!r} is no longer configured: set its settings "
            "again to send through it",
        )
    try:
        return channel.send(message_of(row["payload"]))
    except Exception as exc:  # a channel's bug must not stop the other deliveries
        log.exception("The %s channel raised on delivery %r.", row["channel"], row["delivery_id"])
        return SendResult(status="retry", error=f"the {row['channel']} channel failed: {exc!r}")


def _finish(
    runtime: Runtime,
    conn: psycopg.Connection,
    row: dict[str, Any],
    result: SendResult,
    moment: datetime,
) -> None:
    """Write an attempt's outcome, unless the row's lease went to another attempt meanwhile."""
    outcome, status, due, error = _outcome(row, result, moment)
    early: list[DeliveryUpdate] = []
    with conn.transaction():
        if result.provider_id:  # a callback for this id waits for this transaction
            _lock_message(conn, row["channel"], result.provider_id)
        updated = conn.execute(
            "UPDATE channels.deliveries SET status = %s, next_attempt_at = %s,"
            " lease_until = NULL, provider_id = coalesce(%s, provider_id), last_error = %s,"
            " updated_at = %s WHERE delivery_id = %s AND status = 'sending' AND attempts = %s",
            (
                status,
                due,
                result.provider_id,
                error,
                _now(),
                row["delivery_id"],
                row["attempts"],
            ),
        ).rowcount
        if not updated:
            log.warning(
                "Delivery %r was taken over by another attempt; its outcome %r is not kept.",
                row["delivery_id"],
                outcome,
            )
            return
        detail = result.provider_id if outcome == "sent" else error
        _insert_event(conn, row["delivery_id"], outcome, detail)
        if result.provider_id:
            early = _apply_early(conn, row["delivery_id"], status, row["channel"], result)
    _count(runtime, row["channel"], outcome)
    for update in early:
        _count(runtime, update.channel, update.state)
    log.info(
        "Delivery %r on %s: %s (attempt %d).",
        row["delivery_id"],
        row["channel"],
        outcome,
        row["attempts"],
    )


def _outcome(
    row: dict[str, Any], result: SendResult, moment: datetime
) -> tuple[str, str, datetime, str | None]:
    """(event kind, new status, next attempt time, error) for an attempt's result."""
    if result.status == "sent":
        return "sent", "sent", row["next_attempt_at"], None
    if result.status in _FINAL:
        return result.status, result.status, row["next_attempt_at"], result.error
    if row["attempts"] >= MAX_ATTEMPTS:
        error = f"gave up after {row['attempts']} attempts; the last: {result.error}"
        return "failed", "failed", row["next_attempt_at"], error
    due = moment + backoff(row["attempts"], result.retry_after_s)
    return "retry", "pending", due, result.error


def _apply(conn: psycopg.Connection, delivery_id: int, status: str, update: DeliveryUpdate) -> str:
    """Record `update` on a delivery whose status is `status`; its status afterwards."""
    _insert_event(conn, delivery_id, update.state, update.error, at=update.at)
    new_status = _STATUS_OF_UPDATE.get(update.state)
    if not new_status or not _moves_forward(status, new_status):
        return status
    conn.execute(
        "UPDATE channels.deliveries SET status = %s, updated_at = %s,"
        " last_error = coalesce(%s, last_error) WHERE delivery_id = %s",
        (new_status, _now(), update.error, delivery_id),
    )
    return new_status


def _lock_message(conn: psycopg.Connection, channel: str, provider_id: str) -> None:
    """Serialise, until the transaction ends, everything done about one provider message:
    a callback either finds the delivery's recorded id or is kept for the send to apply,
    never neither."""
    conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended(%s, 7))", (f"{channel}:{provider_id}",)
    )


def _keep_early(conn: psycopg.Connection, update: DeliveryUpdate) -> None:
    """Keep an update whose message's id is not recorded yet; drop those a day old (for
    messages c360 never sent, or sent before a restore)."""
    conn.execute(
        "DELETE FROM channels.early_updates WHERE received_at < clock_timestamp() - %s",
        (EARLY_UPDATE_TTL,),
    )
    conn.execute(
        "INSERT INTO channels.early_updates (channel, provider_id, state, error, at)"
        " VALUES (%s, %s, %s, %s, %s)",
        (update.channel, update.provider_id, update.state, update.error, update.at),
    )
    log.info(
        "A %s update names message %r, which no delivery has recorded yet; kept for it.",
        update.channel,
        update.provider_id,
    )


def _apply_early(
    conn: psycopg.Connection, delivery_id: int, status: str, channel: str, result: SendResult
) -> list[DeliveryUpdate]:
    """Apply the updates that came for this message before its id was recorded, in the order
    the provider stamped them; those applied."""
    kept = conn.execute(
        "DELETE FROM channels.early_updates WHERE channel = %s AND provider_id = %s"
        " RETURNING update_id, state, error, at",
        (channel, result.provider_id),
    ).fetchall()
    applied = []
    for _, state, error, at in sorted(kept, key=lambda found: (found[3], found[0])):
        update = DeliveryUpdate(
            channel=channel, provider_id=str(result.provider_id), state=state, at=at, error=error
        )
        status = _apply(conn, delivery_id, status, update)
        applied.append(update)
    return applied


def _moves_forward(status: str, new_status: str) -> bool:
    """Whether an update may move `status` to `new_status`: forward only, never out of a
    final state, and a late failure never undoes a confirmed delivery."""
    if status in _FINAL:
        return False
    if new_status in _FINAL:
        return status not in ("delivered", "read")
    return _PROGRESS[new_status] > _PROGRESS[status]


def _insert_event(
    conn: psycopg.Connection,
    delivery_id: int,
    kind: str,
    detail: str | None,
    at: datetime | None = None,
) -> None:
    conn.execute(
        "INSERT INTO channels.delivery_events (delivery_id, kind, detail, at)"
        " VALUES (%s, %s, %s, coalesce(%s, clock_timestamp()))",
        (delivery_id, kind, detail, at),
    )


def _count(runtime: Runtime, channel: str, outcome: str) -> None:
    """Bump the /metrics counter; a Valkey outage costs a count, never a delivery."""
    if outcome not in COUNTED:
        return
    try:
        runtime.valkey.incr(f"{_COUNTER_PREFIX}{channel}:{outcome}")
    except (redis.RedisError, OSError) as exc:
        log.warning("Could not count a %s %s delivery: %s.", channel, outcome, exc)


def _one(runtime: Runtime, where: str, value: object) -> Delivery | None:
    fields = ", ".join(field.name for field in dataclasses.fields(Delivery))
    with runtime.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            f"SELECT {fields} FROM channels.deliveries WHERE {where}", (value,)
        ).fetchone()
    if row is None:
        return None
    profile_id = row.pop("profile_id")
    return Delivery(profile_id=str(profile_id) if profile_id else None, **row)


def _id_of_key(conn: psycopg.Connection, key: str) -> int:
    row = conn.execute(
        "SELECT delivery_id FROM channels.deliveries WHERE idempotency_key = %s", (key,)
    ).fetchone()
    assert row is not None  # the insert just conflicted with it; deliveries are not deleted
    return int(row[0])


def _due_detail(not_before: datetime | None, moment: datetime) -> str | None:
    return f"due {not_before.isoformat()}" if not_before and not_before > moment else None


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _now() -> datetime:
    return datetime.now(UTC)
