"""Personas: an agent's name, tone, languages, allowed topics, escalation criteria, opening
hours and greeting, edited as data. Every change is a new version row in `agents.personas`;
exactly one version per agent is active. An agent nobody has configured speaks as the built-in
persona below (version 0, never stored). Changes are audited.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from c360 import audit
from c360.errors import InputError

#: The agent channels talk to unless a message names another.
DEFAULT_AGENT = "default"

#: Intents the built-in model knows (c360.agents.intents, core/agents/data/intents.json).
INTENTS = (
    "greeting",
    "goodbye",
    "thanks",
    "order_status",
    "recommendation",
    "product_question",
    "promotion",
    "store_info",
    "complaint",
    "human_request",
    "unsubscribe",
)

#: Intents answered whatever the persona's topics: being polite, being heard, reaching a
#: person and stopping messages are never out of scope.
ALWAYS_ALLOWED = frozenset(
    {"greeting", "goodbye", "thanks", "complaint", "human_request", "unsubscribe"}
)

#: Languages replies can be written in (templates exist for them).
LANGUAGES = ("en", "vi")

#: LTV tiers (c360.analytics.ltv.TIERS) whose complaints go to a person at once.
HIGH_VALUE_TIERS = ("top 5%", "next 15%")

#: Escalation triggers and their defaults; a persona may turn each off or tune it.
DEFAULT_ESCALATION: dict[str, Any] = {
    "human_request": True,
    "low_confidence_turns": 2,
    "negative_sentiment": True,
    "complaint_tiers": list(HIGH_VALUE_TIERS),
}

DEFAULT_HOURS: dict[str, Any] = {
    "timezone": "Asia/Ho_Chi_Minh",
    "days": [1, 2, 3, 4, 5, 6, 7],
    "from": "08:00",
    "to": "22:00",
}

#: Keys a persona body may hold; any other is a typo worth reporting.
FIELDS = (
    "name",
    "tone",
    "languages",
    "allowed_topics",
    "escalation",
    "opening_hours",
    "greeting",
)

_AGENT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_CLOCK = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
#: Longest free text in a persona (name, tone, a greeting): a paragraph, not a document.
MAX_TEXT = 2000


@dataclasses.dataclass(frozen=True, kw_only=True)
class Persona:
    """One version of an agent's behaviour rules."""

    agent: str
    version: int
    name: str
    tone: str
    languages: tuple[str, ...]
    allowed_topics: tuple[str, ...]
    escalation: dict[str, Any]
    opening_hours: dict[str, Any]
    greeting: dict[str, str]
    active: bool = True
    created_by: str = "c360"
    created_at: datetime | None = None

    def allows(self, intent: str) -> bool:
        """Whether the agent answers this intent (else the out-of-scope answer)."""
        return intent in ALWAYS_ALLOWED or intent in self.allowed_topics

    def language_for(self, wanted: str | None) -> str:
        """`wanted` when the agent speaks it, else the agent's first language."""
        return wanted if wanted in self.languages else self.languages[0]

    def is_open(self, at: datetime) -> bool:
        """Whether operators answer at `at` (opening hours in their time zone)."""
        hours = self.opening_hours or DEFAULT_HOURS
        local = at.astimezone(ZoneInfo(hours.get("timezone", DEFAULT_HOURS["timezone"])))
        if local.isoweekday() not in hours.get("days", DEFAULT_HOURS["days"]):
            return False
        start = time.fromisoformat(hours.get("from", DEFAULT_HOURS["from"]))
        end = time.fromisoformat(hours.get("to", DEFAULT_HOURS["to"]))
        return start <= local.time().replace(tzinfo=None) < end

    def as_dict(self) -> dict[str, Any]:
        """The persona as the API shows it."""
        data = dataclasses.asdict(self)
        data["languages"] = list(self.languages)
        data["allowed_topics"] = list(self.allowed_topics)
        return data


#: The persona of an agent nobody configured: every topic, both languages, all triggers.
BUILT_IN = Persona(
    agent=DEFAULT_AGENT,
    version=0,
    name="Mai",
    tone="warm, brief and precise",
    languages=("vi", "en"),
    allowed_topics=INTENTS,
    escalation=dict(DEFAULT_ESCALATION),
    opening_hours=dict(DEFAULT_HOURS),
    greeting={},
)


def active(conn: psycopg.Connection, agent: str = DEFAULT_AGENT) -> Persona:
    """The agent's active persona; the built-in one when the agent has none."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "SELECT * FROM agents.personas WHERE agent = %s AND active", (agent,)
        ).fetchone()
    return _persona(row) if row else dataclasses.replace(BUILT_IN, agent=agent)


def versions(conn: psycopg.Connection, agent: str) -> list[Persona]:
    """Every stored version of an agent's persona, newest first."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT * FROM agents.personas WHERE agent = %s ORDER BY version DESC", (agent,)
        ).fetchall()
    return [_persona(row) for row in rows]


def list_active(conn: psycopg.Connection) -> list[Persona]:
    """The active persona of every configured agent, by agent name."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute("SELECT * FROM agents.personas WHERE active ORDER BY agent").fetchall()
    return [_persona(row) for row in rows]


def save(conn: psycopg.Connection, agent: str, raw: Any, actor: str) -> Persona:
    """Store `raw` as the agent's new active version (the previous one stays, inactive) and
    audit the change. Fields left out keep their current values."""
    _check_agent(agent)
    with conn.transaction():
        # one writer per agent at a time, so two saves never take the same version number
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('agents.persona:' || %s))", (agent,))
        before = active(conn, agent)
        fields = check(raw, before)
        stored = _next_version(conn, agent) > 1
        if not raw or (stored and fields == _fields(before)):
            raise InputError(
                "no_change",
                f"nothing to change: send at least one of {', '.join(FIELDS)} with a new value",
            )
        version = _next_version(conn, agent)
        conn.execute("UPDATE agents.personas SET active = false WHERE agent = %s", (agent,))
        conn.execute(
            "INSERT INTO agents.personas (agent, version, name, tone, languages,"
            " allowed_topics, escalation, opening_hours, greeting, active, created_by)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, true, %s)",
            (
                agent,
                version,
                fields["name"],
                fields["tone"],
                list(fields["languages"]),
                list(fields["allowed_topics"]),
                Jsonb(fields["escalation"]),
                Jsonb(fields["opening_hours"]),
                Jsonb(fields["greeting"]),
                actor,
            ),
        )
        after = active(conn, agent)
        audit.record(
            conn,
            actor=actor,
            action="persona.update",
            target=f"agent:{agent}",
            before=_audited(before),
            after=_audited(after),
        )
    return after


def check(raw: Any, current: Persona) -> dict[str, Any]:
    """The persona fields in `raw` checked, with `current`'s values for those left out; an
    InputError names the field and the fix."""
    if not isinstance(raw, Mapping):
        raise InputError("invalid_body", f"send a JSON object with {', '.join(FIELDS)}")
    unknown = sorted(str(key) for key in raw if key not in FIELDS)
    if unknown:
        raise InputError(
            "unknown_field",
            f"unknown field {', '.join(unknown)}; a persona may hold {', '.join(FIELDS)}",
        )
    merged = {name: raw.get(name, getattr(current, name)) for name in FIELDS}
    return {
        "name": _text(merged["name"], "name", required=True),
        "tone": _text(merged["tone"], "tone"),
        "languages": _languages(merged["languages"]),
        "allowed_topics": _topics(merged["allowed_topics"]),
        "escalation": _escalation(merged["escalation"]),
        "opening_hours": _hours(merged["opening_hours"]),
        "greeting": _greeting(merged["greeting"]),
    }


def exists(conn: psycopg.Connection, agent: str) -> bool:
    """Whether the agent has a stored persona or is the built-in default one."""
    return agent == DEFAULT_AGENT or _next_version(conn, agent) > 1


def _fields(persona: Persona) -> dict[str, Any]:
    """The persona's fields as `check` returns them, to tell a no-op change."""
    return check({}, persona)


def _persona(row: Mapping[str, Any]) -> Persona:
    return Persona(
        agent=row["agent"],
        version=row["version"],
        name=row["name"],
        tone=row["tone"],
        languages=tuple(row["languages"]),
        allowed_topics=tuple(row["allowed_topics"]),
        escalation={**DEFAULT_ESCALATION, **row["escalation"]},
        opening_hours={**DEFAULT_HOURS, **row["opening_hours"]},
        greeting=dict(row["greeting"]),
        active=row["active"],
        created_by=row["created_by"],
        created_at=row["created_at"],
    )


def _next_version(conn: psycopg.Connection, agent: str) -> int:
    row = conn.execute(
        "SELECT coalesce(max(version), 0) + 1 FROM agents.personas WHERE agent = %s", (agent,)
    ).fetchone()
    assert row is not None
    return int(row[0])


def _audited(persona: Persona) -> dict[str, Any]:
    data = persona.as_dict()
    data.pop("created_at")
    return data


def _check_agent(agent: str) -> None:
    if not isinstance(agent, str) or not _AGENT.match(agent):
        raise InputError(
            "invalid_agent",
            "an agent's name is 1-63 lower-case letters, digits, '-' or '_' (e.g. 'shop-vi')",
        )


def _text(value: Any, field: str, required: bool = False) -> str:
    if not isinstance(value, str) or len(value) > MAX_TEXT or (required and not value.strip()):
        need = "a non-empty text" if required else "a text"
        raise InputError("invalid_persona", f"{field} must be {need} of at most {MAX_TEXT} chars")
    return value.strip()


def _languages(value: Any) -> tuple[str, ...]:
    if (
        not isinstance(value, list | tuple)
        or not value
        or any(item not in LANGUAGES for item in value)
    ):
        raise InputError(
            "invalid_persona",
            f"languages must be a non-empty list of {', '.join(LANGUAGES)}; got {value!r}",
        )
    return tuple(dict.fromkeys(value))


def _topics(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or any(item not in INTENTS for item in value):
        raise InputError(
            "invalid_persona",
            f"allowed_topics must be a list of intents among {', '.join(INTENTS)}",
        )
    return tuple(dict.fromkeys(value))


def _escalation(value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping) or any(key not in DEFAULT_ESCALATION for key in value):
        raise InputError(
            "invalid_persona",
            f"escalation may hold {', '.join(DEFAULT_ESCALATION)}; got {value!r}",
        )
    merged = {**DEFAULT_ESCALATION, **value}
    turns = merged["low_confidence_turns"]
    if isinstance(turns, bool) or not isinstance(turns, int) or not 0 <= turns <= 10:
        raise InputError(
            "invalid_persona",
            "escalation.low_confidence_turns must be a whole number from 0 (off) to 10",
        )
    for flag in ("human_request", "negative_sentiment"):
        if not isinstance(merged[flag], bool):
            raise InputError("invalid_persona", f"escalation.{flag} must be true or false")
    tiers = merged["complaint_tiers"]
    if not isinstance(tiers, list) or any(not isinstance(tier, str) for tier in tiers):
        raise InputError(
            "invalid_persona",
            "escalation.complaint_tiers must be a list of LTV tiers, e.g. ['top 5%']",
        )
    return merged


def _hours(value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping) or any(key not in DEFAULT_HOURS for key in value):
        raise InputError(
            "invalid_persona",
            "opening_hours may hold timezone, days (1 = Monday .. 7), from and to ('08:00')",
        )
    merged = {**DEFAULT_HOURS, **value}
    try:
        ZoneInfo(str(merged["timezone"]))
    except (ZoneInfoNotFoundError, ValueError):
        raise InputError(
            "invalid_persona",
            f"opening_hours.timezone {merged['timezone']!r} is not a time zone name "
            "(e.g. 'Asia/Ho_Chi_Minh')",
        ) from None
    days = merged["days"]
    if not isinstance(days, list) or any(day not in range(1, 8) for day in days):
        raise InputError("invalid_persona", "opening_hours.days must list days 1 (Monday) to 7")
    for end in ("from", "to"):
        if not isinstance(merged[end], str) or not _CLOCK.match(merged[end]):
            raise InputError(
                "invalid_persona", f"opening_hours.{end} must be 'HH:MM', e.g. '08:00'"
            )
    return merged


def _greeting(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping) or any(key not in LANGUAGES for key in value):
        raise InputError(
            "invalid_persona",
            f"greeting must map a language ({', '.join(LANGUAGES)}) to its text",
        )
    return {language: _text(text, f"greeting.{language}") for language, text in value.items()}
