"""F5 over HTTP: profile reads by any identifier, listing with filters, bearer-token auth."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from c360.events.f1 import IngestContext, ParsedRequest, ingest
from c360.events.model import encode
from c360.stages import f2_persist, f3_resolve

TOKEN = {"Authorization": "Bearer test-api-token"}
RECEIVED = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def run(runtime, *events: dict, source: str = "web") -> None:
    ctx = IngestContext(source=source, received_at=RECEIVED)
    result = ingest(
        ParsedRequest(events=[encode(e) for e in events]), ctx, runtime.settings, runtime.hooks
    )
    assert not result.rejected, result.rejected
    f2_persist.persist(runtime, [encode(e) for e in result.accepted])
    f3_resolve.resolve(runtime, [encode([e.source, e.message_id]) for e in result.accepted])


def order(message_id: str, user: str, revenue: str, day: int = 1) -> dict:
    return {
        "type": "track",
        "event": "Order Completed",
        "userId": user,
        "messageId": message_id,
        "timestamp": f"2026-02-{day:02d}T10:00:00Z",
        "properties": {"revenue": revenue},
    }


@pytest.fixture
def lan(runtime) -> str:
    """One customer with a userId, an email, a Vietnamese phone and an order; her profile id."""
    run(
        runtime,
        {
            "type": "identify",
            "userId": "u-lan",
            "anonymousId": "a-lan",
            "messageId": "m-1",
            "timestamp": "2026-02-01T09:00:00Z",
            "traits": {"email": " Lan@Example.VN ", "phone": "0912 345 678", "name": "Trần Lan"},
        },
        order("m-2", "u-lan", "19.99"),
    )
    with runtime.pool.connection() as conn:
        (profile_id,) = conn.execute("SELECT profile_id FROM profiles").fetchone()
    return str(profile_id)


@pytest.mark.parametrize(
    "reference",
    [
        "u-lan",
        "lan@example.vn",
        "LAN@Example.vn",
        "+84912345678",
        "%2B84912345678",
        "0912345678",
        "a-lan",
        "user_id:u-lan",
        "email:Lan@Example.VN",
        "phone:0912 345 678",
        "anonymous_id:a-lan",
    ],
)
def test_a_profile_is_found_by_any_of_its_identifiers(client, lan, reference):
    response = client.get(f"/v1/profiles/{reference}", headers=TOKEN)

    assert response.status_code == 200, response.text
    profile = response.json()
    assert profile["profile_id"] == lan
    assert profile["order_count"] == 1
    assert Decimal(str(profile["revenue"])) == Decimal("19.99")
    assert profile["traits"]["name"] == "Trần Lan"


def test_a_profile_is_found_by_its_uuid(client, lan):
    response = client.get(f"/v1/profiles/{lan}", headers=TOKEN)

    assert response.status_code == 200
    assert response.json()["profile_id"] == lan


def test_a_profile_is_read_from_the_database_when_the_cache_is_empty(client, runtime, lan):
    runtime.valkey.flushall()

    response = client.get("/v1/profiles/lan@example.vn", headers=TOKEN)

    assert response.status_code == 200
    assert response.json()["profile_id"] == lan
    assert runtime.cache.get(lan) is not None


def test_the_profile_lists_its_identifiers_normalised_with_raw_values(client, lan):
    profile = client.get("/v1/profiles/u-lan", headers=TOKEN).json()

    found = {(i["type"], i["value"], i["raw"]) for i in profile["identifiers"]}
    assert found == {
        ("user_id", "u-lan", "u-lan"),
        ("anonymous_id", "a-lan", "a-lan"),
        ("email", "lan@example.vn", " Lan@Example.VN "),
        ("phone", "+84912345678", "0912 345 678"),
    }


def test_an_unknown_profile_gets_404_json(client, lan):
    response = client.get("/v1/profiles/nobody@example.vn", headers=TOKEN)

    assert response.status_code == 404
    payload = response.json()
    assert set(payload) == {"code", "message"}
    assert payload["code"] == "not_found"


def test_an_unknown_profile_uuid_gets_404_json(client, lan):
    response = client.get("/v1/profiles/00000000-0000-4000-8000-000000000000", headers=TOKEN)

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic dGVzdC1hcGktdG9rZW46"}],
    ids=["none", "wrong-token", "basic"],
)
def test_profiles_need_the_bearer_token(client, lan, headers):
    for path in ("/v1/profiles/u-lan", "/v1/profiles"):
        response = client.get(path, headers=headers)

        assert response.status_code == 401
        # a route sessions can use also hands out the CSRF token a browser signs in with
        assert set(response.json()) == {"code", "message", "csrf_token"}
        assert "profile_id" not in response.text


def test_a_profile_merged_away_is_answered_by_the_surviving_profile(client, runtime):
    run(runtime, {"type": "identify", "userId": "u-1", "messageId": "m-1"})
    run(runtime, {"type": "page", "anonymousId": "a-1", "messageId": "m-2"})
    with runtime.pool.connection() as conn:
        (anonymous,) = conn.execute(
            "SELECT profile_id FROM events WHERE message_id = 'm-2'"
        ).fetchone()
    assert client.get(f"/v1/profiles/{anonymous}", headers=TOKEN).json()["event_count"] == 1

    run(runtime, {"type": "identify", "userId": "u-1", "anonymousId": "a-1", "messageId": "m-3"})

    survivor = client.get("/v1/profiles/u-1", headers=TOKEN).json()
    by_old_id = client.get(f"/v1/profiles/{anonymous}", headers=TOKEN).json()
    assert by_old_id["profile_id"] == survivor["profile_id"]
    assert by_old_id["event_count"] == 3


# --- listing --------------------------------------------------------------------------------

#: user -> order amounts; the expected figures below are worked out from this by hand.
ORDERS = {
    "u-a": ["100.00", "50.00"],  # 2 orders, 150.00
    "u-b": ["10.00"],  # 1 order, 10.00
    "u-c": ["30.00", "30.00", "30.00"],  # 3 orders, 90.00
    "u-d": [],  # no orders
}


@pytest.fixture
def shop(runtime) -> None:
    events = [
        order(f"{user}-{n}", user, amount, day=n + 1)
        for user, amounts in ORDERS.items()
        for n, amount in enumerate(amounts)
    ]
    events.append({"type": "identify", "userId": "u-d", "messageId": "u-d-id"})
    run(runtime, *events)


def listed(client, **params) -> list[tuple[str, int, Decimal]]:
    response = client.get("/v1/profiles", params=params, headers=TOKEN)
    assert response.status_code == 200, response.text
    return [
        (
            next(i["value"] for i in p["identifiers"] if i["type"] == "user_id"),
            p["order_count"],
            Decimal(str(p["revenue"])),
        )
        for p in response.json()["profiles"]
    ]


def test_profiles_are_listed_by_revenue_by_default(client, shop):
    assert listed(client) == [
        ("u-a", 2, Decimal("150")),
        ("u-c", 3, Decimal("90")),
        ("u-b", 1, Decimal("10")),
        ("u-d", 0, Decimal("0")),
    ]


def test_profiles_are_filtered_by_minimum_orders(client, shop):
    assert [user for user, *_ in listed(client, min_orders=2)] == ["u-a", "u-c"]


def test_profiles_are_filtered_by_minimum_revenue(client, shop):
    assert [user for user, *_ in listed(client, min_revenue="90.00")] == ["u-a", "u-c"]
    assert [user for user, *_ in listed(client, min_revenue="90.01")] == ["u-a"]


def test_profiles_can_be_ordered_by_orders(client, shop):
    assert [user for user, *_ in listed(client, order_by="orders")] == ["u-c", "u-a", "u-b", "u-d"]


def test_profiles_are_paged_by_limit_and_offset(client, shop):
    assert [user for user, *_ in listed(client, limit=2)] == ["u-a", "u-c"]
    assert [user for user, *_ in listed(client, limit=2, offset=2)] == ["u-b", "u-d"]
    assert listed(client, offset=10) == []


@pytest.mark.parametrize(
    "params",
    [
        {"min_orders": "many"},
        {"min_revenue": "lots"},
        {"min_revenue": "NaN"},
        {"min_revenue": "Infinity"},
        {"min_revenue": "1e999999999"},
        {"order_by": "name"},
        {"limit": "0"},
        {"limit": "5000"},
        {"limit": "ten"},
        {"offset": "-1"},
        {"seen_after": "last tuesday"},
    ],
)
def test_bad_filter_values_get_400_json(client, shop, params):
    response = client.get("/v1/profiles", params=params, headers=TOKEN)

    assert response.status_code == 400, response.text
    payload = response.json()
    assert set(payload) == {"code", "message"}
    assert payload["message"]


def test_profiles_are_read_from_postgresql_when_the_cache_is_unreachable(runtime, lan, tmp_path):
    import dataclasses
    import socket

    from litestar.testing import TestClient

    from c360.api.app import create_app

    closed = tmp_path / "closed.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(closed))
    listener.close()
    settings = dataclasses.replace(runtime.settings, valkey_url=f"unix://{closed}")

    with TestClient(app=create_app(settings)) as offline:
        one = offline.get("/v1/profiles/lan@example.vn", headers=TOKEN)
        many = offline.get("/v1/profiles", headers=TOKEN)

    assert one.status_code == 200, one.text
    assert one.json()["profile_id"] == lan
    assert many.status_code == 200, many.text
    assert [p["profile_id"] for p in many.json()["profiles"]] == [lan]


def test_a_reference_with_nul_matches_the_id_stored_with_a_replacement(client, runtime):
    run(runtime, {"type": "identify", "userId": "u7\x00x", "messageId": "m-nul"})

    response = client.get("/v1/profiles/u7%00x", headers=TOKEN)

    assert response.status_code == 200, response.text
    assert any(i["value"] == "u7\ufffdx" for i in response.json()["identifiers"])


@pytest.mark.parametrize("reference", ["%00", "%ED%A0%80", "x" * 3000, "email:", "profile_id:zz"])
def test_odd_references_get_404_not_500(client, lan, reference):
    assert client.get(f"/v1/profiles/{reference}", headers=TOKEN).status_code == 404


def test_a_profile_id_prefix_works_like_the_bare_uuid(client, lan):
    response = client.get(f"/v1/profiles/profile_id:{lan}", headers=TOKEN)

    assert response.status_code == 200 and response.json()["profile_id"] == lan


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"offset": "99999999999999999999"}, "10,000,000"),
        ({"min_orders": "99999999999999999999"}, "1,000,000,000"),
        ({"limt": "5"}, "min_orders, min_revenue, seen_after, order_by, limit, offset"),
        ({"seen_after": "01/03/2026"}, "2026-03-01T00:00:00Z"),
    ],
)
def test_bad_list_parameters_get_400_saying_what_is_expected(client, shop, params, words):
    response = client.get("/v1/profiles", params=params, headers=TOKEN)

    assert response.status_code == 400, response.text
    assert words in response.json()["message"]


def test_seen_after_takes_a_plain_date_as_midnight_utc(client, shop):
    # last seen: u-c Feb 3 10:00, u-a Feb 2, u-b Feb 1, u-d on receipt (Mar 1, no timestamp)
    assert sorted(u for u, *_ in listed(client, seen_after="2026-02-03")) == ["u-c", "u-d"]


def test_money_reads_the_same_from_the_single_and_the_list_endpoint(client, runtime):
    run(runtime, order("m-big", "u-big", "13990.93"))

    listed_doc = client.get("/v1/profiles", headers=TOKEN).json()["profiles"][0]
    first = client.get("/v1/profiles/u-big", headers=TOKEN)  # from PostgreSQL, then cached
    cached = client.get("/v1/profiles/u-big", headers=TOKEN)

    assert b'"revenue":13990.93' in cached.content
    assert first.json() == cached.json() == listed_doc


# TODO(path ids): an id that starts or ends with "/" or holds "//" still 404s, as the router
# normalises those slashes away; it needs a lookup that does not go through the path.
@pytest.mark.parametrize("user", ["x/y", "a/b?c#d"])
def test_an_id_with_slashes_or_url_signs_can_be_read_back(client, runtime, user):
    from urllib.parse import quote

    run(runtime, order("m-slash", user, "5.00"))

    response = client.get(f"/v1/profiles/{quote(user, safe='')}", headers=TOKEN)
    typed = client.get(f"/v1/profiles/{quote('user_id:' + user, safe='')}", headers=TOKEN)

    assert response.status_code == 200, response.text
    assert typed.status_code == 200, typed.text
    assert {i["value"] for i in response.json()["identifiers"]} == {user}


@pytest.mark.parametrize("failure", ["operational", "pool_timeout"])
def test_a_store_out_of_reach_is_a_503_with_retry_after_not_a_500(client, monkeypatch, failure):
    import psycopg
    import psycopg_pool

    from c360.api import profiles

    def unreachable(runtime, reference):
        if failure == "operational":
            raise psycopg.OperationalError("connection to server at 127.0.0.1 failed")
        raise psycopg_pool.PoolTimeout("couldn't get a connection after 10.00 sec")

    monkeypatch.setattr(profiles, "get_profile", unreachable)

    response = client.get("/v1/profiles/u-1", headers=TOKEN)

    assert response.status_code == 503
    assert response.json()["code"] == "store_unavailable"
    assert int(response.headers["retry-after"]) > 0


def test_profiles_can_be_listed_for_the_customers_one_source_reached(runtime):
    from c360.profile_service import ProfileFilter, list_profiles

    run(runtime, order("w-1", "web-big", "900"), order("w-2", "both", "5"))
    run(runtime, order("c-1", "cdnow-1", "10"), order("c-2", "both", "1"), source="cdnow")

    listed = list_profiles(runtime, ProfileFilter(source="cdnow"))

    assert sorted(doc["revenue"] for doc in listed) == [Decimal("6"), Decimal("10")]
