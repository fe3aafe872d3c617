"""Knowledge items in PostgreSQL: validate, upsert, delete and re-embed.

Upsert embeds only new or changed text (a content hash of what is embedded), in batches with a
progress callback, and writes each batch in one transaction, so a search never sees an item's
new price beside its old row. Every stored vector comes from one embedding model, recorded in
`knowledge.embedding_model`; another model is refused until `reembed` has run.

Touches: knowledge.items, knowledge.embedding_model; the embedder of c360.knowledge.embeddings.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import psycopg
from unidecode import unidecode

from c360.errors import InputError
from c360.events.model import decode_any, encode
from c360.knowledge.embeddings import Embedder, embedder_for
from c360.runtime import Runtime

log = logging.getLogger(__name__)

ITEM_TYPES = ("product", "price", "place", "promotion", "persona")

#: Texts embedded per call and rows written per transaction: big enough to keep the model
#: busy, small enough that progress moves every second or two on 2 cores.
BATCH_SIZE = 64

#: HNSW build parameters of every knowledge index (migration 0010 has the same numbers and
#: says how they were chosen: recall@10 0.97 against exact over 100,000 vectors where
#: pgvector's default 16 / 64 gave 0.95).
HNSW_M = 24
HNSW_EF_CONSTRUCTION = 100

#: Attributes with a meaning c360 checks; any other attribute is kept as given.
_STRING_ATTRIBUTES = ("currency", "code", "category", "sku", "brand", "unit", "hours", "address")
_MAX_TITLE = 500
_MAX_BODY = 20_000
_ID = re.compile(r"^[\w.:/@+-]{1,200}$")

#: Prices, amounts and stock stay below this (a trillion: far above any VND price) and
#: amounts carry at most _MAX_DECIMALS decimals: 1e309 once went in as a 310-digit number
#: and broke the agent that quoted it.
MAX_AMOUNT = Decimal(10) ** 12
_MAX_DECIMALS = 4
#: ISO 639-1 language codes; an item's language is one of them, optionally with a region
#: ("vi", "en-US").
_ISO_639_1 = """
    aa ab ae af ak am an ar as av ay az ba be bg bi bm bn bo br bs ca ce ch co cr cs cu cv
    cy da de dv dz ee el en eo es et eu fa ff fi fj fo fr fy ga gd gl gn gu gv ha he hi ho hr
    ht hu hy hz ia id ie ig ii ik io is it iu ja jv ka kg ki kj kk kl km kn ko kr ks ku kv kw
    ky la lb lg li ln lo lt lu lv mg mh mi mk ml mn mr ms mt my na nb nd ne ng nl nn no nr nv
    ny oc oj om or os pa pi pl ps pt qu rm rn ro ru rw sa sc sd se sg si sk sl sm sn so sq sr
    ss st su sv sw ta te tg th ti tk tl tn to tr ts tt tw ty ug uk ur uz ve vi vo wa wo xh yi
    yo za zh zu"""
LANGUAGES = frozenset(_ISO_639_1.split())
_LANGUAGE = re.compile(r"^([a-zA-Z]{2})(?:[-_]([a-zA-Z]{2}|\d{3}))?$")
#: Opening hours: one or more ranges like 06:30-22:00, then any words ("every day").
_HOURS_RANGE = re.compile(r"(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})")
_CLOCK = re.compile(r"\d+:\d+")


class ModelMismatch(InputError):
    """Stored vectors come from another embedding model than the one configured."""

    status_code = 409


@dataclass(frozen=True)
class Item:
    """One piece of marketing knowledge, as loaders and the API hand it over."""

    item_id: str
    type: str
    title: str
    body: str = ""
    language: str | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class UpsertCounts:
    """What an upsert did: rows inserted, rows changed, rows already as given, and how many
    texts were embedded (new or changed text only)."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    embedded: int = 0

    def __add__(self, other: UpsertCounts) -> UpsertCounts:
        return UpsertCounts(
            self.inserted + other.inserted,
            self.updated + other.updated,
            self.unchanged + other.unchanged,
            self.embedded + other.embedded,
        )


def item_from_dict(raw: Mapping[str, Any], where: str = "item") -> Item:
    """A checked Item from a JSON-like object; errors name `where` (file and line, or the
    position in a request) and the field."""
    if not isinstance(raw, Mapping):
        raise _bad(where, "", "must be an object with id, type, title, body, attributes")
    unknown = sorted(set(raw) - {"id", "type", "title", "body", "language", "attributes"})
    if unknown:
        raise _bad(
            where,
            unknown[0],
            "is not an item field; put it under `attributes` "
            "(fields: id, type, title, body, language, attributes)",
        )
    item_id = _text(raw, "id", where, required=True)
    if not _ID.match(item_id):
        raise _bad(where, "id", f"{_shown(item_id)} must be 1-200 letters, digits or . : / @ + - _")
    kind = _text(raw, "type", where, required=True)
    if kind not in ITEM_TYPES:
        raise _bad(where, "type", f"{_shown(kind)} is not one of {', '.join(ITEM_TYPES)}")
    title = _text(raw, "title", where, required=True, limit=_MAX_TITLE)
    body = _text(raw, "body", where, limit=_MAX_BODY)
    language = _language(_text(raw, "language", where, limit=16), where)
    attributes = raw.get("attributes") or {}
    if not isinstance(attributes, Mapping):
        raise _bad(where, "attributes", "must be an object of attribute names and values")
    return Item(item_id, kind, title, body, language, check_attributes(attributes, where))


def refuse_duplicates(placed: Iterable[tuple[str, Item]]) -> None:
    """Refuse items that share an id, naming where each copy was (`placed` is (where, item)
    pairs): merging them silently would keep one and drop the other unseen."""
    first: dict[str, str] = {}
    for where, item in placed:
        if item.item_id in first:
            raise InputError(
                "duplicate_item",
                f"{where}: id {item.item_id} is also at {_place(first[item.item_id])}; "
                "give each item its own id, or remove one copy",
            )
        first[item.item_id] = where


def check_attributes(attributes: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Attributes with the checked ones in canonical form: price a Decimal >= 0, stock an
    integer, valid_from / valid_to ISO dates or times, region a list of names, related a list."""
    checked: dict[str, Any] = {}
    for name, value in attributes.items():
        _no_nul(str(name), where, "attributes")
        if value is None or value == "":
            continue  # an empty CSV cell: the attribute is absent
        _no_nul(value, where, str(name))
        checked[str(name)] = _attribute(str(name), value, where)
    start, end = checked.get("valid_from"), checked.get("valid_to")
    if start and end and _instant(start, "UTC", False) > _instant(end, "UTC", True):
        raise _bad(where, "valid_to", f"{end} is before valid_from {start}")
    return checked


def upsert(
    runtime: Runtime, items: Iterable[Item], progress: Callable[[int, int], None] | None = None
) -> UpsertCounts:
    """Insert or update items by id; only new or changed text is embedded. `progress(done,
    total)` is called after each batch is stored."""
    ordered = [_checked(item) for item in items]
    refuse_duplicates((f"item {index + 1}", item) for index, item in enumerate(ordered))
    embedder = embedder_for(runtime.settings)
    counts = UpsertCounts()
    for start in range(0, len(ordered), BATCH_SIZE):
        batch = ordered[start : start + BATCH_SIZE]
        with runtime.pool.connection() as conn, conn.transaction():
            _claim_model(conn, embedder, exclusive=False)
            counts += _write_batch(conn, batch, embedder, runtime.settings.default_timezone)
        if progress:
            progress(start + len(batch), len(ordered))
    log.info("Knowledge upsert: %r.", counts)
    return counts


def delete(runtime: Runtime, item_ids: Sequence[str]) -> int:
    """Remove items by id; returns how many existed. Their vectors go with the rows."""
    with runtime.pool.connection() as conn:
        cursor = conn.execute(
            "DELETE FROM knowledge.items WHERE item_id = ANY(%s)", (list(item_ids),)
        )
        return cursor.rowcount


def reembed(runtime: Runtime, progress: Callable[[int, int], None] | None = None) -> int:
    """Embed every item again with the configured model (after a model change), in one
    transaction: searches keep the old vectors until it commits. Returns the item count."""
    embedder = embedder_for(runtime.settings)
    with runtime.pool.connection() as conn, conn.transaction():
        previous = _claim_model(conn, embedder, exclusive=True, replace=True)
        rows = conn.execute(
            "SELECT item_id, title, body, attributes::text FROM knowledge.items ORDER BY item_id"
        ).fetchall()
        for start in range(0, len(rows), BATCH_SIZE):
            _reembed_batch(conn, rows[start : start + BATCH_SIZE], embedder)
            if progress:
                progress(min(start + BATCH_SIZE, len(rows)), len(rows))
        _index_for(conn, embedder.dimensions, previous)
    log.info("Re-embedded %d knowledge items with %r.", len(rows), embedder.model)
    return len(rows)


def stored_model(conn: psycopg.Connection) -> tuple[str, int] | None:
    """(model, dimensions) of the stored vectors, or None while nothing is stored."""
    row = conn.execute("SELECT model, dimensions FROM knowledge.embedding_model").fetchone()
    return (row[0], row[1]) if row else None


def require_model(conn: psycopg.Connection, embedder: Embedder) -> int:
    """The stored dimensions when they are the embedder's; a ModelMismatch otherwise."""
    stored = stored_model(conn)
    if stored is None:
        return embedder.dimensions
    if stored != (embedder.model, embedder.dimensions):
        raise _mismatch(stored, embedder)
    return stored[1]


def passage_text(title: str, body: str, attributes: Mapping[str, Any]) -> str:
    """What is embedded for an item: its words, not its numbers, so a price change keeps the
    vector (and costs no embedding)."""
    parts = [title, body]
    for name in ("category", "related"):
        value = attributes.get(name)
        if value:
            parts.append(", ".join(value) if isinstance(value, list) else str(value))
    return "\n".join(part for part in parts if part)


def fold(text: str) -> str:
    """Lower-case ASCII: 'Phở Bò Đặc Biệt' -> 'pho bo dac biet', so full-text search matches
    Vietnamese typed with or without diacritics (done here, not by PostgreSQL's `unaccent`,
    which an operator's server may not have)."""
    return unidecode(text).lower()


def vector_literal(vector: np.ndarray) -> str:
    """pgvector's text form of one vector."""
    return "[" + ",".join(f"{value:.7g}" for value in vector.tolist()) + "]"


def _checked(item: Item) -> Item:
    """The item as `item_from_dict` accepts it (attributes in canonical form), whoever built
    it, so a region given as text is still a list of names when written."""
    raw = {
        "id": item.item_id,
        "type": item.type,
        "title": item.title,
        "body": item.body,
        "language": item.language,
        "attributes": dict(item.attributes),
    }
    return item_from_dict(raw, f"item {item.item_id}")


def _write_batch(
    conn: psycopg.Connection, batch: list[Item], embedder: Embedder, zone: str
) -> UpsertCounts:
    """Lock the batch's rows, embed what is new or changed, and write."""
    ids = [item.item_id for item in batch]
    stored = dict(
        conn.execute(
            "SELECT item_id, content_hash FROM knowledge.items WHERE item_id = ANY(%s)"
            " ORDER BY item_id FOR UPDATE",
            (ids,),
        ).fetchall()
    )
    texts = {item.item_id: passage_text(item.title, item.body, item.attributes) for item in batch}
    hashes = {item_id: _hash(text) for item_id, text in texts.items()}
    to_embed = [item for item in batch if stored.get(item.item_id) != hashes[item.item_id]]
    vectors = embedder.passages([texts[item.item_id] for item in to_embed])

    embedded = {item.item_id for item in to_embed}
    inserted = updated = 0
    for item, vector in zip(to_embed, vectors, strict=True):
        row = _row(item, zone) | {
            "hash": hashes[item.item_id],
            "embedding": vector_literal(vector),
            "model": embedder.model,
            "dims": embedder.dimensions,
        }
        was_new = conn.execute(_UPSERT, row).fetchone()[0]
        inserted += was_new
        updated += not was_new
    for item in batch:
        if item.item_id in embedded:
            continue
        if conn.execute(_UPDATE_FACTS, _row(item, zone)).rowcount:
            updated += 1
    unchanged = len(batch) - inserted - updated
    return UpsertCounts(inserted, updated, unchanged, len(to_embed))


_FIELDS = """type = %(type)s, title = %(title)s, body = %(body)s, language = %(language)s,
    attributes = %(attributes)s::jsonb, regions = %(regions)s, stock = %(stock)s,
    valid_from = %(valid_from)s, valid_until = %(valid_until)s,
    search_text = setweight(to_tsvector('simple', %(title_words)s), 'A')
        || setweight(to_tsvector('simple', %(body_words)s), 'B')"""

_UPSERT = f"""
INSERT INTO knowledge.items AS i (item_id, type, title, body, language, attributes, regions,
    stock, valid_from, valid_until, content_hash, embedding, embedding_model, embedding_dims,
    search_text)
VALUES (%(item_id)s, %(type)s, %(title)s, %(body)s, %(language)s, %(attributes)s::jsonb,
    %(regions)s, %(stock)s, %(valid_from)s, %(valid_until)s, %(hash)s, %(embedding)s::vector,
    %(model)s, %(dims)s,
    setweight(to_tsvector('simple', %(title_words)s), 'A')
        || setweight(to_tsvector('simple', %(body_words)s), 'B'))
ON CONFLICT (item_id) DO UPDATE SET {_FIELDS}, content_hash = %(hash)s,
    embedding = %(embedding)s::vector, embedding_model = %(model)s, embedding_dims = %(dims)s,
    updated_at = now()
RETURNING (xmax = 0)
"""

# Same text, so the same vector: only the facts change, and only when they differ.
_UPDATE_FACTS = f"""
UPDATE knowledge.items AS i SET {_FIELDS}, updated_at = now()
WHERE item_id = %(item_id)s
  AND (type, title, body, language, attributes, regions, stock, valid_from, valid_until)
      IS DISTINCT FROM (%(type)s, %(title)s, %(body)s, %(language)s, %(attributes)s::jsonb,
      %(regions)s::text[], %(stock)s::numeric, %(valid_from)s::timestamptz,
      %(valid_until)s::timestamptz)
"""


def _row(item: Item, zone: str) -> dict[str, Any]:
    """Parameters of an item's row: facts, filter columns and full-text words."""
    attributes = item.attributes
    regions = attributes.get("region")
    return {
        "item_id": item.item_id,
        "type": item.type,
        "title": item.title,
        "body": item.body,
        "language": item.language,
        "attributes": encode(dict(attributes)).decode(),
        "regions": [fold(region).strip() for region in regions] if regions else None,
        "stock": attributes.get("stock"),
        "valid_from": _bound(attributes.get("valid_from"), zone, end=False),
        "valid_until": _bound(attributes.get("valid_to"), zone, end=True),
        "title_words": fold(item.title),
        "body_words": fold(" ".join([item.body, *_attribute_words(attributes)])),
    }


def _attribute_words(attributes: Mapping[str, Any]) -> list[str]:
    """Words of the attributes worth finding by text (a promotion code, a category, a
    region); dates, currencies and numbers are left to filters."""
    words = []
    for name, value in attributes.items():
        if name in ("valid_from", "valid_to", "currency"):
            continue
        if isinstance(value, str):
            words.append(value)
        elif isinstance(value, list):
            words.extend(str(entry) for entry in value if isinstance(entry, str))
    return words


def _claim_model(
    conn: psycopg.Connection, embedder: Embedder, *, exclusive: bool, replace: bool = False
) -> tuple[str, int] | None:
    """Record the embedder as the store's model when none is, and lock the record (shared
    for upserts, exclusive for a re-embed). Refuses another model unless `replace`."""
    conn.execute(
        "INSERT INTO knowledge.embedding_model (model, dimensions) VALUES (%s, %s)"
        " ON CONFLICT DO NOTHING",
        (embedder.model, embedder.dimensions),
    )
    lock = "FOR UPDATE" if exclusive else "FOR SHARE"
    model, dims = conn.execute(
        f"SELECT model, dimensions FROM knowledge.embedding_model {lock}"
    ).fetchone()
    if (model, dims) == (embedder.model, embedder.dimensions):
        return model, dims
    if not replace:
        raise _mismatch((model, dims), embedder)
    conn.execute(
        "UPDATE knowledge.embedding_model SET model = %s, dimensions = %s, updated_at = now()",
        (embedder.model, embedder.dimensions),
    )
    return model, dims


def _reembed_batch(conn: psycopg.Connection, rows: list[tuple], embedder: Embedder) -> None:
    texts = [passage_text(title, body, decode_any(attrs)) for _, title, body, attrs in rows]
    vectors = embedder.passages(texts)
    for (item_id, *_), text, vector in zip(rows, texts, vectors, strict=True):
        conn.execute(
            "UPDATE knowledge.items SET embedding = %s::vector, embedding_model = %s,"
            " embedding_dims = %s, content_hash = %s WHERE item_id = %s",
            (vector_literal(vector), embedder.model, embedder.dimensions, _hash(text), item_id),
        )


def _index_for(conn: psycopg.Connection, dims: int, previous: tuple[str, int] | None) -> None:
    """An HNSW index for vectors of `dims` (the migration made the 384 one); the index of a
    size no longer stored is dropped."""
    conn.execute(
        f"CREATE INDEX IF NOT EXISTS items_embedding_{dims:d} ON knowledge.items"
        f" USING hnsw ((embedding::vector({dims:d})) vector_cosine_ops)"
        f" WITH (m = {HNSW_M:d}, ef_construction = {HNSW_EF_CONSTRUCTION:d})"
        f" WHERE embedding_dims = {dims:d}"
    )
    if previous and previous[1] != dims:
        conn.execute(f"DROP INDEX IF EXISTS knowledge.items_embedding_{previous[1]:d}")


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _mismatch(stored: tuple[str, int], embedder: Embedder) -> ModelMismatch:
    return ModelMismatch(
        "embedding_model_changed",
        f"the knowledge is embedded with {stored[0]} ({stored[1]} dimensions) but the "
        f"configured embedder is {embedder.model} ({embedder.dimensions} dimensions); vectors "
        "of two models cannot be compared: run `c360 knowledge reembed`, or set C360_EMBEDDER "
        "back",
    )


def _attribute(name: str, value: Any, where: str) -> Any:
    """One attribute checked by name; unknown names pass through."""
    if name == "price" or name.endswith(("_price", "amount")):
        return _amount(value, where, name)
    if name.endswith("_percent"):
        return _percent(value, where, name)
    if name == "stock":
        return _whole(value, where, name)
    if name == "hours":
        return _hours(value, where)
    if name in ("valid_from", "valid_to"):
        return _when(value, where, name)
    if name in ("region", "related"):
        return _names(value, where, name)
    if name in _STRING_ATTRIBUTES:
        if not isinstance(value, str | int) or isinstance(value, bool):
            raise _bad(where, name, f"must be text; got {_shown(value)}")
        return str(value).strip().upper() if name == "currency" else str(value).strip()
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return _any_number(value, where, name)
    return value


def _decimal(value: Any, where: str, name: str) -> Decimal:
    """An exact, finite number of at most _MAX_DECIMALS decimals."""
    try:
        if isinstance(value, bool | float):
            raise InvalidOperation  # a float has lost exactness already; send text or integer
        number = Decimal(str(value).replace("_", "").strip())
    except (InvalidOperation, ValueError):
        raise _bad(
            where, name, f"{_shown(value)} is not a number; write it like 125000 or 19.99"
        ) from None
    if not number.is_finite():
        raise _bad(where, name, f"{_shown(value)} is not a finite number")
    if number.normalize().as_tuple().exponent < -_MAX_DECIMALS:
        raise _bad(where, name, f"{_shown(value)} has more than {_MAX_DECIMALS} decimals")
    return number


def _amount(value: Any, where: str, name: str) -> Decimal:
    """A price or an amount: 0 or more and below MAX_AMOUNT."""
    amount = _bounded(_decimal(value, where, name), value, where, name)
    if amount < 0:
        raise _bad(where, name, f"{_shown(value)} must be a number of 0 or more")
    return amount


def _percent(value: Any, where: str, name: str) -> Decimal:
    """A percentage (discount_percent): from 0 to 100."""
    percent = _decimal(value, where, name)
    if not 0 <= percent <= 100:
        raise _bad(where, name, f"{_shown(value)} must be between 0 and 100")
    return _bounded(percent, value, where, name)


def _any_number(value: float | Decimal, where: str, name: str) -> float | Decimal:
    """An attribute c360 does not know that holds a number: finite and of sane size."""
    if isinstance(value, float):
        if not math.isfinite(value) or abs(value) >= MAX_AMOUNT:
            raise _bad(where, name, f"{_shown(value)} must be a finite number below "
                       f"{MAX_AMOUNT:,.0f}")  # fmt: skip
        return value
    return _bounded(_decimal(value, where, name), value, where, name)


def _bounded(number: Decimal, value: Any, where: str, name: str) -> Decimal:
    """`number` when its size is below MAX_AMOUNT, written plainly (1E+3 as 1000)."""
    if abs(number) >= MAX_AMOUNT:
        raise _bad(where, name, f"{_shown(value)} must be below {MAX_AMOUNT:,.0f}")
    return number.quantize(Decimal(1)) if number.as_tuple().exponent > 0 else number


def _whole(value: Any, where: str, name: str) -> int:
    """A count (stock): a whole number from 0 up to below MAX_AMOUNT."""
    text = str(value).strip()
    if isinstance(value, bool) or not re.fullmatch(r"-?\d+", text):
        raise _bad(where, name, f"{_shown(value)} must be a whole number")
    number = int(text)
    if not 0 <= number < MAX_AMOUNT:
        raise _bad(
            where, name, f"{_shown(value)} must be a whole number from 0 to below "
            f"{MAX_AMOUNT:,.0f}"
        )  # fmt: skip
    return number


def _hours(value: Any, where: str) -> str:
    """Opening hours such as '06:30-22:00 every day': at least one range, every time a real
    time of day (24:00 may end a range)."""
    if not isinstance(value, str):
        raise _bad(where, "hours", f"must be text like 07:00-22:00; got {_shown(value)}")
    text = value.strip()
    ranges = _HOURS_RANGE.findall(text)
    clocks = _CLOCK.findall(text)
    valid = all(
        0 <= int(hour) <= 24 and 0 <= int(minute) <= 59 and not (hour == "24" and minute != "00")
        for hour, minute in (clock.split(":") for clock in clocks)
    )
    if not ranges or not valid:
        raise _bad(
            where, "hours", f"{_shown(value)} is not opening hours; write them like "
            "07:00-22:00 or 07:00-11:00, 13:00-21:00 Monday to Saturday"
        )  # fmt: skip
    return text


def _language(value: str, where: str) -> str | None:
    """An ISO 639-1 code, optionally with a region: 'vi', 'en-US'."""
    if not value:
        return None
    match = _LANGUAGE.match(value)
    if not match or match[1].lower() not in LANGUAGES:
        raise _bad(
            where, "language", f"{_shown(value)} is not a language code; write a two-letter "
            "ISO 639-1 code such as vi or en (en-US with a region)"
        )  # fmt: skip
    return match[1].lower() + (f"-{match[2].upper()}" if match[2] else "")


def _no_nul(value: Any, where: str, name: str) -> None:
    """Refuse a NUL character anywhere in a text: PostgreSQL cannot store one."""
    if isinstance(value, str):
        if "\x00" in value:
            raise _bad(where, name, "contains a NUL character (byte 0); remove it")
    elif isinstance(value, list):
        for entry in value:
            _no_nul(entry, where, name)
    elif isinstance(value, Mapping):
        for key, entry in value.items():
            _no_nul(str(key), where, name)
            _no_nul(entry, where, name)


def _when(value: Any, where: str, name: str) -> str:
    """ISO 8601 date ('2026-12-31') or date and time ('2026-12-31T18:00:00+07:00')."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    text = str(value).strip()
    try:
        (datetime if "T" in text or " " in text else date).fromisoformat(text)
    except ValueError:
        raise _bad(
            where,
            name,
            f"{_shown(value)} is not a date; write 2026-12-31 or 2026-12-31T18:00+07:00",
        ) from None
    return text


def _names(value: Any, where: str, name: str) -> list[str]:
    """A name or a list of names; in a CSV cell several are separated by '|'."""
    entries = value.split("|") if isinstance(value, str) else value
    if not isinstance(entries, list) or not all(isinstance(e, str) for e in entries):
        raise _bad(where, name, f"must be a name or a list of names; got {_shown(value)}")
    return [entry.strip() for entry in entries if entry.strip()]


def _bound(value: str | None, zone: str, end: bool) -> datetime | None:
    return None if value is None else _instant(value, zone, end)


def _instant(value: str, zone: str, end: bool) -> datetime:
    """When a validity bound falls: a date means the start of that day in `zone`, and a
    valid_to date includes its whole day (the bound is the next midnight)."""
    if "T" not in value and " " not in value:
        day = date.fromisoformat(value) + timedelta(days=1 if end else 0)
        return datetime.combine(day, time(), tzinfo=ZoneInfo(zone))
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=ZoneInfo(zone))


def _text(
    raw: Mapping[str, Any], name: str, where: str, required: bool = False, limit: int = 200
) -> str:
    value = raw.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise _bad(where, name, "is missing; every item needs id, type and title")
        return ""
    if not isinstance(value, str):
        raise _bad(where, name, f"must be text; got {_shown(value)}")
    _no_nul(value, where, name)
    if len(value) > limit:
        raise _bad(where, name, f"is {len(value)} characters; the most is {limit}")
    return value.strip()


def _shown(value: Any) -> str:
    """A value as the user wrote it, in JSON (not Python's repr: true, not True)."""
    if isinstance(value, str):
        return f"'{value}'" if len(value) <= 80 else f"'{value[:77]}...'"
    try:
        text = encode(value).decode()
    except (TypeError, ValueError):
        text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _place(where: str) -> str:
    """'shop.csv, line 2' said as 'line 2' when naming a second place in the same file."""
    return where.split(", ", 1)[1] if ", " in where else where


def _bad(where: str, name: str, problem: str) -> InputError:
    subject = f"field {name!r} " if name else ""
    return InputError("invalid_item", f"{where}: {subject}{problem}")
