"""Dialogue state in PostgreSQL: conversations (intent, slots, summary, context snapshot,
status) and their numbered turns. Nothing lives in process memory, so a conversation resumes
after a restart, and a customer known by their profile finds the same conversation whichever
channel they write from. Reads and writes agents.conversations and agents.turns.

Functions that change a conversation run inside the caller's transaction and lock its row
first, so two messages of one conversation never take the same turn number.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

#: Turns kept in the rolling summary's list of recent intents.
SUMMARY_INTENTS = 8


@dataclasses.dataclass(frozen=True, kw_only=True)
class Conversation:
    """A conversation's state as stored."""

    conversation_id: str
    agent: str
    profile_id: str | None
    channel: str
    address: str
    language: str
    status: str
    intent: str | None
    slots: dict[str, Any]
    summary: str
    context: dict[str, Any]
    context_at: datetime | None
    low_confidence_streak: int
    persona_version: int | None
    created_at: datetime
    updated_at: datetime

    def as_dict(self) -> dict[str, Any]:
        """The conversation as the API shows it."""
        return dataclasses.asdict(self)


def open_for(
    conn: psycopg.Connection,
    agent: str,
    profile_id: str | None,
    channel: str,
    address: str,
    language: str,
) -> Conversation:
    """The open conversation of this profile (any channel) or, for an unknown sender, of this
    address on this channel; a new one when there is none. Locked for the caller's
    transaction; the latest channel and address (and a newly known profile) are recorded."""
    # one find-or-create at a time per customer, so two first messages make one conversation
    for key in filter(None, [profile_id, f"{agent}/{channel}/{address}"]):
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('agents.conversation:' || %s))", (key,))
    found = _open_of_profile(conn, agent, profile_id) if profile_id else None
    found = found or _open_at_address(conn, agent, profile_id, channel, address)
    if found is None:
        return _create(conn, agent, profile_id, channel, address, language)
    conn.execute(
        "UPDATE agents.conversations SET channel = %s, address = %s,"
        " profile_id = coalesce(profile_id, %s), updated_at = now()"
        " WHERE conversation_id = %s",
        (channel, address, profile_id, found),
    )
    conversation = lock(conn, found)
    assert conversation is not None
    return conversation


def lock(conn: psycopg.Connection, conversation_id: str) -> Conversation | None:
    """The conversation, its row locked until the caller's transaction ends."""
    return _one(conn, "WHERE conversation_id = %s FOR UPDATE", (_uuid(conversation_id),))


def get(conn: psycopg.Connection, conversation_id: str) -> Conversation | None:
    """The conversation by id, or None (also for a text that is not an id)."""
    key = _uuid(conversation_id)
    return _one(conn, "WHERE conversation_id = %s", (key,)) if key else None


def find(conn: psycopg.Connection, reference: str) -> Conversation | None:
    """A conversation by its id, or by the web-chat address its customer writes from (the
    widget's own conversation id), the latest first."""
    found = get(conn, reference)
    if found:
        return found
    row = conn.execute(
        "SELECT conversation_id FROM agents.turns WHERE channel = 'webchat' AND address = %s"
        " ORDER BY created_at DESC LIMIT 1",
        (reference,),
    ).fetchone()
    return get(conn, str(row[0])) if row else None


def add_turn(
    conn: psycopg.Connection,
    conversation_id: str,
    role: str,
    text: str,
    channel: str,
    **fields: Any,
) -> int:
    """Append a turn (the conversation must be locked by the caller); returns its number.
    `fields` are other columns of agents.turns (intent, confidence, address, external_id,
    reply_to, facts, grounded, written_by, flags)."""
    for name in ("facts", "flags"):
        if name in fields:
            fields[name] = Jsonb(fields[name])
    columns = ", ".join(["conversation_id", "turn_no", "role", "text", "channel", *fields])
    values = ", ".join(["%s"] * (len(fields) + 5))
    row = conn.execute(
        f"INSERT INTO agents.turns ({columns}) VALUES ({values}) RETURNING turn_no",
        (
            _uuid(conversation_id),
            next_turn_no(conn, conversation_id),
            role,
            text,
            channel,
            *fields.values(),
        ),
    ).fetchone()
    assert row is not None
    return int(row[0])


def next_turn_no(conn: psycopg.Connection, conversation_id: str) -> int:
    """The number the next turn takes."""
    row = conn.execute(
        "SELECT coalesce(max(turn_no), 0) + 1 FROM agents.turns WHERE conversation_id = %s",
        (_uuid(conversation_id),),
    ).fetchone()
    assert row is not None
    return int(row[0])


def received(conn: psycopg.Connection, channel: str, external_id: str) -> dict[str, Any] | None:
    """The customer turn a channel's message id became, if it was received before, with the
    reply that answered it (None while unanswered)."""
    with conn.cursor(row_factory=dict_row) as cur:
        turn = cur.execute(
            "SELECT * FROM agents.turns WHERE channel = %s AND external_id = %s",
            (channel, external_id),
        ).fetchone()
        if turn is None:
            return None
        turn["reply"] = cur.execute(
            "SELECT * FROM agents.turns WHERE conversation_id = %s AND reply_to = %s"
            " ORDER BY turn_no LIMIT 1",
            (turn["conversation_id"], turn["turn_no"]),
        ).fetchone()
    return turn


def save_state(conn: psycopg.Connection, conversation_id: str, **changes: Any) -> None:
    """Change columns of the conversation (intent, slots, summary, context, language,
    low_confidence_streak, persona_version, status)."""
    if not changes:
        return
    for name in ("slots", "context"):
        if name in changes:
            changes[name] = Jsonb(changes[name])
    if "context" in changes:
        changes["context_at"] = datetime.now().astimezone()
    assignments = ", ".join(f"{name} = %s" for name in changes)
    conn.execute(
        f"UPDATE agents.conversations SET {assignments}, updated_at = now()"
        " WHERE conversation_id = %s",
        (*changes.values(), _uuid(conversation_id)),
    )


def turns(conn: psycopg.Connection, conversation_id: str, limit: int = 50) -> list[dict[str, Any]]:
    """The last `limit` turns, oldest first."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT * FROM (SELECT * FROM agents.turns WHERE conversation_id = %s"
            " ORDER BY turn_no DESC LIMIT %s) t ORDER BY turn_no",
            (_uuid(conversation_id), limit),
        ).fetchall()
    for row in rows:
        row["conversation_id"] = str(row["conversation_id"])
    return rows


def listing(
    conn: psycopg.Connection, status: str | None, limit: int, offset: int
) -> list[dict[str, Any]]:
    """Conversations, most recently active first, without texts or addresses."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT conversation_id, agent, profile_id, channel, language, status, intent,"
            " summary, low_confidence_streak, created_at, updated_at,"
            " (SELECT count(*) FROM agents.turns t"
            "  WHERE t.conversation_id = c.conversation_id) AS turn_count"
            " FROM agents.conversations c WHERE %(status)s::text IS NULL OR status = %(status)s"
            " ORDER BY updated_at DESC, conversation_id LIMIT %(limit)s OFFSET %(offset)s",
            {"status": status, "limit": limit, "offset": offset},
        ).fetchall()
    for row in rows:
        row["conversation_id"] = str(row["conversation_id"])
        row["profile_id"] = str(row["profile_id"]) if row["profile_id"] else None
    return rows


def open_of_profiles(conn: psycopg.Connection, profile_ids: list[str]) -> list[Conversation]:
    """The open and escalated conversations of these profiles."""
    ids = [key for key in (_uuid(p) for p in profile_ids) if key]
    return _many(conn, "WHERE profile_id = ANY(%s) AND status <> 'closed'", (ids,))


def summary_after(summary: str, intent: str | None) -> str:
    """The rolling summary with one more turn's intent: the intents of the latest turns."""
    intents = [part for part in summary.removeprefix("intents: ").split(", ") if part]
    intents = [*intents, intent or "out_of_scope"][-SUMMARY_INTENTS:]
    return "intents: " + ", ".join(intents)


def _open_of_profile(conn: psycopg.Connection, agent: str, profile_id: str) -> str | None:
    row = conn.execute(
        "SELECT conversation_id FROM agents.conversations"
        " WHERE agent = %s AND profile_id = %s AND status <> 'closed'"
        " ORDER BY updated_at DESC LIMIT 1",
        (agent, _uuid(profile_id)),
    ).fetchone()
    return str(row[0]) if row else None


def _open_at_address(
    conn: psycopg.Connection, agent: str, profile_id: str | None, channel: str, address: str
) -> str | None:
    """An open conversation on this address that belongs to nobody else."""
    row = conn.execute(
        "SELECT conversation_id FROM agents.conversations"
        " WHERE agent = %s AND channel = %s AND address = %s AND status <> 'closed'"
        " AND (profile_id IS NULL OR profile_id = %s)"
        " ORDER BY updated_at DESC LIMIT 1",
        (agent, channel, address, _uuid(profile_id) if profile_id else None),
    ).fetchone()
    return str(row[0]) if row else None


def _create(
    conn: psycopg.Connection,
    agent: str,
    profile_id: str | None,
    channel: str,
    address: str,
    language: str,
) -> Conversation:
    # a web chat names its conversation itself: keep that id when it is free, so the widget's
    # id and c360's are the same
    wanted = _uuid(address) if channel == "webchat" else None
    if wanted is None or get(conn, str(wanted)) is not None:
        wanted = uuid.uuid4()
    conn.execute(
        "INSERT INTO agents.conversations (conversation_id, agent, profile_id, channel,"
        " address, language) VALUES (%s, %s, %s, %s, %s, %s)",
        (wanted, agent, _uuid(profile_id) if profile_id else None, channel, address, language),
    )
    conversation = lock(conn, str(wanted))
    assert conversation is not None
    return conversation


def _one(conn: psycopg.Connection, where: str, params: tuple[Any, ...]) -> Conversation | None:
    found = _many(conn, where, params)
    return found[0] if found else None


def _many(conn: psycopg.Connection, where: str, params: tuple[Any, ...]) -> list[Conversation]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(f"SELECT * FROM agents.conversations {where}", params).fetchall()
    return [_conversation(row) for row in rows]


def _conversation(row: dict[str, Any]) -> Conversation:
    return Conversation(
        **{
            **row,
            "conversation_id": str(row["conversation_id"]),
            "profile_id": str(row["profile_id"]) if row["profile_id"] else None,
        }
    )


def _uuid(value: Any) -> uuid.UUID | None:
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except ValueError:
        return None
