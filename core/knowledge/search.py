"""Search the marketing knowledge: by meaning (HNSW over the embeddings), by words (full-text
over ASCII-folded text) or both fused (hybrid, the default), with filters on type, validity,
region and stock applied inside each query, so a filter never starves the result.

Every hit is read from its row at query time: a changed price or a deleted promotion is never
returned stale. Touches knowledge.items and knowledge.embedding_model (read only).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

import psycopg

from c360.errors import InputError
from c360.events.model import decode_any
from c360.knowledge.embeddings import embedder_for
from c360.knowledge.store import ITEM_TYPES, fold, require_model, vector_literal
from c360.runtime import Runtime

Mode = Literal["hybrid", "vector", "text"]
Fusion = Literal["rrf", "score"]
MODES = ("hybrid", "vector", "text")
MAX_K = 100

#: Candidates HNSW explores per query (pgvector's default is 40, which gave recall@10 0.88
#: over 100,000 vectors; 100 gave 0.95 with m 16 and 0.97 with the m 24 the store builds).
#: At least HYBRID_DEPTH, so hybrid's vector list comes from one pass of the graph.
EF_SEARCH = 100

#: Hybrid fusion (see `fuse`) over the first HYBRID_DEPTH hits of each ranking: method,
#: RRF constant and vector weight chosen on the dev half of the MultiWOZ venue requests by
#: bench/_agents_search.py (which reports them on the test half).
#: Measured 2026-12-05: rrf, 200, 0.2 gave dev nDCG@10 0.870 (rrf_k 100-500 within 0.004;
#: score fusion at best 0.857; equal weights 0.850). A low vector weight still lets the
#: embedding decide wherever no word matches (another language, a synonym).
FUSION: Fusion = "rrf"
RRF_K = 200
VECTOR_WEIGHT = 0.2
HYBRID_DEPTH = 50

#: Words a request is full of that say nothing about what is wanted (English, and
#: Vietnamese written with its diacritics, which keep them apart from content words that
#: fold to the same letters: "bạn" (you) is dropped, "bàn" (table) is kept).
_STOP_WORDS = """a an and any are as at be can could do does for from have i i'd i'm in is it
    looking me my need of on or please some something that the there this to want we what where
    which with would you your find show get like
    tôi mình bạn là của và cho một những các được này thì với để
    không gì nào muốn cần tìm
    hãy nhé ạ ở có"""
STOP_WORDS = frozenset(_STOP_WORDS.split())


@dataclass(frozen=True)
class Hit:
    """One item found, with the row's current facts and its score (higher is better: cosine
    similarity, text rank, or the fused score)."""

    item_id: str
    type: str
    title: str
    body: str
    language: str | None
    attributes: dict[str, Any]
    score: float


def search(
    runtime: Runtime,
    text: str,
    *,
    types: Sequence[str] | None = None,
    region: str | None = None,
    at: datetime | None = None,
    in_stock: bool | None = None,
    k: int = 10,
    mode: Mode = "hybrid",
) -> list[Hit]:
    """The `k` best items for `text` among those the filters keep: valid at `at` (default
    now; without an offset, a time in the default time zone, as validity dates are), of
    `types`, sold in `region` (or everywhere), in stock when `in_stock`."""
    _check(text, types, k, mode)
    moment = local_time(at, runtime.settings.default_timezone) if at else datetime.now(UTC)
    where = filters(types, region, moment, in_stock)
    depth = max(k, HYBRID_DEPTH) if mode == "hybrid" else k
    with runtime.pool.connection() as conn:
        vector_hits = _by_vector(conn, runtime, text, where, depth) if mode != "text" else []
        text_hits = _by_text(conn, text, where, depth) if mode != "vector" else []
    if mode == "vector":
        return vector_hits
    if mode == "text":
        return text_hits
    return fuse(vector_hits, text_hits, k)


def local_time(at: datetime, zone: str) -> datetime:
    """`at` itself when it has an offset, else the wall-clock time `at` in `zone`: the store
    reads a validity date without an offset in the default time zone, and a time asked
    about must be read the same way, or a promotion of 5 December is gone at 23:30 there."""
    return at if at.tzinfo else at.replace(tzinfo=ZoneInfo(zone))


def get(runtime: Runtime, item_id: str) -> Hit | None:
    """One item by id, as stored now (score 1.0), or None."""
    with runtime.pool.connection() as conn:
        row = conn.execute(
            f"SELECT {_COLUMNS}, 1.0 FROM knowledge.items WHERE item_id = %s", (item_id,)
        ).fetchone()
    return _hit(row) if row else None


def fuse(
    vector_hits: Sequence[Hit],
    text_hits: Sequence[Hit],
    k: int,
    *,
    method: Fusion = FUSION,
    rrf_k: float = RRF_K,
    vector_weight: float = VECTOR_WEIGHT,
) -> list[Hit]:
    """The two rankings made one. "rrf": weighted reciprocal rank fusion, w / (rrf_k + rank)
    summed over the rankings an item is in (ranks, so cosine similarities and text scores
    need no common scale). "score": w * vector score + (1 - w) * text score, each min-max
    scaled to [0, 1] within its ranking, 0 where an item is missing."""
    if method == "rrf":
        parts = [_rrf(vector_hits, rrf_k), _rrf(text_hits, rrf_k)]
    else:
        parts = [_scaled(vector_hits), _scaled(text_hits)]
    scores: dict[str, float] = {}
    for weight, part in zip((vector_weight, 1 - vector_weight), parts, strict=True):
        for item_id, value in part.items():
            scores[item_id] = scores.get(item_id, 0.0) + weight * value
    hits = {hit.item_id: hit for hit in [*text_hits, *vector_hits]}
    best = sorted(scores, key=lambda item_id: (-scores[item_id], item_id))[:k]
    return [replace(hits[item_id], score=scores[item_id]) for item_id in best]


def _rrf(hits: Sequence[Hit], rrf_k: float) -> dict[str, float]:
    return {hit.item_id: 1 / (rrf_k + rank) for rank, hit in enumerate(hits, start=1)}


def _scaled(hits: Sequence[Hit]) -> dict[str, float]:
    if not hits:
        return {}
    low, high = min(h.score for h in hits), max(h.score for h in hits)
    span = high - low
    return {hit.item_id: (hit.score - low) / span if span else 1.0 for hit in hits}


def text_terms(text: str) -> str:
    """The words of a request that full-text search looks for, folded to ASCII."""
    words = re.findall(r"[\w'-]+", text.lower())
    return fold(" ".join(word for word in words if word not in STOP_WORDS))


_COLUMNS = "item_id, type, title, body, language, attributes::text"


def _by_vector(
    conn: psycopg.Connection, runtime: Runtime, text: str, where: Where, depth: int
) -> list[Hit]:
    """Nearest items to the request's query embedding."""
    embedder = embedder_for(runtime.settings)
    dims = require_model(conn, embedder)
    return nearest(conn, vector_literal(embedder.queries([text])[0]), dims, where, depth)


def nearest(
    conn: psycopg.Connection,
    query: str,
    dims: int,
    where: Where,
    depth: int,
    ef_search: int = EF_SEARCH,
) -> list[Hit]:
    """The `depth` items nearest to `query` (pgvector text form) by cosine distance, on the
    HNSW index. Iterative scans (pgvector 0.8) keep reading the graph until `depth` rows
    pass the filters; the outer sort restores the order relaxed scanning may bend."""
    distance = f"embedding::vector({dims:d}) <=> %(query)s::vector({dims:d})"
    sql = f"""
        WITH nearest AS MATERIALIZED (
            SELECT {_COLUMNS}, {distance} AS distance FROM knowledge.items
            WHERE embedding_dims = {dims:d} AND {where.sql}
            ORDER BY {distance} LIMIT %(depth)s)
        SELECT {_COLUMNS}, 1 - distance FROM nearest ORDER BY distance, item_id"""
    with conn.transaction():
        conn.execute(
            "SELECT set_config('hnsw.ef_search', %s, true),"
            " set_config('hnsw.iterative_scan', 'relaxed_order', true)",
            (str(ef_search),),
        )
        rows = conn.execute(sql, where.params | {"query": query, "depth": depth}).fetchall()
    return [_hit(row) for row in rows]


def _by_text(conn: psycopg.Connection, text: str, where: Where, depth: int) -> list[Hit]:
    """Items holding any of the request's words, ranked by the summed inverse document
    frequency of the words they hold (BM25's IDF with presence for term frequency), so a
    rare word ("korean", a promotion code) outweighs one every item has ("restaurant");
    ties go to the item with more of the words in its title (ts_rank, weight A)."""
    sql = f"""
        WITH lexemes AS (
            SELECT lexeme FROM unnest(tsvector_to_array(to_tsvector('simple', %(terms)s)))
            AS lexeme),
        terms AS (SELECT to_tsquery('simple', quote_literal(lexeme)) AS term FROM lexemes),
        total AS (SELECT count(*) AS n FROM knowledge.items),
        weights AS (
            SELECT term, ln(1 + (total.n - found.n + 0.5) / (found.n + 0.5)) AS idf
            FROM terms, total,
                LATERAL (SELECT count(*) AS n FROM knowledge.items WHERE search_text @@ term)
                AS found),
        words AS (
            SELECT to_tsquery('simple', string_agg(quote_literal(lexeme), ' | ')) AS query
            FROM lexemes)
        SELECT {_COLUMNS}, (SELECT sum(idf) FROM weights WHERE search_text @@ term) AS score
        FROM knowledge.items, words
        WHERE search_text @@ words.query AND {where.sql}
        ORDER BY score DESC, ts_rank(search_text, words.query, 1) DESC, item_id
        LIMIT %(depth)s"""
    params = where.params | {"terms": text_terms(text), "depth": depth}
    return [_hit(row) for row in conn.execute(sql, params).fetchall()]


@dataclass(frozen=True)
class Where:
    """A WHERE clause over knowledge.items and its parameters."""

    sql: str
    params: dict[str, Any]


def filters(
    types: Sequence[str] | None, region: str | None, at: datetime, in_stock: bool | None
) -> Where:
    """The WHERE clause both rankings share; `at` has an offset (see `local_time`)."""
    if at.tzinfo is None:
        raise ValueError(
            f"filters: at {at.isoformat()} has no offset; pass local_time(at, zone) with the "
            "default time zone, as search() does"
        )
    parts = [
        "(valid_from IS NULL OR valid_from <= %(at)s)",
        "(valid_until IS NULL OR %(at)s < valid_until)",
    ]
    params: dict[str, Any] = {"at": at}
    if types:
        parts.append("type = ANY(%(types)s)")
        params["types"] = list(types)
    if region:
        parts.append("(regions IS NULL OR %(region)s = ANY(regions))")
        params["region"] = fold(region).strip()
    if in_stock is True:
        parts.append("(stock IS NULL OR stock > 0)")
    elif in_stock is False:
        parts.append("stock <= 0")
    return Where(" AND ".join(parts), params)


def _check(text: str, types: Sequence[str] | None, k: int, mode: str) -> None:
    if not isinstance(text, str) or not text.strip():
        raise InputError("invalid_query", "q: give the text to search for")
    if mode not in MODES:
        raise InputError("invalid_query", f"mode: {mode} is not one of {', '.join(MODES)}")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise InputError("invalid_query", f"k must be between 1 and {MAX_K}")
    unknown = sorted(set(types or ()) - set(ITEM_TYPES))
    if unknown:
        raise InputError(
            "invalid_query", f"type: {unknown[0]} is not one of {', '.join(ITEM_TYPES)}"
        )


def _hit(row: tuple) -> Hit:
    item_id, kind, title, body, language, attributes, score = row
    return Hit(item_id, kind, title, body, language, decode_any(attributes), float(score))
