"""The agents stage: consumes c360-updated-profiles and refreshes the context snapshot of the
open conversations of the profiles in the batch, then announces each refresh on Valkey pub/sub
(`c360:agents:profile:<profile_id>`) so a web chat holding that customer's socket hears of it
at once. Idempotent: a redelivered batch writes the same snapshots again. Touches
agents.conversations and Valkey pub/sub.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import redis

from c360.agents import context as contexts
from c360.agents import dialogue
from c360.events.model import decode_any, encode
from c360.runtime import Runtime

log = logging.getLogger(__name__)

#: The stage's consumer group on c360-updated-profiles.
AGENTS_GROUP = "agents"

#: Pub/sub channel of one profile's context refreshes: CHANNEL_PREFIX + profile id.
CHANNEL_PREFIX = "c360:agents:profile:"

#: Snapshot fields that stay on the server: the customer's addresses and consent.
_PRIVATE = ("emails", "phones", "consent")


def refresh(runtime: Runtime, payloads: Sequence[bytes]) -> int:
    """Refresh the snapshots of the open conversations of the batch's profiles; returns how
    many conversations were refreshed."""
    documents = _latest_documents(payloads)
    with runtime.pool.connection() as conn:
        conversations = dialogue.open_of_profiles(conn, list(documents))
    if not conversations:
        return 0

    snapshots = {
        profile_id: contexts.build(runtime, documents[profile_id])
        for profile_id in {c.profile_id for c in conversations if c.profile_id}
    }
    with runtime.pool.connection() as conn, conn.transaction():
        for conversation in conversations:
            assert conversation.profile_id is not None
            dialogue.save_state(
                conn, conversation.conversation_id, context=snapshots[conversation.profile_id]
            )

    for profile_id, snapshot in snapshots.items():
        ids = [c.conversation_id for c in conversations if c.profile_id == profile_id]
        _announce(runtime, profile_id, ids, snapshot)
    return len(conversations)


def channel_of(profile_id: str) -> str:
    """The pub/sub channel a profile's context refreshes are announced on."""
    return CHANNEL_PREFIX + profile_id


def _latest_documents(payloads: Sequence[bytes]) -> dict[str, dict[str, Any]]:
    """The batch's profile documents by id; a later copy of a profile replaces an earlier."""
    documents: dict[str, dict[str, Any]] = {}
    for payload in payloads:
        doc = decode_any(payload)  # Decimal numbers: revenue stays exact in the snapshot
        if isinstance(doc, dict) and isinstance(doc.get("profile_id"), str):
            documents[doc["profile_id"]] = doc
    return documents


def _announce(
    runtime: Runtime, profile_id: str, conversation_ids: list[str], snapshot: dict[str, Any]
) -> None:
    public = {key: value for key, value in snapshot.items() if key not in _PRIVATE}
    message = {
        "type": "profile",
        "profile_id": profile_id,
        "conversation_ids": conversation_ids,
        "context": public,
    }
    try:
        runtime.valkey.publish(channel_of(profile_id), encode(message))
    except redis.RedisError as exc:  # the snapshot is stored; a listener reads it next turn
        log.warning("Could not announce the context of profile %r: %s", profile_id, exc)
