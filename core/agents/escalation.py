"""Escalation to a person: when a conversation goes to the operators' queue (the customer asks
for a person, the agent was unsure twice in a row, the customer is upset, a high-value
customer complains), and the queue itself (queued, taken, answered, closed).

While a conversation is escalated the agent does not answer; an operator answers through the
admin API and hands the conversation back when done. Reads and writes agents.escalations and
the status of agents.conversations; changes by operators are audited.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg
from psycopg.rows import dict_row
from unidecode import unidecode

from c360 import audit
from c360.agents.personas import Persona
from c360.errors import InputError

#: Why a conversation was escalated.
HUMAN_REQUEST = "human_request"
LOW_CONFIDENCE = "low_confidence"
NEGATIVE_SENTIMENT = "negative_sentiment"
HIGH_VALUE_COMPLAINT = "high_value_complaint"

STATUSES = ("queued", "taken", "answered", "closed")

#: Words and phrases of an upset customer. Vietnamese ones are matched with and without
#: diacritics when they are long enough not to collide with other words once folded
#: ("tệ" folds to "te", which is too short to trust).
_NEGATIVE_EN = """terrible awful horrible worst disgusting useless unacceptable ridiculous
    scam rude furious angry pathetic outrageous appalling disappointed disappointing
    hate|hated|hates|hating "never again" "fed up" "waste of money" "rip off" "ripped off"
    "complete joke" "sick of" "very bad" "so bad" "really bad" """
_NEGATIVE_VI = """tệ "tồi tệ" "kinh khủng" "tệ hại" "bực mình" "bực"
    "thất vọng" "lừa đảo" "vô lý" "quá tệ" "dở tệ" "không chấp nhận được"
    ghét "tức giận" "thô lỗ" "tệ nhất"
    "chán quá" "phí tiền" "quá đáng" "bức xúc" "tức quá" """
#: Words that turn the next negative word around ("not bad", "không tệ").
_NEGATORS = {"not", "never", "no", "isn't", "wasn't", "không", "chẳng", "chả", "khong"}


def _phrases(source: str) -> list[str]:
    return [p.strip('"') for p in re.findall(r'"[^"]+"|\S+', source)]


_EN_WORDS = [word for p in _phrases(_NEGATIVE_EN) for word in p.split("|")]
_VI_WORDS = _phrases(_NEGATIVE_VI)
_VI_FOLDED = [unidecode(p) for p in _VI_WORDS if len(unidecode(p)) >= 7]
_LEXICON = re.compile(
    r"(?<![\w])("
    + "|".join(
        re.escape(w) for w in sorted({*_EN_WORDS, *_VI_WORDS, *_VI_FOLDED}, key=len, reverse=True)
    )
    + r")(?![\w])",
    re.IGNORECASE,
)


def is_negative(text: str) -> bool:
    """Whether `text` reads as an upset customer (a small EN + VI lexicon, with negation)."""
    for match in _LEXICON.finditer(text):
        before = text[: match.start()].split()
        if not before or before[-1].lower().strip(",.!?") not in _NEGATORS:
            return True
    return False


def reason_for(
    persona: Persona,
    intent: str | None,
    sure: bool,
    streak: int,
    text: str,
    ltv_tier: str | None,
) -> str | None:
    """Why this customer turn should go to a person, or None. `sure` is whether the intent
    model was confident; `streak` counts unsure turns in a row, this one included."""
    rules = persona.escalation
    if rules.get("human_request") and sure and intent == "human_request":
        return HUMAN_REQUEST
    if rules.get("negative_sentiment") and is_negative(text):
        return NEGATIVE_SENTIMENT
    if sure and intent == "complaint" and ltv_tier in (rules.get("complaint_tiers") or ()):
        return HIGH_VALUE_COMPLAINT
    needed = int(rules.get("low_confidence_turns") or 0)
    if needed and not sure and streak >= needed:
        return LOW_CONFIDENCE
    return None


def open_escalation(conn: psycopg.Connection, conversation_id: str, reason: str) -> int:
    """Queue the conversation for an operator (once: an open escalation is kept) and stop
    the agent's replies. Run inside the caller's transaction."""
    row = conn.execute(
        "SELECT escalation_id FROM agents.escalations"
        " WHERE conversation_id = %s AND status <> 'closed'",
        (conversation_id,),
    ).fetchone()
    if row is None:
        row = conn.execute(
            "INSERT INTO agents.escalations (conversation_id, reason) VALUES (%s, %s)"
            " RETURNING escalation_id",
            (conversation_id, reason),
        ).fetchone()
    conn.execute(
        "UPDATE agents.conversations SET status = 'escalated', updated_at = now()"
        " WHERE conversation_id = %s",
        (conversation_id,),
    )
    assert row is not None
    return int(row[0])


def queue(
    conn: psycopg.Connection,
    statuses: tuple[str, ...] = ("queued", "taken", "answered"),
    limit: int = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Escalations with these statuses, oldest first, with their conversation's channel,
    language and profile (no texts: opening a conversation is what reads personal data)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT e.escalation_id, e.conversation_id, e.reason, e.status, e.operator,"
            " e.created_at, e.taken_at, e.answered_at, c.agent, c.channel, c.language,"
            " c.profile_id, c.context ->> 'ltv_tier' AS ltv_tier"
            " FROM agents.escalations e JOIN agents.conversations c USING (conversation_id)"
            " WHERE e.status = ANY(%s) ORDER BY e.created_at, e.escalation_id"
            " LIMIT %s OFFSET %s",
            (list(statuses), limit, offset),
        ).fetchall()


def take(conn: psycopg.Connection, escalation_id: int, operator: str) -> dict[str, Any]:
    """An operator takes a queued escalation (or one they already hold)."""
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "SELECT * FROM agents.escalations WHERE escalation_id = %s FOR UPDATE",
            (escalation_id,),
        ).fetchone()
        if row is None:
            raise UnknownEscalation(escalation_id)
        if row["status"] == "closed":
            raise EscalationConflict(f"escalation {escalation_id} is closed; nothing to take")
        if row["operator"] not in (None, operator):
            raise EscalationConflict(
                f"escalation {escalation_id} is taken by {row['operator']}; ask them to hand "
                "the conversation back first"
            )
        taken = cur.execute(
            "UPDATE agents.escalations SET status = CASE WHEN status = 'queued' THEN 'taken'"
            " ELSE status END, operator = %s, taken_at = coalesce(taken_at, now())"
            " WHERE escalation_id = %s RETURNING *",
            (operator, escalation_id),
        ).fetchone()
        audit.record(
            conn,
            actor=operator,
            action="escalation.take",
            target=f"escalation:{escalation_id}",
            before={"status": row["status"], "operator": row["operator"]},
            after={"status": taken["status"], "operator": operator},
        )
    return taken


def answered(conn: psycopg.Connection, conversation_id: str, operator: str) -> None:
    """Record an operator's answer on the conversation's open escalation (opening one, taken by
    this operator, when an operator writes first). Run inside the caller's transaction."""
    open_escalation(conn, conversation_id, "operator")
    conn.execute(
        "UPDATE agents.escalations SET status = 'answered', answered_at = now(),"
        " operator = coalesce(operator, %s), taken_at = coalesce(taken_at, now())"
        " WHERE conversation_id = %s AND status <> 'closed'",
        (operator, conversation_id),
    )


def hand_back(conn: psycopg.Connection, conversation_id: str, operator: str) -> int | None:
    """Close the open escalation and let the agent answer again; returns the escalation id
    closed, or None when there was none. Run inside the caller's transaction."""
    row = conn.execute(
        "UPDATE agents.escalations SET status = 'closed', closed_at = now(),"
        " operator = coalesce(operator, %s)"
        " WHERE conversation_id = %s AND status <> 'closed' RETURNING escalation_id",
        (operator, conversation_id),
    ).fetchone()
    conn.execute(
        "UPDATE agents.conversations SET status = 'open', low_confidence_streak = 0,"
        " updated_at = now() WHERE conversation_id = %s",
        (conversation_id,),
    )
    return int(row[0]) if row else None


class UnknownEscalation(InputError):
    """No escalation has that id."""

    status_code = 404

    def __init__(self, escalation_id: int) -> None:
        super().__init__("unknown_escalation", f"no escalation has id {escalation_id}")


class EscalationConflict(InputError):
    """The escalation is closed or held by another operator."""

    status_code = 409

    def __init__(self, message: str) -> None:
        super().__init__("escalation_conflict", message)
