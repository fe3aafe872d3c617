"""The worker's segment refresher recomputes every saved segment in full (what a moving
window needs as time passes), and a store it cannot reach only delays it."""

from __future__ import annotations

import uuid

import psycopg

from c360.access import BUILT_IN_ROLES, Principal
from c360.segments import membership, service
from c360.segments.refresher import SegmentRefresher

LAN = Principal("user", "lan", "analyst", frozenset(BUILT_IN_ROLES["analyst"]), user_id=1)


def _profile(conn, revenue: str) -> str:
    profile_id = str(uuid.uuid4())
    conn.execute(
        "INSERT INTO profiles (profile_id, revenue, order_count) VALUES (%s, %s, 1)",
        (profile_id, revenue),
    )
    return profile_id


def _members(conn, segment_id: int) -> set[str]:
    rows = conn.execute(
        "SELECT profile_id::text FROM analytics.segment_members WHERE segment_id = %s",
        (segment_id,),
    ).fetchall()
    return {row[0] for row in rows}


def test_a_tick_recomputes_every_saved_segment_in_full(runtime):
    spec = {"field": "revenue", "op": ">=", "value": 10}
    with runtime.pool.connection() as conn:
        big, small = _profile(conn, "25.50"), _profile(conn, "3")
        segment = service.save(conn, LAN.actor, "Big spenders", spec)["segment_id"]
        assert _members(conn, segment) == {big}
        # changes no profile update announced (as a moving window's do as days pass)
        conn.execute("UPDATE profiles SET revenue = 0 WHERE profile_id = %s", (big,))
        conn.execute("UPDATE profiles SET revenue = 12 WHERE profile_id = %s", (small,))

    counts = SegmentRefresher(runtime).tick()

    with runtime.pool.connection() as conn:
        assert _members(conn, segment) == {small}
    assert counts == {segment: 1}


def test_a_store_out_of_reach_is_tried_again_later(runtime, monkeypatch):
    def unreachable(conn, region, now=None):
        raise psycopg.OperationalError("connection refused")

    monkeypatch.setattr(membership, "recompute_all", unreachable)

    assert SegmentRefresher(runtime).tick() == {}


def test_stop_ends_the_thread(runtime):
    refresher = SegmentRefresher(runtime, interval_s=3600)
    refresher.start()
    refresher.stop(timeout=5)
    assert not refresher.is_alive()
