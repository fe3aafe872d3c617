"""The knowledge API over HTTP behind the accounts guard: loading items and files, reading,
deleting and searching them, permissions, and a 400 naming the field for each bad input."""

from __future__ import annotations

import pytest

from c360 import tokens

WRITE = ["knowledge:read", "knowledge:write"]
TEA = {
    "id": "product:TEA-1",
    "type": "product",
    "title": "Trà đào cam sả",
    "body": "Black tea with peach, orange and lemongrass.",
    "language": "vi",
    "attributes": {"price": 45000, "currency": "VND", "stock": 3},
}
PROMO = {
    "id": "promotion:WELCOME10",
    "type": "promotion",
    "title": "First order discount",
    "body": "10% off a first order with code WELCOME10.",
    "attributes": {"code": "WELCOME10", "valid_from": "2026-01-01"},
}


@pytest.fixture
def api(runtime):
    """A client on the app, and a bearer header maker per scopes."""
    from litestar.testing import TestClient

    from c360.api.app import create_app

    def bearer(scopes: list[str]) -> dict[str, str]:
        with runtime.pool.connection() as conn:
            token, _ = tokens.create_token(conn, "user:root", "knowledge test", scopes)
        return {"Authorization": f"Bearer {token}"}

    with TestClient(app=create_app(runtime.settings)) as client:
        client.bearer = bearer
        yield client


def test_items_posted_are_searchable_and_readable_with_exact_facts(api):
    writer = api.bearer(WRITE)

    answer = api.post("/v1/knowledge/items", json=[TEA, PROMO], headers=writer)

    assert answer.status_code == 200
    assert answer.json() == {"inserted": 2, "updated": 0, "unchanged": 0, "embedded": 2}
    read = api.get("/v1/knowledge/items/product:TEA-1", headers=writer)
    assert read.status_code == 200
    assert read.json() == TEA
    found = api.get("/v1/knowledge/search", params={"q": "WELCOME10", "k": 1}, headers=writer)
    assert found.status_code == 200
    (hit,) = found.json()["hits"]
    assert hit["id"] == "promotion:WELCOME10" and hit["score"] > 0


def test_search_filters_arrive_from_the_query_string(api):
    writer = api.bearer(WRITE)
    api.post("/v1/knowledge/items", json=[TEA, PROMO], headers=writer)

    def ids(**params) -> list[str]:
        answer = api.get("/v1/knowledge/search", params=params, headers=writer)
        assert answer.status_code == 200, answer.text
        return [hit["id"] for hit in answer.json()["hits"]]

    assert ids(q="tea", type="promotion", mode="vector") == ["promotion:WELCOME10"]
    assert ids(q="tea", type="product,place", mode="text") == ["product:TEA-1"]
    assert ids(q="discount", at="2025-12-31T00:00:00Z", type="promotion") == []
    assert "product:TEA-1" in ids(q="tea", in_stock="true", region="ha-noi")
    assert ids(q="tea", in_stock="false") == []


def test_a_deleted_item_is_gone_from_reads_and_searches(api):
    writer = api.bearer(WRITE)
    api.post("/v1/knowledge/items", json=[TEA, PROMO], headers=writer)

    assert api.delete("/v1/knowledge/items/promotion:WELCOME10", headers=writer).status_code == 204

    assert api.get("/v1/knowledge/items/promotion:WELCOME10", headers=writer).status_code == 404
    found = api.get("/v1/knowledge/search", params={"q": "WELCOME10"}, headers=writer).json()
    assert "promotion:WELCOME10" not in [hit["id"] for hit in found["hits"]]
    again = api.delete("/v1/knowledge/items/promotion:WELCOME10", headers=writer)
    assert again.status_code == 404


def test_a_csv_and_a_json_file_load_through_the_files_route(api):
    writer = api.bearer(WRITE)
    csv_file = "id,title,body,price\nplace:HK,Hàng Khay,Facing the lake,0\n"
    json_file = '[{"id": "persona:gift", "type": "persona", "title": "Gift buyer"}]'

    by_csv = api.post(
        "/v1/knowledge/files?type=place",
        content=csv_file.encode(),
        headers=writer | {"Content-Type": "text/csv"},
    )
    by_json = api.post(
        "/v1/knowledge/files?name=personas.json", content=json_file.encode(), headers=writer
    )

    assert by_csv.status_code == 200, by_csv.text
    assert by_csv.json() == {"inserted": 1, "updated": 0, "unchanged": 0, "embedded": 1, "items": 1}
    assert by_json.status_code == 200, by_json.text
    assert api.get("/v1/knowledge/items/place:HK", headers=writer).json()["type"] == "place"
    assert api.get("/v1/knowledge/items/persona:gift", headers=writer).status_code == 200


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([TEA, {**TEA, "id": "product:2", "attributes": {"price": "cheap"}}], "items[1]: field "),
        ([{**TEA, "type": "coupon"}], "items[0]: field 'type' 'coupon' is not one of"),
        ([{**TEA, "title": ""}], "items[0]: field 'title' is missing"),
        ({"items": [TEA]}, "send a JSON array of items"),
        ([], "the body has no items; send at least one"),
        ([TEA, PROMO, TEA], "items[2]: id product:TEA-1 is also at items[0]; give each item"),
        ([{**TEA, "attributes": {"price": "1e309"}}], "field 'price' '1e309' must be below"),
        ([{**PROMO, "attributes": {"discount_percent": 150}}], "must be between 0 and 100"),
        ([{**TEA, "title": "a\u0000b"}], "items[0]: field 'title' contains a NUL character"),
        ([{**PROMO, "attributes": {"valid_to": "tomorrow"}}], "field 'valid_to' 'tomorrow'"),
    ],
)
def test_bad_items_are_refused_naming_the_item_and_field(api, body, message):
    answer = api.post("/v1/knowledge/items", json=body, headers=api.bearer(WRITE))

    assert answer.status_code == 400
    assert message in answer.json()["message"]
    assert api.get("/v1/knowledge/items/product:TEA-1", headers=api.bearer(WRITE)).status_code in (
        404,
    )


def test_a_bad_file_is_refused_naming_the_line_and_field(api):
    csv_file = "id,type,title,price\nproduct:1,product,Tea,45000\nproduct:2,product,Cake,abc\n"

    answer = api.post(
        "/v1/knowledge/files?name=shop.csv", content=csv_file.encode(), headers=api.bearer(WRITE)
    )
    unnamed = api.post("/v1/knowledge/files", content=csv_file.encode(), headers=api.bearer(WRITE))

    assert answer.status_code == 400
    assert answer.json()["message"].startswith("shop.csv, line 3: field 'price' 'abc'")
    assert unnamed.status_code == 400
    assert "Content-Type text/csv" in unnamed.json()["message"]


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"q": ""}, "q:"),
        ({"q": "tea", "k": "ten"}, "k must be between 1 and 100"),
        ({"q": "tea", "k": "500"}, "k must be between 1 and 100"),
        ({"q": "tea", "k": "-1"}, "k must be between 1 and 100"),
        ({"q": "tea", "mode": "fuzzy"}, "mode:"),
        ({"q": "tea", "type": "coupon"}, "type:"),
        ({"q": "tea", "at": "yesterday"}, "at:"),
        ({"q": "tea", "in_stock": "maybe"}, "in_stock:"),
        ({"q": "tea", "limit": "5"}, "unknown parameter limit"),
    ],
)
def test_bad_search_parameters_are_refused_naming_the_parameter(api, params, named):
    answer = api.get("/v1/knowledge/search", params=params, headers=api.bearer(["knowledge:read"]))

    assert answer.status_code == 400
    assert answer.json()["message"].startswith(named)


def test_reading_needs_knowledge_read_and_changing_needs_knowledge_write(api):
    reader = api.bearer(["knowledge:read"])
    other = api.bearer(["segments:read"])
    api.post("/v1/knowledge/items", json=[TEA], headers=api.bearer(WRITE))

    assert api.get("/v1/knowledge/items/product:TEA-1", headers=reader).status_code == 200
    assert api.get("/v1/knowledge/search", params={"q": "tea"}, headers=reader).status_code == 200
    assert api.post("/v1/knowledge/items", json=[PROMO], headers=reader).status_code == 403
    assert api.delete("/v1/knowledge/items/product:TEA-1", headers=reader).status_code == 403
    assert (
        api.post("/v1/knowledge/files?name=a.csv", content=b"x", headers=reader).status_code == 403
    )
    assert api.get("/v1/knowledge/search", params={"q": "tea"}, headers=other).status_code == 403
    assert api.get("/v1/knowledge/items/product:TEA-1").status_code == 401


def _stored(runtime) -> tuple[int, int]:
    """(items, embedding-model rows): both 0 when nothing was embedded or written."""
    with runtime.pool.connection() as conn:
        items = conn.execute("SELECT count(*) FROM knowledge.items").fetchone()[0]
        models = conn.execute("SELECT count(*) FROM knowledge.embedding_model").fetchone()[0]
    return items, models


def test_more_than_1000_items_are_refused_before_anything_is_embedded(api, runtime):
    writer = api.bearer(WRITE)
    rows = "".join(f"product:{n},Cake {n},{n}\n" for n in range(1_001))

    by_file = api.post(
        "/v1/knowledge/files?type=product&name=big.csv",
        content=("id,title,price\n" + rows).encode(),
        headers=writer,
    )
    items = [{**TEA, "id": f"product:{n}"} for n in range(1_001)]
    by_items = api.post("/v1/knowledge/items", json=items, headers=writer)

    for answer, what in ((by_file, "the file"), (by_items, "the body")):
        assert answer.status_code == 413
        assert answer.json()["code"] == "too_many_items"
        message = answer.json()["message"]
        assert message.startswith(f"{what} has 1,001 items; the most per request is 1,000")
        assert "c360 knowledge load" in message
    assert _stored(runtime) == (0, 0)


def test_an_upload_over_the_size_limit_gets_a_knowledge_message(api, runtime):
    from c360.api.knowledge import MAX_UPLOAD_BYTES

    body = b"id,title\n" + b"x" * MAX_UPLOAD_BYTES

    answer = api.post(
        "/v1/knowledge/files?type=product&name=huge.csv", content=body, headers=api.bearer(WRITE)
    )

    assert answer.status_code == 413
    assert answer.json()["code"] == "upload_too_large"
    assert answer.json()["message"] == (
        f"the upload is over {MAX_UPLOAD_BYTES:,} bytes; split it into files of at most 1,000 "
        "items, or load it with `c360 knowledge load`"
    )
    assert "event" not in answer.text
    assert _stored(runtime) == (0, 0)


def test_an_upload_above_the_event_limit_but_under_its_own_loads(api):
    """2.1 MB of CSV is over the app's limit for events, not the knowledge upload limit (the
    bulk is in an attribute, which is not embedded, to keep the test quick)."""
    rows = "".join(f"product:{n},Cake {n},{'x' * 70_000}\n" for n in range(30))
    body = "id,title,notes\n" + rows
    assert len(body) > 2_048_000

    answer = api.post(
        "/v1/knowledge/files?type=product&name=long.csv",
        content=body.encode(),
        headers=api.bearer(WRITE),
    )

    assert answer.status_code == 200, answer.text
    assert answer.json()["items"] == 30


def test_file_messages_speak_of_the_query_parameter_not_a_cli_flag(api):
    writer = api.bearer(WRITE)

    no_type = api.post(
        "/v1/knowledge/files?name=a.csv", content=b"id,title\np:1,A\n", headers=writer
    )
    bad_type = api.post(
        "/v1/knowledge/files?name=a.csv&type=coupon", content=b"id,title\np:1,A\n", headers=writer
    )
    empty = api.post("/v1/knowledge/files?name=a.json", content=b"[]", headers=writer)
    twice = api.post(
        "/v1/knowledge/files?name=a.csv&type=product",
        content=b"id,title\nDUP,A\nDUP,B\n",
        headers=writer,
    )

    assert no_type.status_code == 400 and "with ?type=" in no_type.json()["message"]
    assert "--type" not in no_type.json()["message"]
    assert bad_type.status_code == 400
    assert bad_type.json()["message"].startswith("coupon (given with ?type=) is not a type")
    assert empty.status_code == 400
    assert empty.json()["message"] == "a.json: the file has no items; add at least one"
    assert twice.status_code == 400
    assert twice.json()["message"].startswith("a.csv, line 3: id DUP is also at line 2")
