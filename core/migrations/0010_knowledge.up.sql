-- Issue 7: marketing knowledge (products, prices, places, promotions, personas) for the
-- agents, embedded for vector search and indexed for full-text search, with the columns the
-- filters read (validity, stock, region) kept beside the item's attributes.
CREATE SCHEMA knowledge;

-- The embedding model every stored vector was made by (one row, or none while empty).
-- Vectors of two models are never compared: a new model means `c360 knowledge reembed`.
CREATE TABLE knowledge.embedding_model (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    model       text NOT NULL,
    dimensions  integer NOT NULL CHECK (dimensions > 0),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- One item. `item_id` is the loader's key ("product:SKU-1"). `search_text` is built from the
-- title (weight A), the body and the attributes' words (weight B), folded to ASCII by
-- c360.knowledge.store so a query typed without Vietnamese diacritics still matches.
-- `regions` NULL means everywhere; `stock` NULL means not tracked; validity is
-- [valid_from, valid_until), either end open when NULL.
CREATE TABLE knowledge.items (
    item_id          text PRIMARY KEY CHECK (item_id <> ''),
    type             text NOT NULL
                     CHECK (type IN ('product', 'price', 'place', 'promotion', 'persona')),
    title            text NOT NULL,
    body             text NOT NULL DEFAULT '',
    language         text,
    attributes       jsonb NOT NULL DEFAULT '{}',
    regions          text[],
    stock            numeric,
    valid_from       timestamptz,
    valid_until      timestamptz,
    content_hash     text NOT NULL,
    embedding        vector NOT NULL,
    embedding_model  text NOT NULL,
    embedding_dims   integer NOT NULL,
    search_text      tsvector NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT items_embedding_dims CHECK (embedding_dims = vector_dims(embedding))
);

-- HNSW over the default model's 384 dimensions (multilingual-e5-small). A column of
-- unconstrained `vector` cannot be indexed, so the index is on the cast, limited to rows of
-- that size; re-embedding to another size builds a matching index (c360.knowledge.store).
-- m and ef_construction were chosen by bench/_agents_search.py --index-sweep: over 100,000
-- real-text vectors at ef_search 100, recall@10 against exact was 0.82 (8, 32), 0.95 (16,
-- 64: pgvector's default), 0.97 (24, 100) and 0.98 (32, 128, built in 2.6 times as long).
CREATE INDEX items_embedding_384 ON knowledge.items
    USING hnsw ((embedding::vector(384)) vector_cosine_ops) WITH (m = 24, ef_construction = 100)
    WHERE embedding_dims = 384;
CREATE INDEX items_search_text ON knowledge.items USING gin (search_text);
CREATE INDEX items_type ON knowledge.items (type);
