"""The notifications stage: consumes c360-updated-profiles and plans the sends the enabled
rules' triggers ask for (c360.notifications.rules). Idempotent: a redelivered batch finds its
sends already planned (one per rule, profile and trigger key) and plans nothing. Touches
notify.sends and notify.watch; the scheduler (c360.notifications.scheduler) sends them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

from c360.notifications import rules
from c360.runtime import Runtime

#: The stage's consumer group on c360-updated-profiles.
NOTIFICATIONS_GROUP = "notifications"

_DECODER = msgspec.json.Decoder(dict[str, Any])


def plan(
    runtime: Runtime,
    payloads: Sequence[bytes],
    clock: Callable[[], datetime] | None = None,
) -> int:
    """Plan the sends the batch's profile documents trigger; returns the sends newly planned."""
    now = (clock or _now)()
    documents = _documents(payloads)
    with runtime.pool.connection() as conn:
        active = rules.live_rules(conn)
        if not active or not documents:
            return 0
        return rules.plan(conn, active, documents, now)


def _documents(payloads: Sequence[bytes]) -> list[dict[str, Any]]:
    """The documents in the order published (a profile's are on one partition, in order),
    so a watched value sees every step a profile took."""
    return [_DECODER.decode(payload) for payload in payloads]


def _now() -> datetime:
    return datetime.now(UTC)
