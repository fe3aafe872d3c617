"""Pipeline health: what each stage has yet to do, and the dead-letter topic (c360-dlq) with
inspect and replay.

A DLQ entry is named by a digest of its bytes, so its id is the same in every process and
after restarts (identical entries are one entry). A replay runs the entry's raw payload
through F1 again, as its original source, with the tracking plans in force now: accepted
events go to c360-raw-events, an event rejected again stays where it was. An entry is
accepted by a replay at most once (`governance.dlq_replays`), and every replay is audited.

Touches: reads the bus (backlogs, c360-dlq), publishes replayed events to c360-raw-events,
writes governance.dlq_replays and governance.audit_log, bumps Valkey counters.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec
import psycopg

from c360 import audit, counters
from c360.adapters.bus import DLQ, ID_RESOLUTION, RAW_EVENTS
from c360.errors import InputError
from c360.events.f1 import IngestContext, ParsedRequest, ingest, parse_request
from c360.events.model import Event, decode_any, encode
from c360.events.timestamps import parse_time
from c360.governance.sources import SourceNotFound
from c360.governance.tracking_plans import (
    PlanChecker,
    active_plans,
    compile_plan,
    count_hits,
)
from c360.runtime import Runtime
from c360.stages import F2_GROUP, F3_GROUP, LAKE_GROUP

log = logging.getLogger(__name__)

#: The stages whose backlog is shown: (stage, topic, consumer group).
STAGES = (
    ("F2 persist", RAW_EVENTS, F2_GROUP),
    ("lake sink", RAW_EVENTS, LAKE_GROUP),
    ("F3 resolve", ID_RESOLUTION, F3_GROUP),
)

#: Entries replayed per call at most: each is a transaction and a publish.
MAX_REPLAY = 500

#: Largest page of DLQ entries.
MAX_PAGE = 500

#: Code of a dead letter written by a stage that failed after all its retries (see
#: `c360.appliance.dead_letters`): its payload is actor arguments, not an event.
STAGE_FAILED = "stage_failed"

#: Characters of the digest that names an entry: plenty against collisions, short in URLs.
_ID_CHARS = 24


@dataclass(frozen=True, slots=True)
class StageLag:
    """What one stage has not finished: bus entries waiting or in flight, and since when."""

    stage: str
    topic: str
    group: str
    #: bus entries not yet acknowledged (on Valkey an entry holds one publish's events of one
    #: partition; on Kafka one event)
    waiting: int
    #: when the oldest of them was published, when the bus can tell
    oldest_at: datetime | None
    age_s: float | None


@dataclass(frozen=True, slots=True)
class DlqEntry:
    """One dead letter."""

    entry_id: str
    reason: str
    code: str
    source: str
    received_at: datetime | None
    message_id: str | None
    payload: str
    replayable: bool
    #: the time an earlier replay got it accepted, if one did
    replayed_at: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        """The entry for a JSON answer."""
        return {
            "entry_id": self.entry_id,
            "reason": self.reason,
            "code": self.code,
            "source": self.source,
            "received_at": self.received_at,
            "message_id": self.message_id,
            "payload": self.payload,
            "replayable": self.replayable and self.replayed_at is None,
            "replayed_at": self.replayed_at,
        }


@dataclass(frozen=True, slots=True)
class DlqPage:
    """A page of dead letters, newest first, and how many there are."""

    total: int
    offset: int
    limit: int
    entries: list[DlqEntry]


@dataclass(frozen=True, slots=True)
class ReplayOutcome:
    """What a replay did with one entry: `accepted`, `rejected` (again, with the reason),
    `already_replayed`, `not_replayable` or `not_found`."""

    entry_id: str
    outcome: str
    code: str | None = None
    message: str | None = None
    message_ids: list[str] = field(default_factory=list)


def stage_lag(runtime: Runtime, now: datetime | None = None) -> list[StageLag]:
    """Each stage's backlog, and the age of its oldest waiting entry where the bus tells it
    (a bus method `oldest_waiting(topic, group) -> datetime | None`)."""
    now = now or datetime.now(UTC)
    bus = runtime.bus
    oldest_waiting = getattr(bus, "oldest_waiting", None)
    lags = []
    for stage, topic, group in STAGES:
        waiting = bus.backlog(topic, group)
        oldest = oldest_waiting(topic, group) if oldest_waiting and waiting else None
        age = max(0.0, (now - oldest).total_seconds()) if oldest else None
        lags.append(StageLag(stage, topic, group, waiting, oldest, age))
    return lags


def dlq_size(runtime: Runtime) -> int:
    """Dead letters kept on c360-dlq."""
    return len(_entries(runtime))


def dlq_entries(runtime: Runtime, offset: int = 0, limit: int = 50) -> DlqPage:
    """A page of dead letters, newest first."""
    if offset < 0 or not 1 <= limit <= MAX_PAGE:
        raise InputError(
            "invalid_page", f"offset must be 0 or more and limit between 1 and {MAX_PAGE}"
        )
    entries = _entries(runtime)
    page = entries[offset : offset + limit]
    return DlqPage(len(entries), offset, limit, _with_replays(runtime, page))


def dlq_entry(runtime: Runtime, entry_id: str) -> DlqEntry:
    """One dead letter by id; SourceNotFound (404) when c360-dlq holds none by that id."""
    for entry in _entries(runtime):
        if entry.entry_id == entry_id:
            return _with_replays(runtime, [entry])[0]
    raise _no_entry(entry_id)


def replay(runtime: Runtime, entry_ids: Sequence[str], actor: str) -> list[ReplayOutcome]:
    """Run each entry's payload through F1 again as its source; one outcome per id, in order."""
    if not entry_ids or len(entry_ids) > MAX_REPLAY:
        raise InputError("invalid_replay", f"name between 1 and {MAX_REPLAY} DLQ entries to replay")
    known = {entry.entry_id: entry for entry in _entries(runtime)}
    checkers = _plan_checkers(runtime)
    outcomes = []
    for entry_id in dict.fromkeys(entry_ids):  # the same id twice is replayed once
        entry = known.get(entry_id)
        if entry is None:
            outcomes.append(ReplayOutcome(entry_id, "not_found", "unknown_entry", "no such entry"))
        elif not entry.replayable:
            outcomes.append(_not_replayable(entry))
        else:
            outcomes.append(_replay_one(runtime, entry, checkers, actor))
    return outcomes


def _replay_one(
    runtime: Runtime, entry: DlqEntry, checkers: dict[str, PlanChecker], actor: str
) -> ReplayOutcome:
    """One entry in its own transaction: the record of the replay commits only once its
    events are on the bus, so a failed publish leaves the entry to replay again."""
    with runtime.pool.connection() as conn, conn.transaction():
        _lock_entry(conn, entry.entry_id)
        if _accepted_before(conn, entry.entry_id):
            return ReplayOutcome(
                entry.entry_id,
                "already_replayed",
                "already_replayed",
                "a replay already got this entry accepted",
            )
        plans = checkers.get(entry.source)
        checker = PlanChecker(entry.source, plans.plans) if plans else None
        result = _run_f1(runtime, entry, checker)
        if checker is not None:
            count_hits(runtime.valkey, checker.hits)
        outcome = _outcome(entry, result)
        _record(conn, entry, outcome, actor)
        _publish(runtime, entry, result.accepted, actor)
    return outcome


def _publish(runtime: Runtime, entry: DlqEntry, events: Sequence[Event], actor: str) -> None:
    """Send the replayed events on, each saying where it came from, and count them."""
    if not events:
        return
    for event in events:
        event.warnings.append(f"replayed from c360-dlq entry {entry.entry_id} by {actor}")
    runtime.bus.publish(RAW_EVENTS, [(e.customer_key, encode(e)) for e in events])
    with runtime.valkey.pipeline(transaction=False) as pipe:
        for key, amount in counters.increments(entry.source, len(events), 0).items():
            if amount:
                pipe.incrby(key, amount)
        pipe.execute()


def _run_f1(runtime: Runtime, entry: DlqEntry, checker: PlanChecker | None) -> Any:
    body = entry.payload.encode("utf-8", "surrogatepass")
    endpoint_type = None
    try:
        parsed = _parsed(body)
    except InputError as exc:
        return _Refused(exc.code, exc.message)
    if len(parsed.events) == 1:
        endpoint_type = _endpoint_type(parsed.events[0])
    ctx = IngestContext(
        source=entry.source,
        received_at=entry.received_at or datetime.now(UTC),
        endpoint_type=endpoint_type,
        batch_sent_at=parsed.sent_at,
        batch_context=parsed.context,
        batch_integrations=parsed.integrations,
    )
    return ingest(parsed, ctx, runtime.settings, runtime.hooks, checker)


@dataclass
class _Refused:
    """A payload that cannot be read as a request at all."""

    code: str
    message: str
    accepted: tuple[()] = ()


def _parsed(body: bytes) -> ParsedRequest:
    """A dead-lettered batch body is split into its events; anything else is one event."""
    try:
        data = decode_any(body)
    except (msgspec.DecodeError, RecursionError):
        data = None
    if isinstance(data, dict) and isinstance(data.get("batch"), list):
        return parse_request(body, None)
    return ParsedRequest(events=[body])


def _endpoint_type(raw: bytes) -> str | None:
    """The type of an event sent to a single-event endpoint, which need not carry `type`:
    guessed from the field each type requires, else left for F1 to judge."""
    try:
        data = decode_any(raw)
    except (msgspec.DecodeError, RecursionError):
        return None
    if not isinstance(data, dict) or data.get("type") is not None:
        return None
    for needed, kind in (("event", "track"), ("previousId", "alias"), ("groupId", "group")):
        if data.get(needed) is not None:
            return kind
    if data.get("traits") is not None:
        return "identify"
    return "page" if data.get("name") is not None else None


def _outcome(entry: DlqEntry, result: Any) -> ReplayOutcome:
    if isinstance(result, _Refused):
        return ReplayOutcome(entry.entry_id, "rejected", result.code, result.message)
    ids = [event.message_id for event in result.accepted]
    if result.accepted:
        rejected = len(result.rejected)
        note = f"{rejected} event(s) of the entry were rejected again" if rejected else None
        return ReplayOutcome(entry.entry_id, "accepted", None, note, ids)
    first = result.rejected[0]
    return ReplayOutcome(entry.entry_id, "rejected", first.code, first.reason)


def _record(conn: psycopg.Connection, entry: DlqEntry, outcome: ReplayOutcome, actor: str) -> None:
    conn.execute(
        "INSERT INTO governance.dlq_replays (entry_id, outcome, code, message, replayed_by)"
        " VALUES (%s, %s, %s, %s, %s)",
        (entry.entry_id, outcome.outcome, outcome.code, outcome.message, actor),
    )
    audit.record(
        conn,
        actor=actor,
        action="dlq.replay",
        target=f"dlq:{entry.entry_id}",
        before={"code": entry.code, "reason": entry.reason, "source": entry.source},
        after={"outcome": outcome.outcome, "code": outcome.code, "message": outcome.message},
        detail={"message_ids": outcome.message_ids},
    )


def _lock_entry(conn: psycopg.Connection, entry_id: str) -> None:
    """Two replays of one entry at once: the second waits, then sees the first's outcome."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 7))", (entry_id,))


def _accepted_before(conn: psycopg.Connection, entry_id: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM governance.dlq_replays WHERE entry_id = %s AND outcome = 'accepted'",
        (entry_id,),
    ).fetchone()
    return row is not None


def _not_replayable(entry: DlqEntry) -> ReplayOutcome:
    return ReplayOutcome(
        entry.entry_id,
        "not_replayable",
        "not_replayable",
        "a stage failure holds a stage's batch, not an event: fix the stage, then its "
        "events flow again from the bus",
    )


def _plan_checkers(runtime: Runtime) -> dict[str, PlanChecker]:
    """The tracking plans in force now, per source (read fresh: a replay is rare)."""
    with runtime.pool.connection() as conn:
        plans = active_plans(conn)
    by_source: dict[str, PlanChecker] = {}
    for plan in plans:
        checker = by_source.setdefault(plan.source, PlanChecker(plan.source, {}))
        checker.plans[plan.event] = compile_plan(plan)
    return by_source


def _entries(runtime: Runtime) -> list[DlqEntry]:
    """Every dead letter on the bus, newest first, each once."""
    found: dict[str, DlqEntry] = {}
    for message in runtime.bus.read_all(DLQ):
        entry = _entry(message)
        found.setdefault(entry.entry_id, entry)
    oldest = datetime.min.replace(tzinfo=UTC)
    return sorted(found.values(), key=lambda e: (e.received_at or oldest, e.entry_id), reverse=True)


def _entry(message: bytes) -> DlqEntry:
    entry_id = hashlib.sha256(message).hexdigest()[:_ID_CHARS]
    try:
        data = decode_any(message)
    except (msgspec.DecodeError, RecursionError):
        data = None
    if not isinstance(data, dict):
        text = message.decode("utf-8", errors="replace")
        return DlqEntry(
            entry_id, "unreadable dead letter", "unreadable", "", None, None, text, False
        )
    code = str(data.get("code") or "")
    payload = data.get("payload")
    return DlqEntry(
        entry_id=entry_id,
        reason=str(data.get("reason") or ""),
        code=code,
        source=str(data.get("source") or ""),
        received_at=parse_time(data.get("receivedAt")),
        message_id=data.get("messageId") if isinstance(data.get("messageId"), str) else None,
        payload=payload if isinstance(payload, str) else encode(payload).decode(),
        replayable=code != STAGE_FAILED and bool(data.get("source")),
    )


def _with_replays(runtime: Runtime, entries: list[DlqEntry]) -> list[DlqEntry]:
    """The entries with the time a replay got each accepted, if one did."""
    if not entries:
        return entries
    with runtime.pool.connection() as conn:
        rows = conn.execute(
            "SELECT entry_id, replayed_at FROM governance.dlq_replays"
            " WHERE outcome = 'accepted' AND entry_id = ANY(%s)",
            ([e.entry_id for e in entries],),
        ).fetchall()
    replayed = dict(rows)
    return [dataclasses.replace(e, replayed_at=replayed.get(e.entry_id)) for e in entries]


def _no_entry(entry_id: str) -> SourceNotFound:
    return SourceNotFound(
        "unknown_entry", f"c360-dlq holds no entry {entry_id!r}: it may have been trimmed"
    )
