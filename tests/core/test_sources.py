"""Sources and write keys stored in PostgreSQL, as the real gateway sees them through its
keyring, against the session's real PostgreSQL and Valkey."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from c360 import audit
from c360.adapters.bus import RAW_EVENTS
from c360.errors import InputError
from c360.events.model import decode_event
from c360.governance import sources
from c360.governance.keyring import VERSION_CHECK_S, Keyring, Snapshot, StoredKey

WRITE_KEY = "test-write-key-1"
ACTOR = "user:lan"


class FakeClock:
    """The keyring's monotonic clock, moved by the test instead of by waiting."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(client) -> FakeClock:
    """A fake clock under the app's keyring."""
    fake = FakeClock()
    state = client.app.state
    state["keyring"] = Keyring(state.runtime, state.valkey, clock=fake)
    return fake


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def send(client, key: str, message_id: str):
    body = {"batch": [{"type": "track", "userId": "u-1", "event": "E", "messageId": message_id}]}
    return client.post("/v1/batch", json=body, headers=basic(key))


def sources_of_events(runtime) -> dict[str, str]:
    return {e.message_id: e.source for e in map(decode_event, runtime.bus.read_all(RAW_EVENTS))}


def test_a_created_key_sends_events_as_its_source(client, runtime, clock):
    made = sources.create_source(runtime, "shop", ACTOR, description="the web shop")

    response = send(client, made.key, "m-1")

    assert response.status_code == 200, response.text
    assert sources_of_events(runtime) == {"m-1": "shop"}
    assert made.key.startswith(sources.KEY_PREFIX) and made.prefix == made.key[:15]


def test_the_key_is_stored_only_as_its_digest(runtime):
    made = sources.create_source(runtime, "shop", ACTOR)

    with runtime.pool.connection() as conn:
        row = conn.execute(
            "SELECT key_sha256, prefix FROM governance.write_keys WHERE key_id = %s",
            (made.key_id,),
        ).fetchone()
        dumped = conn.execute("SELECT string_agg(t::text, '') FROM governance.write_keys t")

    assert bytes(row[0]) == hashlib.sha256(made.key.encode()).digest()
    assert row[1] == made.prefix
    assert made.key not in dumped.fetchone()[0]


def test_settings_keys_keep_working_beside_stored_ones(client, runtime, clock):
    made = sources.create_source(runtime, "shop", ACTOR)

    assert send(client, WRITE_KEY, "m-settings").status_code == 200
    assert send(client, made.key, "m-stored").status_code == 200

    assert sources_of_events(runtime) == {"m-settings": "web", "m-stored": "shop"}


def test_a_revoked_key_is_refused_within_the_version_check_interval(client, runtime, clock):
    made = sources.create_source(runtime, "shop", ACTOR)
    assert send(client, made.key, "m-before").status_code == 200

    sources.revoke_key(runtime, "shop", made.key_id, ACTOR)
    # until its next look at the version the process answers from memory, not PostgreSQL
    clock.advance(VERSION_CHECK_S / 2)
    assert send(client, made.key, "m-cached").status_code == 200
    clock.advance(VERSION_CHECK_S / 2)
    response = send(client, made.key, "m-after")

    assert response.status_code == 401
    assert response.json()["code"] == "unknown_write_key"
    assert sources_of_events(runtime) == {"m-before": "shop", "m-cached": "shop"}


def test_a_key_in_the_body_is_checked_against_stored_keys_too(client, runtime, clock):
    made = sources.create_source(runtime, "shop", ACTOR)
    body = {"writeKey": made.key, "batch": [{"type": "track", "userId": "u", "event": "E"}]}

    assert client.post("/v1/batch", json=body).status_code == 200

    sources.revoke_key(runtime, "shop", made.key_id, ACTOR)
    clock.advance(VERSION_CHECK_S)
    assert client.post("/v1/batch", json=body).status_code == 401


def test_a_rotated_key_works_through_its_grace_period_beside_the_new_one(client, runtime, clock):
    first = sources.create_source(runtime, "shop", ACTOR)

    second = sources.rotate_key(runtime, "shop", ACTOR, grace=timedelta(hours=1))
    clock.advance(VERSION_CHECK_S)

    assert send(client, first.key, "m-old").status_code == 200
    assert send(client, second.key, "m-new").status_code == 200
    keys = {k.key_id: k for k in sources.get_source(runtime, "shop").keys}
    now = datetime.now(UTC)
    assert keys[first.key_id].state(now) == "expiring"
    assert keys[second.key_id].state(now) == "active"
    expected_end = keys[second.key_id].created_at + timedelta(hours=1)
    assert abs(keys[first.key_id].expires_at - expected_end) < timedelta(seconds=1)


def test_a_rotation_without_grace_ends_the_old_key_at_once(client, runtime, clock):
    first = sources.create_source(runtime, "shop", ACTOR)

    second = sources.rotate_key(runtime, "shop", ACTOR, grace=timedelta(0))
    clock.advance(VERSION_CHECK_S)

    assert send(client, first.key, "m-old").status_code == 401
    assert send(client, second.key, "m-new").status_code == 200


def test_a_key_past_its_grace_period_is_refused_by_the_request_clock():
    digest = sources.key_digest("c360wk_abc")
    ends = datetime(2026, 1, 1, tzinfo=UTC)
    snapshot = Snapshot(version=None, keys={digest: StoredKey("shop", "wk_1", ends)})

    assert snapshot.source_for("c360wk_abc", ends - timedelta(microseconds=1)) == "shop"
    assert snapshot.source_for("c360wk_abc", ends) is None
    assert snapshot.source_for("c360wk_other", ends - timedelta(days=1)) is None


def test_the_audit_log_holds_each_change_without_the_key(runtime):
    made = sources.create_source(runtime, "shop", ACTOR)
    rotated = sources.rotate_key(runtime, "shop", "user:minh", grace=timedelta(minutes=5))
    sources.revoke_key(runtime, "shop", made.key_id, ACTOR)

    with runtime.pool.connection() as conn:
        entries = audit.entries(conn, action_prefix="source.")

    assert [(e.action, e.actor, e.target) for e in reversed(entries)] == [
        ("source.create", ACTOR, "source:shop"),
        ("source.rotate", "user:minh", "source:shop"),
        ("source.revoke", ACTOR, "source:shop"),
    ]
    create, rotate, revoke = reversed(entries)
    assert create.after["key"] == {"key_id": made.key_id, "prefix": made.prefix}
    assert rotate.after["key"]["key_id"] == rotated.key_id
    assert rotate.before == {"keys": [{"key_id": made.key_id, "prefix": made.prefix}]}
    assert revoke.before["revoked_at"] is None and revoke.after["revoked_at"] is not None
    text = str([(e.before, e.after, e.detail) for e in entries])
    assert made.key not in text and rotated.key not in text


def test_revoking_twice_changes_nothing_the_second_time(runtime):
    made = sources.create_source(runtime, "shop", ACTOR)
    first = sources.revoke_key(runtime, "shop", made.key_id, ACTOR)

    second = sources.revoke_key(runtime, "shop", made.key_id, ACTOR)

    assert second.revoked_at == first.revoked_at
    with runtime.pool.connection() as conn:
        assert len(audit.entries(conn, action_prefix="source.revoke")) == 1


@pytest.mark.parametrize(
    "call, code, status",
    [
        (lambda rt: sources.create_source(rt, "shop", ACTOR), "source_exists", 409),
        (lambda rt: sources.create_source(rt, "  ", ACTOR), "invalid_source_name", 400),
        (lambda rt: sources.create_source(rt, "x" * 201, ACTOR), "invalid_source_name", 400),
        (lambda rt: sources.create_source(rt, "new", ACTOR, 5), "invalid_description", 400),
        (lambda rt: sources.rotate_key(rt, "nope", ACTOR), "unknown_source", 404),
        (
            lambda rt: sources.rotate_key(rt, "shop", ACTOR, grace=timedelta(days=31)),
            "invalid_grace",
            400,
        ),
        (
            lambda rt: sources.rotate_key(rt, "shop", ACTOR, grace=timedelta(seconds=-1)),
            "invalid_grace",
            400,
        ),
        (lambda rt: sources.revoke_key(rt, "shop", "wk_nope", ACTOR), "unknown_key", 404),
        (lambda rt: sources.revoke_key(rt, "nope", "wk_nope", ACTOR), "unknown_source", 404),
    ],
    ids=[
        "duplicate",
        "blank-name",
        "long-name",
        "bad-description",
        "rotate-unknown-source",
        "grace-too-long",
        "grace-negative",
        "revoke-unknown-key",
        "revoke-unknown-source",
    ],
)
def test_a_bad_request_is_an_input_error_that_changes_nothing(runtime, call, code, status):
    sources.create_source(runtime, "shop", ACTOR)

    with pytest.raises(InputError) as caught:
        call(runtime)

    assert (caught.value.code, caught.value.status_code) == (code, status)
    assert caught.value.message
    [shop] = sources.list_sources(runtime)
    assert len(shop.keys) == 1 and shop.keys[0].state(datetime.now(UTC)) == "active"
    with runtime.pool.connection() as conn:
        assert len(audit.entries(conn)) == 1


SCOPES = ["governance:read", "governance:write", "sources:write", "pipeline:read"]


@pytest.fixture
def api(runtime):
    """A test client of the app with this part's admin endpoints mounted, a fake clock under
    its keyring (`api.clock`), and the bearer headers of a scoped token `ops` allowed to use
    the endpoints."""
    from litestar.testing import TestClient

    from c360 import tokens
    from c360.api.app import create_app

    with runtime.pool.connection() as conn:
        token, _record = tokens.create_token(conn, "user:root", "ops", SCOPES)
    app = create_app(runtime.settings)
    with TestClient(app=app) as test_client:
        test_client.clock = FakeClock()
        state = app.state
        state["keyring"] = Keyring(state.runtime, state.valkey, clock=test_client.clock)
        test_client.headers["Authorization"] = f"Bearer {token}"
        yield test_client


def test_the_admin_endpoints_create_rotate_and_revoke_keys(api, runtime):
    created = api.post("/v1/admin/sources", json={"name": "shop", "description": "web"})
    assert created.status_code == 201, created.text
    first = created.json()
    assert send(api, first["key"], "m-1").status_code == 200

    rotated = api.post("/v1/admin/sources/shop/keys", json={"grace_seconds": 0})
    assert rotated.status_code == 201, rotated.text
    second = rotated.json()
    revoked = api.delete(f"/v1/admin/sources/shop/keys/{second['key_id']}")
    assert revoked.status_code == 200 and revoked.json()["state"] == "revoked"
    api.clock.advance(VERSION_CHECK_S)

    assert send(api, first["key"], "m-2").status_code == 401
    assert send(api, second["key"], "m-3").status_code == 401
    listed = api.get("/v1/admin/sources").json()["sources"]
    assert [(s["name"], sorted(k["state"] for k in s["keys"])) for s in listed] == [
        ("shop", ["expired", "revoked"])
    ]
    assert first["key"] not in str(listed) and second["key"] not in str(listed)
    with runtime.pool.connection() as conn:
        actors = {e.actor for e in audit.entries(conn, action_prefix="source.")}
    assert actors == {"token:ops"}


@pytest.mark.parametrize(
    "method, path, body, status, code",
    [
        ("post", "/v1/admin/sources", {"name": "shop", "colour": 1}, 400, "unknown_field"),
        ("post", "/v1/admin/sources", [1], 400, "invalid_body"),
        ("post", "/v1/admin/sources", {"name": "shop"}, 409, "source_exists"),
        ("post", "/v1/admin/sources/nope/keys", {}, 404, "unknown_source"),
        ("post", "/v1/admin/sources/shop/keys", {"grace_seconds": "1h"}, 400, "invalid_grace"),
        ("delete", "/v1/admin/sources/shop/keys/wk_nope", None, 404, "unknown_key"),
    ],
)
def test_a_bad_admin_request_is_answered_with_its_code(
    api, runtime, method, path, body, status, code
):
    sources.create_source(runtime, "shop", ACTOR)
    kwargs = {"json": body} if body is not None else {}

    response = getattr(api, method)(path, **kwargs)

    assert response.status_code == status, response.text
    assert response.json()["code"] == code


def test_the_admin_endpoints_refuse_a_request_without_credentials(api, runtime):
    del api.headers["Authorization"]

    response = api.post("/v1/admin/sources", json={"name": "shop"})

    assert response.status_code == 401
    assert sources.list_sources(runtime) == []


def test_without_postgresql_the_keyring_is_empty_and_settings_keys_still_work(runtime):
    import asyncio
    import dataclasses

    import redis.asyncio as aioredis

    from c360.api.gateway import RequestKeys
    from c360.runtime import Runtime

    sources.create_source(runtime, "shop", ACTOR)
    # nothing listens on port 1 of this machine: the connection is refused at once
    down = dataclasses.replace(runtime.settings, postgres_dsn="postgresql://127.0.0.1:1/c360")

    async def look() -> Snapshot:
        valkey = aioredis.Redis.from_url(runtime.settings.valkey_url)
        try:
            return await Keyring(Runtime(down), valkey, clock=FakeClock()).snapshot()
        finally:
            await valkey.aclose()

    snapshot = asyncio.run(look())

    assert snapshot.keys == {} and snapshot.plans == {}
    keys = RequestKeys(runtime.settings.write_keys, snapshot, datetime.now(UTC))
    assert keys.source_for(WRITE_KEY) == "web"
    with pytest.raises(InputError) as caught:
        keys.source_for("c360wk_unknown")
    assert caught.value.code == "unknown_write_key"


@pytest.mark.parametrize(
    "name, shown",
    [
        ("a/b", "hold /"),
        ("a\\b", "hold \\"),
        ("why?", "hold ?"),
        ("web#2", "hold #"),
        ("50%off", "hold %"),
        ("..", "be `.` or `..`"),
        (".", "be `.` or `..`"),
    ],
)
def test_a_source_name_that_would_break_its_url_path_is_refused(runtime, name, shown):
    with pytest.raises(InputError) as caught:
        sources.create_source(runtime, name, ACTOR)

    assert caught.value.code == "invalid_source_name"
    assert f"cannot {shown} " in caught.value.message
    assert sources.list_sources(runtime) == []


@pytest.mark.parametrize("name", ["a\x00b", "tab\there", "line\nbreak", "del\x7f"])
def test_a_source_name_with_control_characters_is_refused(runtime, name):
    with pytest.raises(InputError) as caught:
        sources.create_source(runtime, name, ACTOR)

    assert caught.value.code == "invalid_source_name"
    assert sources.list_sources(runtime) == []


def test_the_breakers_slash_name_is_refused_through_the_api(api, runtime):
    response = api.post("/v1/admin/sources", json={"name": "a/b"})

    assert response.status_code == 400, response.text
    assert response.json()["code"] == "invalid_source_name"
    assert sources.list_sources(runtime) == []


def test_an_accepted_name_can_be_rotated_and_revoked_through_its_path(api, runtime):
    created = api.post("/v1/admin/sources", json={"name": "web shop.v2"})
    assert created.status_code == 201, created.text

    rotated = api.post("/v1/admin/sources/web%20shop.v2/keys", json={"grace_seconds": 0})
    assert rotated.status_code == 201, rotated.text
    key_id = rotated.json()["key_id"]
    revoked = api.delete(f"/v1/admin/sources/web%20shop.v2/keys/{key_id}")

    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["state"] == "revoked"


def run_on_keyring(runtime, steps):
    """Run `steps(keyring)` on a keyring with a clock that never moves, in its own loop."""
    import asyncio

    import redis.asyncio as aioredis

    async def main():
        valkey = aioredis.Redis.from_url(runtime.settings.valkey_url)
        try:
            return await steps(Keyring(runtime, valkey, clock=FakeClock()))
        finally:
            await valkey.aclose()

    return asyncio.run(main())


def test_a_recheck_knows_a_key_made_after_the_last_snapshot(runtime):
    now = datetime.now(UTC)

    async def steps(keyring):
        await keyring.snapshot()
        made = sources.create_source(runtime, "shop", ACTOR)
        # the clock has not moved: the snapshot is what it was, and does not know the key
        before = (await keyring.snapshot()).source_for(made.key, now)
        after = (await keyring.recheck()).source_for(made.key, now)
        return before, after

    assert run_on_keyring(runtime, steps) == (None, "shop")


def test_a_flood_of_unknown_keys_shares_one_recheck(runtime, monkeypatch):
    import asyncio

    from c360.governance import keyring as keyring_module

    loads = []
    real_load = keyring_module.load

    def counted_load(*args):
        loads.append(args[1])
        return real_load(*args)

    monkeypatch.setattr(keyring_module, "load", counted_load)
    now = datetime.now(UTC)

    async def steps(keyring):
        await keyring.snapshot()
        made = sources.create_source(runtime, "shop", ACTOR)
        snapshots = await asyncio.gather(*(keyring.recheck() for _ in range(50)))
        return made, snapshots

    made, snapshots = run_on_keyring(runtime, steps)

    # one load at the start, one for the version the creation bumped: not one per request
    assert len(loads) == 2
    assert {snapshot.source_for(made.key, now) for snapshot in snapshots} == {"shop"}


def test_a_created_key_works_as_soon_as_the_creation_returns(client, runtime, clock):
    assert send(client, WRITE_KEY, "m-settings").status_code == 200  # the keyring has loaded

    made = sources.create_source(runtime, "shop", ACTOR)
    rotated = sources.rotate_key(runtime, "shop", ACTOR)

    # the clock has not moved: no scheduled version check has happened since the key was made
    assert send(client, made.key, "m-made").status_code == 200
    assert send(client, rotated.key, "m-rotated").status_code == 200
    assert sources_of_events(runtime) == {
        "m-settings": "web",
        "m-made": "shop",
        "m-rotated": "shop",
    }
