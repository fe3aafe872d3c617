"""The OpenAPI document describes the bodies of the engage routes whose handlers read raw
bytes (c360.api.bodies), and describes them truly: each documented example, sent to the real
route, is accepted."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient
from notify_support import email_settings
from peers.smtp_peer import SmtpPeer

from c360 import tokens
from c360.api import bodies
from c360.api.app import create_app
from c360.channels import delivery
from c360.runtime import Runtime

SCOPES = [
    "notifications:read",
    "notifications:write",
    "agents:read",
    "agents:write",
    "agents:operate",
    "knowledge:read",
    "knowledge:write",
]

#: (method, path in the document, body): every route c360.api.bodies documents.
DOCUMENTED = [
    ("post", "/v1/notifications/rules", bodies.RULE),
    ("put", "/v1/notifications/rules/{rule_id}", bodies.RULE_CHANGE),
    ("post", "/v1/notifications/templates", bodies.TEMPLATE),
    ("post", "/v1/notifications/test", bodies.TEST_SEND),
    ("put", "/v1/agents/personas/{agent}", bodies.PERSONA),
    ("post", "/v1/agents/conversations/{conversation_id}/reply", bodies.OPERATOR_REPLY),
    ("post", "/v1/knowledge/items", bodies.KNOWLEDGE_ITEMS),
    ("post", "/v1/knowledge/files", bodies.KNOWLEDGE_FILE),
]


@pytest.fixture
def api(runtime: Runtime, smtp: SmtpPeer) -> Iterator[TestClient]:
    engaged = Runtime(email_settings(runtime.settings, smtp.port))
    with engaged.pool.connection() as conn:
        token, _ = tokens.create_token(conn, "user:root", "docs", SCOPES)
    with TestClient(app=create_app(engaged.settings)) as client:
        client.headers["Authorization"] = f"Bearer {token}"
        yield client
    engaged.close()


def _document(api: TestClient) -> dict[str, Any]:
    response = api.get("/schema/openapi.json")
    assert response.status_code == 200
    return response.json()


@pytest.mark.parametrize(("method", "path", "body"), DOCUMENTED, ids=lambda v: str(v)[:40])
def test_each_documented_body_is_in_the_openapi_document(api, method, path, body):
    operation = _document(api)["paths"][path][method]

    documented = operation["requestBody"]["content"]
    assert set(documented) == set(body.content)
    for media, schema in body.content.items():
        shown = documented[media]["schema"]
        assert shown.get("type") == schema.get("type")
        assert set(shown.get("properties", {})) == set(schema.get("properties", {}))
    assert operation["description"]  # the handler's own words are kept
    declared = {parameter["name"] for parameter in operation.get("parameters", [])}
    assert {segment[1:-1] for segment in path.split("/") if segment.startswith("{")} <= declared


def test_the_knowledge_file_query_parameters_are_documented(api):
    operation = _document(api)["paths"]["/v1/knowledge/files"]["post"]

    query = {p["name"]: p for p in operation["parameters"] if p["in"] == "query"}
    assert set(query) == {"type", "name"}
    assert "product" in query["type"]["schema"]["enum"]


def test_every_documented_example_is_accepted_by_its_route(api, smtp):
    def example(body: bodies.Body, media: str = "application/json") -> Any:
        return body.examples[media]

    template = api.post("/v1/notifications/templates", json=example(bodies.TEMPLATE))
    assert template.status_code == 201, template.text
    rule = api.post("/v1/notifications/rules", json=example(bodies.RULE))
    assert rule.status_code == 201, rule.text
    rule_id = rule.json()["rule_id"]
    change = api.put(f"/v1/notifications/rules/{rule_id}", json=example(bodies.RULE_CHANGE))
    assert change.status_code == 200 and change.json()["enabled"] is False, change.text
    sent = api.post("/v1/notifications/test", json=example(bodies.TEST_SEND))
    assert sent.status_code == 200, sent.text
    # no profile named: the sample customer's name, as the docs say
    assert sent.json()["subject"] == "Cảm ơn Lan"
    delivery.run_due(api.app.state.runtime)
    assert [str(m["To"]) for m in smtp.messages] == [example(bodies.TEST_SEND)["to"]]

    persona = api.put("/v1/agents/personas/default", json=example(bodies.PERSONA))
    assert persona.status_code == 200 and persona.json()["name"] == "Mai", persona.text
    # the body is accepted; the conversation it names does not exist
    reply = api.post(
        f"/v1/agents/conversations/{uuid.uuid4()}/reply", json=example(bodies.OPERATOR_REPLY)
    )
    assert reply.status_code == 404, reply.text

    items = api.post("/v1/knowledge/items", json=example(bodies.KNOWLEDGE_ITEMS))
    assert items.status_code == 200 and items.json()["inserted"] == 1, items.text
    csv = example(bodies.KNOWLEDGE_FILE, "text/csv").encode()
    loaded = api.post(
        "/v1/knowledge/files", content=csv, headers={"Content-Type": "text/csv; charset=utf-8"}
    )
    assert loaded.status_code == 200 and loaded.json()["items"] == 1, loaded.text
    price = api.get("/v1/knowledge/items/sku-1").json()["attributes"]["price"]
    assert str(price) == "1290000"
