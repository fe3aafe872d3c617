"""The agents admin API over HTTP behind the accounts guard: personas as versioned data (every
change a new version, one active, audited), their validation errors, conversations and the
escalation queue, the permission each route needs, and audited reads of conversation texts."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from agent_world import inbound, make_lan
from litestar.testing import TestClient

from c360 import audit, tokens
from c360.agents import service
from c360.api.app import create_app


@pytest.fixture
def api(runtime) -> Iterator[TestClient]:
    with TestClient(app=create_app(runtime.settings)) as client:

        def bearer(label: str, scopes: list[str]) -> dict[str, str]:
            with runtime.pool.connection() as conn:
                token, _ = tokens.create_token(conn, "user:root", label, scopes)
            return {"Authorization": f"Bearer {token}"}

        client.bearer = bearer
        yield client


def test_personas_start_built_in_and_every_change_is_a_new_active_version(runtime, api):
    reader = api.bearer("reader", ["agents:read"])
    writer = api.bearer("writer", ["agents:read", "agents:write"])

    listed = api.get("/v1/agents/personas", headers=reader).json()["personas"]
    first = api.put(
        "/v1/agents/personas/shop-vi", json={"name": "Linh", "languages": ["vi"]}, headers=writer
    )
    second = api.put("/v1/agents/personas/shop-vi", json={"tone": "vui vẻ"}, headers=writer)
    read = api.get("/v1/agents/personas/shop-vi", headers=reader).json()

    assert [(p["agent"], p["version"]) for p in listed] == [("default", 0)]
    assert first.status_code == 200 and first.json()["version"] == 1
    assert second.json()["version"] == 2
    # fields left out keep their values; the new version is the active one
    assert read["active"]["name"] == "Linh" and read["active"]["tone"] == "vui vẻ"
    assert read["active"]["languages"] == ["vi"]
    assert [(v["version"], v["active"]) for v in read["versions"]] == [(2, True), (1, False)]
    with runtime.pool.connection() as conn:
        changes = audit.entries(conn, action_prefix="persona.")
    assert [(e.actor, e.target) for e in changes] == [("token:writer", "agent:shop-vi")] * 2
    # a new agent starts from the built-in persona's values
    assert changes[1].before["tone"] == "warm, brief and precise"
    assert changes[0].before["tone"] == "warm, brief and precise"
    assert changes[0].after["tone"] == "vui vẻ"


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"languages": ["fr"]}, "languages must be a non-empty list of en, vi"),
        ({"allowed_topics": ["weather"]}, "allowed_topics must be a list of intents"),
        ({"escalation": {"low_confidence_turns": 99}}, "from 0 (off) to 10"),
        ({"opening_hours": {"timezone": "Mars/Olympus"}}, "is not a time zone name"),
        ({"opening_hours": {"from": "8am"}}, "opening_hours.from must be 'HH:MM'"),
        ({"greeting": {"fr": "Bonjour"}}, "greeting must map a language"),
        ({"nmae": "typo"}, "unknown field nmae"),
        ([1, 2], "send a JSON object"),
        ({"name": ""}, "name must be a non-empty text"),
    ],
)
def test_a_bad_persona_is_refused_naming_the_field(api, body, says):
    writer = api.bearer("writer", ["agents:write"])

    answer = api.put("/v1/agents/personas/default", json=body, headers=writer)

    assert answer.status_code == 400
    assert says in answer.json()["message"]


def test_a_bad_agent_name_is_refused(api):
    writer = api.bearer("writer", ["agents:write"])

    answer = api.put("/v1/agents/personas/Shop%20VI", json={"name": "x"}, headers=writer)

    assert answer.status_code == 400
    assert "lower-case letters" in answer.json()["message"]


def test_each_route_needs_its_permission(runtime, api):
    reader = api.bearer("reader", ["agents:read"])
    nobody = api.bearer("nobody", ["dashboards:read"])

    assert api.get("/v1/agents/personas", headers=nobody).status_code == 403
    assert api.get("/v1/agents/conversations", headers=nobody).status_code == 403
    assert api.put("/v1/agents/personas/x", json={"name": "x"}, headers=reader).status_code == 403
    assert api.post("/v1/agents/escalations/1/take", headers=reader).status_code == 403
    reply = api.post("/v1/agents/conversations/x/reply", json={"text": "hi"}, headers=reader)
    assert reply.status_code == 403
    assert api.post("/v1/agents/conversations/x/handback", headers=reader).status_code == 403
    assert api.get("/v1/agents/escalations").status_code == 401


def test_conversations_list_without_texts_and_a_read_is_audited(runtime, api, monkeypatch):
    lan = make_lan(runtime)
    [reply] = service.converse(runtime, inbound("Xin chào"))
    service.converse(runtime, inbound("Cho tôi gặp nhân viên"))
    conversation_id = reply.metadata["conversation_id"]
    reader = api.bearer("ops", ["agents:read"])

    listed = api.get("/v1/agents/conversations?status=escalated", headers=reader).json()
    one = api.get(f"/v1/agents/conversations/{conversation_id}", headers=reader).json()
    queue = api.get("/v1/agents/escalations", headers=reader).json()["escalations"]

    [row] = listed["conversations"]
    assert row["conversation_id"] == conversation_id and row["turn_count"] == 4
    assert "address" not in row and "context" not in row
    assert [t["text"] for t in one["turns"]][0::2] == ["Xin chào", "Cho tôi gặp nhân viên"]
    # what she wrote is shown; who she is, masked for a reader without pii:read
    assert one["status"] == "escalated" and one["context"]["name"] == "L."
    assert one["context"]["emails"] == ["l***@example.vn"]
    assert one["context"]["phones"] == ["+84 *** *** 567"]
    allowed = api.bearer("dpo", ["agents:read", "pii:read"])
    unmasked = api.get(f"/v1/agents/conversations/{conversation_id}", headers=allowed).json()
    assert unmasked["context"]["name"] == "Lan"
    assert unmasked["context"]["emails"] == ["lan@example.vn"]
    assert [(e["conversation_id"], e["reason"]) for e in queue] == [
        (conversation_id, "human_request")
    ]
    with runtime.pool.connection() as conn:
        reads = audit.entries(conn, action_prefix="pii.read")
    read = next(entry for entry in reads if entry.actor == "token:ops")
    assert "conversation:name" not in read.detail["fields"]
    dpo = next(entry for entry in reads if entry.actor == "token:dpo")
    assert {"conversation:name", "conversation:id_email"} <= set(dpo.detail["fields"])
    assert read.detail["profiles"] == [lan["profile_id"]]
    assert "conversation.turns" in read.detail["fields"]


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("/v1/agents/conversations?status=lost", "status must be open, escalated, closed"),
        ("/v1/agents/conversations?limit=0", "limit must be a whole number from 1"),
        ("/v1/agents/conversations?limit=ten", "limit must be a whole number"),
        ("/v1/agents/conversations?colour=red", "unknown query parameter colour"),
        ("/v1/agents/escalations?status=done", "status must be queued, taken, answered, closed"),
        ("/v1/agents/conversations/not-an-id", "no conversation has id 'not-an-id'"),
    ],
)
def test_bad_queries_say_what_to_change(api, path, says):
    reader = api.bearer("reader", ["agents:read"])

    answer = api.get(path, headers=reader)

    assert answer.status_code in (400, 404)
    assert says in answer.json()["message"]


def test_taking_an_unknown_escalation_is_a_404(api):
    operator = api.bearer("ops", ["agents:operate"])

    answer = api.post("/v1/agents/escalations/999/take", headers=operator)

    assert answer.status_code == 404
    assert "no escalation has id 999" in answer.json()["message"]


def test_a_second_hand_back_changes_nothing_and_says_so(runtime, api):
    make_lan(runtime)
    [told] = service.converse(runtime, inbound("Cho tôi gặp nhân viên"))
    conversation_id = told.metadata["conversation_id"]
    operator = api.bearer("operator", ["agents:read", "agents:operate"])
    url = f"/v1/agents/conversations/{conversation_id}/handback"

    first = api.post(url, headers=operator)
    second = api.post(url, headers=operator)

    assert first.status_code == 200
    assert second.status_code == 409
    assert "not with an operator" in second.json()["message"]
    with runtime.pool.connection() as conn:
        [system_turns] = conn.execute(
            "SELECT count(*) FROM agents.turns WHERE role = 'system' AND conversation_id = %s",
            (conversation_id,),
        ).fetchone()
    assert system_turns == 1


def test_a_persona_change_that_changes_nothing_is_refused(runtime, api):
    writer = api.bearer("writer", ["agents:read", "agents:write"])
    url = "/v1/agents/personas/default"

    empty = api.put(url, json={}, headers=writer)
    made = api.put(url, json={"name": "Mai"}, headers=writer)
    same = api.put(url, json={"name": "Mai"}, headers=writer)
    read = api.get(url, headers=writer).json()

    assert empty.status_code == 400 and "send at least one of name" in empty.json()["message"]
    assert made.status_code == 200
    assert same.status_code == 400 and "nothing to change" in same.json()["message"]
    # the refused changes stored no version: only the one that changed the name
    assert [v["version"] for v in read["versions"]] == [1]


def test_an_unknown_persona_is_not_found(api):
    reader = api.bearer("reader", ["agents:read"])

    missing = api.get("/v1/agents/personas/nope", headers=reader)
    built_in = api.get("/v1/agents/personas/default", headers=reader)

    assert missing.status_code == 404
    assert "PUT /v1/agents/personas/nope" in missing.json()["message"]
    assert built_in.status_code == 200


def test_the_gateway_warms_the_agent_models_when_it_starts(api):
    from c360.agents import intents

    warming = api.app.state.agent_warm_up
    warming.join()

    assert warming.name == "c360-agent-warm-up"
    assert len(intents._builtin) >= 1
