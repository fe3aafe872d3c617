"""Sharing saved segments: who sees what (owner, shared role, shared user, admin; nobody
else), idempotent shares, clear refusals, and every share and unshare in the audit log."""

from __future__ import annotations

import pytest

from c360 import audit, sharing
from c360.access import BUILT_IN_ROLES, Principal
from c360.segments import service


def _user(name: str, role: str, user_id: int) -> Principal:
    return Principal("user", name, role, frozenset(BUILT_IN_ROLES[role]), user_id=user_id)


LAN = _user("lan", "analyst", 1)
MAI = _user("mai", "marketer", 2)
HUNG = _user("hung", "viewer", 3)
TAM = _user("tam", "viewer", 4)
ADMIN = _user("root", "admin", 5)


def _add_users(conn, principals) -> None:
    """The principals as rows of governance.users, so shares to them pass the user check."""
    for p in principals:
        conn.execute(
            "INSERT INTO governance.users (user_id, name, role, password_hash)"
            " VALUES (%s, %s, %s, 'not-a-hash')",
            (p.user_id, p.name, p.role),
        )


@pytest.fixture
def segments(runtime):
    """Three segments: two of Lan's, one of Mai's."""
    with runtime.pool.connection() as conn:
        _add_users(conn, [LAN, MAI, HUNG, TAM, ADMIN])
        made = [
            service.save(conn, LAN.actor, "Lan's VIPs", {"all": []}),
            service.save(conn, LAN.actor, "Lan's quiet ones", {"all": []}),
            service.save(conn, MAI.actor, "Mai's list", {"all": []}),
        ]
    return [segment["segment_id"] for segment in made]


def test_a_principal_sees_its_own_and_what_is_shared_with_its_role_or_itself(runtime, segments):
    vips, quiet, mai_list = segments
    with runtime.pool.connection() as conn:
        sharing.share(conn, LAN.actor, "segment", vips, role="viewer")
        sharing.share(conn, MAI.actor, "segment", mai_list, user_id=TAM.user_id)

        assert sharing.visible_ids(conn, "segment", LAN) == {vips, quiet}
        assert sharing.visible_ids(conn, "segment", MAI) == {mai_list}
        assert sharing.visible_ids(conn, "segment", HUNG) == {vips}
        assert sharing.visible_ids(conn, "segment", TAM) == {vips, mai_list}
        assert sharing.visible_ids(conn, "segment", ADMIN) == {vips, quiet, mai_list}
        assert [s["name"] for s in service.list_segments(conn, TAM)] == ["Lan's VIPs", "Mai's list"]


def test_others_cannot_open_a_segment_that_is_not_shared_with_them(runtime, segments):
    _, quiet, _ = segments
    with runtime.pool.connection() as conn:
        with pytest.raises(service.SegmentNotFound) as caught:
            service.get_segment(conn, MAI, quiet)
        assert caught.value.status_code == 404
        with pytest.raises(service.SegmentNotFound):
            service.members(runtime, quiet, principal=HUNG)
        assert (
            service.segments_of_profile(runtime, "00000000-0000-0000-0000-000000000001", MAI) == []
        )


def test_a_shared_segment_can_be_seen_but_only_its_owner_or_an_admin_changes_it(runtime, segments):
    vips = segments[0]
    with runtime.pool.connection() as conn:
        service.share_segment(conn, LAN, vips, role="marketer")
        assert service.get_segment(conn, MAI, vips)["name"] == "Lan's VIPs"
        with pytest.raises(service.NotOwner) as caught:
            service.update(conn, MAI, vips, name="Mine now")
        assert caught.value.status_code == 403 and "owner" in caught.value.message
        with pytest.raises(service.NotOwner):
            service.share_segment(conn, MAI, vips, role="viewer")
        with pytest.raises(service.NotOwner):
            service.delete(conn, MAI, vips)
        assert service.update(conn, ADMIN, vips, description="kept by admin")["description"]


def test_sharing_twice_gives_the_same_share_and_unsharing_takes_sight_away(runtime, segments):
    vips = segments[0]
    with runtime.pool.connection() as conn:
        first = service.share_segment(conn, LAN, vips, role="viewer")
        again = service.share_segment(conn, LAN, vips, role="viewer")
        assert first.share_id == again.share_id
        assert [s.share_id for s in sharing.shares_of(conn, "segment", vips)] == [first.share_id]

        service.unshare_segment(conn, LAN, vips, first.share_id)
        assert sharing.visible_ids(conn, "segment", HUNG) == set()
        with pytest.raises(sharing.ShareNotFound) as caught:
            service.unshare_segment(conn, LAN, vips, first.share_id)
        assert caught.value.status_code == 404

        actions = [e.action for e in audit.entries(conn, action_prefix="segment.")]
        assert actions.count("segment.share") == 1 and actions.count("segment.unshare") == 1
        entry = audit.entries(conn, action_prefix="segment.share")[0]
        assert entry.actor == LAN.actor and entry.target == f"segment:{vips}"
        assert entry.after == {"share_id": first.share_id, "role": "viewer", "user_id": None}


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({}, "share_target"),
        ({"role": "viewer", "user_id": 3}, "share_target"),
        ({"role": "no-such-role"}, "share_unknown_role"),
        ({"user_id": "3"}, "share_unknown_user"),
        ({"user_id": 99}, "share_unknown_user"),
    ],
)
def test_a_share_without_exactly_one_real_grantee_is_refused(runtime, segments, kwargs, code):
    with runtime.pool.connection() as conn:
        with pytest.raises(sharing.ShareError) as caught:
            sharing.share(conn, LAN.actor, "segment", segments[0], **kwargs)
        assert caught.value.code == code and caught.value.status_code == 400


def test_only_segments_and_reports_can_be_shared(runtime):
    with runtime.pool.connection() as conn:
        with pytest.raises(sharing.ShareError) as caught:
            sharing.share(conn, LAN.actor, "profile", 1, role="viewer")
        assert caught.value.code == "share_object_type"


def test_deleting_a_segment_removes_its_shares(runtime, segments):
    vips = segments[0]
    with runtime.pool.connection() as conn:
        service.share_segment(conn, LAN, vips, role="viewer")
        service.delete(conn, LAN, vips)
        assert sharing.shares_of(conn, "segment", vips) == []
        assert sharing.visible_ids(conn, "segment", HUNG) == set()


def test_saved_reports_are_shared_the_same_way_with_their_owner_by_user_id(runtime, segments):
    with runtime.pool.connection() as conn:
        if conn.execute("SELECT to_regclass('analytics.saved_reports')").fetchone()[0] is None:
            pytest.skip("the saved reports migration is not installed")
        report = conn.execute(
            "INSERT INTO analytics.saved_reports (name, kind, owner) VALUES ('r', 'ltv', %s)"
            " RETURNING report_id",
            (LAN.user_id,),
        ).fetchone()[0]
        sharing.share(conn, LAN.actor, "report", report, user_id=HUNG.user_id)
        assert sharing.visible_ids(conn, "report", LAN) == {report}
        assert sharing.visible_ids(conn, "report", HUNG) == {report}
        assert sharing.visible_ids(conn, "report", MAI) == set()
        assert sharing.visible_ids(conn, "segment", HUNG) == set()  # kinds never mix
