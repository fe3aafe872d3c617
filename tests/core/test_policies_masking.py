"""Access policies and PII masking on the real store: a role without access sees masked
values in the profile API, an allowed one sees them unmasked, and that read is audited."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from litestar import Litestar, Request, Response
from litestar.datastructures import State
from litestar.testing import TestClient

from c360 import audit
from c360.access import BUILT_IN_ROLES, Principal
from c360.api.profiles import read_profile, read_profiles
from c360.errors import InputError
from c360.events.f1 import IngestContext, ParsedRequest, ingest
from c360.events.model import encode
from c360.governance import attributes, f0, policies
from c360.stages import f2_persist, f3_resolve

API_TOKEN = "test-api-token"  # tests/conftest.py's settings token


def principal(role: str) -> Principal:
    return Principal(
        kind="user", name=f"{role}1", role=role, permissions=frozenset(BUILT_IN_ROLES[role])
    )


def run(runtime, *events: dict) -> None:
    ctx = IngestContext(source="web", received_at=datetime(2026, 3, 1, tzinfo=UTC))
    result = ingest(
        ParsedRequest(events=[encode(e) for e in events]), ctx, runtime.settings, runtime.hooks
    )
    assert not result.rejected, result.rejected
    f2_persist.persist(runtime, [encode(event) for event in result.accepted])
    f3_resolve.resolve(runtime, [encode(["web", e.message_id]) for e in result.accepted])


LAN = {
    "type": "identify",
    "messageId": "i1",
    "userId": "u-lan",
    "timestamp": "2026-02-01T10:00:00Z",
    "traits": {
        "email": "lan.nguyen@example.vn",
        "phone": "+84 901 234 678",
        "firstName": "Nguyễn Thị",
        "address": {"city": "Hà Nội", "street": "1 Tràng Tiền"},
        "plan": "gold",
    },
}


def app_as(runtime, who: Principal | None) -> Litestar:
    """The profile routes behind a stand-in for the auth middleware that sets the principal."""

    def as_user(app):
        async def middleware(scope, receive, send):
            if who is not None:
                scope["user"] = who
            await app(scope, receive, send)

        return middleware

    return Litestar(
        route_handlers=[read_profile, read_profiles],
        state=State({"runtime": runtime, "settings": runtime.settings}),
        middleware=[as_user],
        exception_handlers={InputError: _input_error},
    )


def _input_error(request: Request, exc: InputError) -> Response:
    return Response({"code": exc.code, "message": exc.message}, status_code=exc.status_code)


def get(runtime, who: Principal | None, path: str, token: str | None = None) -> dict:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with TestClient(app=app_as(runtime, who)) as client:
        response = client.get(path, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def pii_reads(runtime) -> list[audit.AuditEntry]:
    with runtime.pool.connection() as conn:
        return audit.entries(conn, action_prefix="pii.")


def test_a_marketer_sees_masked_values_with_the_shape_kept(runtime):
    run(runtime, LAN)
    doc = get(runtime, principal("marketer"), "/v1/profiles/u-lan")
    traits = doc["traits"]
    assert traits["email"] == "l***@example.vn"
    assert traits["phone"] == "+84 *** *** 678"
    assert traits["firstName"] == "N. T."
    assert traits["address"] == {"city": "***", "street": "***"}
    assert traits["plan"] == "gold"  # not personal data
    by_type = {i["type"]: i for i in doc["identifiers"]}
    assert by_type["email"]["value"] == "l***@example.vn"
    assert by_type["user_id"]["value"] == "***"
    assert pii_reads(runtime) == []  # nothing personal was shown


def test_an_admin_sees_everything_and_the_read_is_audited(runtime):
    run(runtime, LAN)
    doc = get(runtime, principal("admin"), "/v1/profiles/u-lan")
    assert doc["traits"]["email"] == "lan.nguyen@example.vn"
    (entry,) = pii_reads(runtime)
    assert entry.actor == "user:admin1"
    # the route, never the email or phone a caller looked the profile up by
    assert entry.target == "api:/v1/profiles/{reference:path}"
    assert entry.detail["profiles"] == [doc["profile_id"]]
    assert {"email", "phone", "name", "address", "id_email", "id_user_id"} <= set(
        entry.detail["fields"]
    )


def test_an_analyst_needs_a_policy_as_well_as_pii_read(runtime):
    run(runtime, LAN)
    analyst = principal("analyst")
    assert get(runtime, analyst, "/v1/profiles/u-lan")["traits"]["email"] == "l***@example.vn"

    with runtime.pool.connection() as conn:
        policies.set_policies(conn, "user:root", "analyst", {"email": True, "id_email": True})
    doc = get(runtime, analyst, "/v1/profiles?limit=5")["profiles"][0]
    assert doc["traits"]["email"] == "lan.nguyen@example.vn"
    assert doc["traits"]["phone"] == "+84 *** *** 678"
    (entry,) = pii_reads(runtime)
    assert entry.detail["fields"] == ["email", "id_email"]
    assert entry.target == "api:/v1/profiles"


def test_a_policy_can_take_pii_from_the_admin_role(runtime):
    run(runtime, LAN)
    with runtime.pool.connection() as conn:
        policies.set_policies(conn, "user:root", "admin", {"*pii*": True, "phone": False})
    doc = get(runtime, principal("admin"), "/v1/profiles/u-lan")
    assert doc["traits"]["phone"] == "+84 *** *** 678"
    assert doc["traits"]["email"] == "lan.nguyen@example.vn"


def test_the_settings_token_still_reads_profiles_unmasked(runtime):
    run(runtime, LAN)
    doc = get(runtime, None, "/v1/profiles/u-lan", token=API_TOKEN)
    assert doc["traits"]["email"] == "lan.nguyen@example.vn"
    (entry,) = pii_reads(runtime)
    assert entry.actor == "token:settings"


def test_a_pii_defined_attribute_is_masked_too(runtime):
    with runtime.pool.connection() as conn:
        attributes.create_definition(
            conn,
            "user:root",
            {"name": "home_city", "type": "text", "source": "trait", "trait": "city", "pii": True},
        )
    f0.sync(runtime, "user:root")
    run(runtime, {**LAN, "traits": {"city": "Huế"}})
    with runtime.pool.connection() as conn:
        (doc,) = f3_resolve.load_documents(
            conn, [conn.execute("SELECT profile_id FROM profiles").fetchone()[0]]
        )
    masked, shown = policies.mask_profile(runtime, principal("marketer"), doc)
    assert masked["attributes"]["home_city"] == "***" and shown == []
    _, shown = policies.mask_profile(runtime, principal("admin"), doc)
    assert "home_city" in shown


def test_policies_refuse_what_is_not_pii_or_not_a_role(runtime):
    with runtime.pool.connection() as conn:
        for role, rules, code in [
            ("analyst", {"revenue": True}, "unknown_pii_attribute"),
            ("analyst", {"email": "yes"}, "invalid_policy"),
            ("nobody", {"email": True}, "unknown_role"),
        ]:
            with pytest.raises(InputError) as error:
                policies.set_policies(conn, "user:root", role, rules)
            assert error.value.code == code
        policies.set_policies(conn, "user:root", "analyst", {"email": True})
        (change,) = audit.entries(conn, action_prefix="policy.")
    assert change.after == {"email": True} and change.target == "role:analyst"


def test_the_maskers_keep_what_is_not_personal():
    assert policies.mask_email("x@y.z") == "x***@y.z"
    assert policies.mask_email("no-at-sign") == "***"
    assert policies.mask_phone("0901234567") == "*** *** 567"
    assert policies.mask_phone("12") == "***"
    assert policies.mask_name("Lan") == "L."
    assert policies.mask_text([1, {"a": None}]) == ["***", {"a": None}]
