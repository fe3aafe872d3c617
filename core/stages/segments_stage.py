"""The segments stage: consumes c360-updated-profiles and keeps every saved segment's members
current for the profiles in the batch (c360.segments.membership). Idempotent, so a
redelivered batch changes nothing. Touches analytics.segment_members and analytics.segments.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from c360.runtime import Runtime
from c360.segments import membership

#: The stage's consumer group on c360-updated-profiles.
SEGMENTS_GROUP = "segments"


class _Updated(msgspec.Struct):
    """Only what the stage reads of a published profile document."""

    profile_id: str


_DECODER = msgspec.json.Decoder(_Updated)


def refresh(runtime: Runtime, payloads: Sequence[bytes]) -> int:
    """Re-evaluate the saved segments for the batch's profiles; returns memberships changed."""
    ids = {_DECODER.decode(payload).profile_id for payload in payloads}
    with runtime.pool.connection() as conn:
        return membership.refresh(conn, sorted(ids), runtime.settings.default_region)
